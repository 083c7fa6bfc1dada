"""The one renderer: sandboxed, strict, hashed."""

from __future__ import annotations

import jinja2
import pytest
from jinja2.exceptions import SecurityError

from prompts import load_template, render, template_hash


def test_user_template_renders_and_is_hashed(tmp_path):
    path = tmp_path / "mine.jinja"
    path.write_text("Image 1: {{ first }}\nImage 2: {{ second }}\n")
    assert render(str(path), first="a dog", second="a cat") == "Image 1: a dog\nImage 2: a cat"
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


def test_hash_covers_included_templates(tmp_path):
    (tmp_path / "part.jinja").write_text("instruction v1")
    (tmp_path / "main.jinja").write_text('Image 1: {{ a }}\n{% include "part.jinja" %}')
    first = load_template(str(tmp_path / "main.jinja"))
    assert first.render(a="x") == "Image 1: x\ninstruction v1"
    (tmp_path / "part.jinja").write_text("instruction v2")
    load_template.cache_clear()
    assert load_template(str(tmp_path / "main.jinja")).sha256 != first.sha256


def test_phase1_prompt_matches_the_paper():
    text = render("phase1.jinja", caption_1="A man rides a bike.", caption_2="A dog runs.")
    assert text.startswith("Image 1: A man rides a bike.\nImage 2: A dog runs.\n\nSummarize the commonalities")
    assert text.endswith("relative positions between objects, etc.")
    assert render("conversation_cad.jinja").startswith("Image 1: <image>\nImage 2: <image>\nSummarize")
