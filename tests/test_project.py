"""Project-level guarantees: import direction between folders, citation metadata."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# folder -> packages it must never import: ours (architecture.md: data flows one way) and third-party ones
# that belong to another folder's job (only eval_tasks talks to lmms-eval; prompts needs nothing but jinja2).
THIRD_PARTY_BEYOND_PROMPTS = {"datasets", "transformers", "torch", "vllm", "openai", "spacy", "lmms_eval", "rich"}
FORBIDDEN = {
    "prompts": {"builders", "cadinst", "cadqa", "eval_tasks", "cadvi", *THIRD_PARTY_BEYOND_PROMPTS},
    "builders": {"cadinst", "cadqa", "eval_tasks", "cadvi", "lmms_eval"},
    "cadinst": {"cadqa", "eval_tasks", "cadvi", "lmms_eval"},
    "cadqa": {"cadinst", "eval_tasks", "cadvi", "lmms_eval"},
    "eval_tasks": {"cadinst", "cadvi"},
    "cadvi": {"lmms_eval"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_imports_flow_one_way():
    violations = []
    for folder, forbidden in FORBIDDEN.items():
        for path in (ROOT / folder).rglob("*.py"):
            bad = imported_packages(path) & forbidden  # lazy imports inside functions count too
            if bad:
                violations.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert violations == []


def test_the_import_rule_sees_lazy_and_dotted_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n    import lmms_eval.llm_judge\n    from lmms_eval import tasks\n    from . import x\n"
    )
    assert imported_packages(module) == {"lmms_eval"}


def test_citation_cff_follows_cff_1_2_0():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    assert {"message", "title", "authors"} <= cff.keys()
    assert cff["license"] == "MIT"  # SPDX, case-sensitive
    preferred = cff["preferred-citation"]
    assert preferred["type"] == "article"  # "preprint" is not a CFF type
    assert preferred["doi"] == "10.48550/arXiv.2406.09240"
    assert [a["family-names"] for a in preferred["authors"]][:1] == ["Lin"]
    assert len(preferred["authors"]) == 7
