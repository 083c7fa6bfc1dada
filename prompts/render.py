"""The sandboxed renderer: loads package templates (or a user's file) and hashes them.

The hash of a template's source goes into every record it produced, so a changed wording
never silently mixes with cached outputs of the old one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

TEMPLATE_DIR = Path(__file__).parent / "templates"


def _environment(search_path: Path) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(search_path)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@dataclass(frozen=True)
class Template:
    """A compiled template together with where it came from and the hash of its source."""

    name: str
    source: str
    sha256: str
    compiled: jinja2.Template

    def render(self, **variables: Any) -> str:
        return self.compiled.render(**variables)


def template_hash(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


@lru_cache(maxsize=64)
def load_template(name_or_path: str) -> Template:
    """Load a package template by name (``phase1.jinja``) or a user's template by file path.

    A path lets users bring their own wording without touching the package; templates may
    ``{% include %}`` files from their own folder.
    """
    candidate = Path(name_or_path)
    if candidate.is_file():
        path = candidate.resolve()
    else:
        path = TEMPLATE_DIR / name_or_path
        if candidate.is_absolute() or ".." in candidate.parts or not path.is_file():
            available = ", ".join(sorted(p.name for p in TEMPLATE_DIR.glob("*.jinja")))
            raise FileNotFoundError(f"no template {name_or_path!r}; package templates: {available}")
    environment = _environment(path.parent)
    source = path.read_text(encoding="utf-8")
    compiled = environment.get_template(path.name)
    return Template(
        name=name_or_path,
        source=source,
        sha256=template_hash(_with_includes(environment, path.name)),
        compiled=compiled,
    )


def _with_includes(environment: SandboxedEnvironment, name: str, seen: frozenset[str] = frozenset()) -> str:
    """The template's source followed by the sources it includes or imports, recursively.

    The hash must change when an included piece (say the CaD instruction) changes.
    """
    source, _, _ = environment.loader.get_source(environment, name)
    parts = [source]
    for child in sorted(filter(None, meta.find_referenced_templates(environment.parse(source)))):
        if child not in seen:
            parts.append(_with_includes(environment, child, seen | {name}))
    return "\0".join(parts)


def render(name_or_path: str, **variables: Any) -> str:
    """Render a template with ``variables``; every variable the template uses must be given."""
    return load_template(name_or_path).render(**variables)
