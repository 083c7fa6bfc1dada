"""Jinja templates of the project and the one sandboxed renderer that renders them.

Every piece of text the project sends to a model or writes for people (dataset cards) is a
template file in ``prompts/templates``; code never assembles such text by concatenation.
Templates render in a :class:`jinja2.sandbox.SandboxedEnvironment` with
:class:`jinja2.StrictUndefined`, so a template cannot reach Python internals and a missing
variable is an error instead of an empty string.
"""

from prompts.render import Template, load_template, render, template_hash

__all__ = ["Template", "load_template", "render", "template_hash"]
