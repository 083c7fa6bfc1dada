"""Make ``lmms-eval --tasks bison`` find our tasks with no extra flag once ``cad-vi[eval]`` is installed.

lmms-eval 0.7.3 has no task plugin mechanism that works (``LMMS_EVAL_PLUGINS`` looks for a
``<plugin>.tasks`` package and a ``<plugin>.models`` module with ``AVAILABLE_MODELS``, and
``--tasks <dir>`` is broken), but it does load *model* plugins: importing ``lmms_eval.models``
builds its registry and calls ``ModelRegistryV2.load_entrypoint_manifests()``, which runs
``ep.load()`` for every entry point in the group ``lmms_eval.models`` and, if the payload is callable,
calls it and expects a ``ModelManifest`` or an iterable of them (``registry_v2.py``,
``_coerce_payload_to_manifests``). The CLI always imports ``lmms_eval.models`` (through
``lmms_eval.evaluator``) before it builds its ``TaskManager`` in ``cli_evaluate_single``.

So our entry point (``pyproject.toml``: ``[project.entry-points."lmms_eval.models"]``) is
:func:`register`: it wraps ``TaskManager.initialize_tasks`` so every task index also walks this
package's folder (``include_path`` += ``eval_tasks/``) and returns an empty list: no models.

This touches a private seam of lmms-eval; ``tests/test_eval_tasks.py`` checks it against the
installed version (``TaskManager()`` lists our tasks; the real CLI runs them). ``--include_path
<eval_tasks dir>`` works too, with or without the hook (a path is never added twice).
``lmms-eval tasks list`` does not import ``lmms_eval.models``, so it still needs ``--include-path``.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

TASKS_DIR = str(Path(__file__).resolve().parent)
_MARKER = "__cadvi_tasks_dir__"


def tasks_dir() -> str:
    """The folder lmms-eval must index for our tasks (pass it to ``--include_path`` by hand if needed)."""
    return TASKS_DIR


def _with_our_dir(include_path: str | list[str] | None) -> list[str]:
    paths = [include_path] if isinstance(include_path, str) else list(include_path or [])
    normalised = {os.path.realpath(path) for path in paths}
    if os.path.realpath(TASKS_DIR) not in normalised:
        paths.append(TASKS_DIR)
    return paths


def patch_task_manager(task_manager_class: Any | None = None) -> bool:
    """Wrap ``TaskManager.initialize_tasks`` to index our tasks; returns False if it already was."""
    if task_manager_class is None:
        from lmms_eval.tasks import TaskManager as task_manager_class
    original = task_manager_class.initialize_tasks
    if getattr(original, _MARKER, None):
        return False

    @functools.wraps(original)
    def initialize_tasks(self: Any, include_path: str | list[str] | None = None, include_defaults: bool = True):
        return original(self, include_path=_with_our_dir(include_path), include_defaults=include_defaults)

    setattr(initialize_tasks, _MARKER, TASKS_DIR)
    task_manager_class.initialize_tasks = initialize_tasks
    return True


def register() -> list:
    """The ``lmms_eval.models`` entry point: registers our tasks, contributes no model manifests.

    It must not raise (lmms-eval would only log a warning and skip every later entry point), and it
    must return an iterable of ``ModelManifest``: the empty list.
    """
    try:
        patch_task_manager()
    except Exception as error:  # an lmms-eval that moved TaskManager: say so, keep lmms-eval usable
        import warnings

        warnings.warn(
            f"cad-vi could not register its lmms-eval tasks ({error!r}); pass --include_path {TASKS_DIR}",
            RuntimeWarning,
            stacklevel=2,
        )
    return []
