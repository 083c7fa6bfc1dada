"""The one renderer: sandboxed, strict, hashed."""

from __future__ import annotations

import jinja2
import pytest
from jinja2.exceptions import SecurityError

from prompts import load_template, render, template_hash


def test_user_template_renders_and_is_hashed(tmp_path):
    path = tmp_path / "mine.jinja"
    path.write_text("Image 1: {{ first }}\nImage 2: {{ second }}\n")
    assert render(str(path), first="a dog", second="a cat") == "Image 1: a dog\nImage 2: a cat\n"
    assert load_template(str(path)).sha256 == template_hash(path.read_text())


def test_missing_variable_is_an_error(tmp_path):
    path = tmp_path / "strict.jinja"
    path.write_text("{{ caption }}")
    with pytest.raises(jinja2.UndefinedError, match="caption"):
        render(str(path))


def test_templates_cannot_reach_python_internals(tmp_path):
    path = tmp_path / "evil.jinja"
    path.write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(SecurityError):
        render(str(path))


def test_unknown_package_template_lists_the_available_ones():
    with pytest.raises(FileNotFoundError, match=r"card_cadqa\.md\.jinja"):
        load_template("nope.jinja")
    with pytest.raises(FileNotFoundError):
        load_template("../render.py")
