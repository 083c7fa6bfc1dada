"""The one runner's contract, on a Ray cluster: a stage as a Ray Data pipeline, resumable, exactly once.

:func:`run_task_ray` runs a :class:`~builders.generate.task.GenerationTask` like
:func:`~builders.generate.run_task` does, into the same run folder (manifest, ``records/`` and
``rejects/`` shards), so ``cadvi export`` and ``cadvi build`` are unchanged. Each round:

1. the driver renders the requests of every item still to do (the task's ``format_input``, a new seed
   per attempt), and rejects for good the prompts too long to run, before any replica sees them;
2. the requests become a Ray dataset and go through the engine's ``ray.data.llm`` processor (vLLM
   replicas across the cluster, or HTTP endpoints), written by Ray as JSON Lines under
   ``<run>/ray/outputs/``, with Ray Data checkpointing keyed by the request (``<key>#<attempt>``);
3. the driver reads the outputs back, validates each with the task's ``format_output`` and writes the
   record or the reject, exactly as the local runner does, then deletes the outputs it took in.

A driver killed at any point resumes: the requests Ray already wrote are in its checkpoint and are not
generated again; outputs not yet taken in are taken in on the rerun; an output whose attempt is already
in the store is skipped. So every item is in the store exactly once, and ``valid + rejected ==
attempted`` holds across the cluster. Rejects go to the next round with a new seed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from builders.generate.ray_engines import ID_COLUMN, RayEngine
from builders.generate.runner import Run, RunSummary, run_identity
from builders.generate.task import GenerationTask, Item
from builders.llm.base import TOO_LONG, BackendUnavailableError, Result
from builders.release.origin import package_version
from builders.runs import InputFile, RunStore


def run_task_ray(
    task: GenerationTask[Item],
    items: Iterable[Item],
    engine: RayEngine,
    out: str | os.PathLike,
    *,
    ray_address: str | None = None,
    num_cpus: int | None = None,
    inputs: Sequence[InputFile] | Mapping[str, str] | None = None,
    extend: bool = False,
    console: Console | None = None,
    progress: bool = True,
) -> RunSummary:
    """Generate an output for every item that has none yet, on Ray; returns what this run did.

    ``ray_address``: ``None`` starts (or joins) a local cluster, ``"auto"`` joins a running one (``ray start``
    on every node), ``"local"`` always starts a new one; ``num_cpus``: logical CPUs of a local cluster.
    Raises :class:`BackendUnavailableError` (with ``.summary``) when the endpoints stop answering.
    """
    try:
        import ray
    except ImportError:
        raise ImportError(
            "--engine ray needs Ray Data: pip install 'ray[data]' (never ray[llm], which replaces vLLM); "
            "on CPU see scripts/setup-engines-env.sh"
        ) from None

    started = time.perf_counter()
    folder = Path(out)
    identity = run_identity(task, engine.name, engine.model)
    details = {"backend": engine.describe(), "version": package_version(), "engine": "ray"}
    store = RunStore(folder, identity, details, inputs=inputs, extend=extend)
    with store:
        keyed: dict[str, Item] = {}
        for item in items:
            keyed.setdefault(task.key(item, engine.model), item)
        run = Run(task, store, keyed, engine, None)  # type: ignore[arg-type]  (an engine has name, model, check)
        pipeline = _Pipeline(engine, folder / "ray")
        try:
            pipeline.take_in(run)  # outputs a killed run left behind
            if run.todo():
                engine.check()
                if not ray.is_initialized():
                    ray.init(address=ray_address, num_cpus=num_cpus, include_dashboard=False, log_to_driver=progress)
                cpu = not ray.cluster_resources().get("GPU")
                while pending := run.todo():
                    rows = []
                    for key in pending:
                        request = run.request(key)
                        too_long = run.too_long(request) or engine.overflow(request)
                        if too_long:  # a replica would stall on it: reject it here, for good
                            run.settle(key, Result.failure(request.key, too_long, TOO_LONG))
                        else:
                            rows.append(engine.row(request))
                    if rows:
                        pipeline.run_round(run, rows, cpu=cpu, progress=progress)
        except BackendUnavailableError as error:
            error.summary = run.finish(started)  # type: ignore[attr-defined]
            raise
    return run.finish(started)


class _Pipeline:
    """Ray Data's side of a run: the processor, its checkpoint, the outputs it writes."""

    def __init__(self, engine: RayEngine, folder: Path) -> None:
        self.engine = engine
        self.outputs = folder / "outputs"
        self.checkpoint = folder / "checkpoint"

    def run_round(self, run: Run, rows: list[dict[str, Any]], *, cpu: bool, progress: bool) -> None:
        """One round: the rows through the processor, their outputs into the store.

        A row the checkpoint holds but whose output is lost (a crash between the two writes) would be
        skipped forever: such rows run once more without the checkpoint, then are left to do.
        """
        for checkpointed in (True, False):
            try:
                self.execute(rows, cpu=cpu, progress=progress, checkpointed=checkpointed)
            finally:
                self.take_in(run)  # what was written before a failure is kept
            rows = [row for row in rows if self._still_to_do(run, str(row[ID_COLUMN]))]
            if not rows:
                return
        for row in rows:
            run.deferred.add(str(row[ID_COLUMN]).rpartition("#")[0])

    @staticmethod
    def _still_to_do(run: Run, request_id: str) -> bool:
        key, _, attempt = request_id.rpartition("#")
        return not run.settled(key) and run.store.rejected_attempts[key] + 1 == int(attempt) and key not in run.deferred

    def execute(self, rows: list[dict[str, Any]], *, cpu: bool, progress: bool, checkpointed: bool = True) -> None:
        """Run the processor over ``rows``, writing JSON Lines under ``outputs`` (checkpointed by request)."""
        import ray
        from ray.data.checkpoint import CheckpointConfig
        from ray.data.context import DataContext

        context = DataContext.get_current()
        context.enable_progress_bars = progress
        context.checkpoint_config = (
            CheckpointConfig(
                id_column=ID_COLUMN, checkpoint_path=str(self.checkpoint), delete_checkpoint_on_success=False
            )
            if checkpointed
            else None
        )
        self.outputs.mkdir(parents=True, exist_ok=True)
        dataset = self.engine.processor(cpu)(ray.data.from_items(rows))
        try:
            dataset.write_json(str(self.outputs))
        except Exception as error:  # the endpoints or the cluster failed: what was written is taken in
            raise BackendUnavailableError(f"the Ray pipeline failed: {type(error).__name__}: {error}") from error

    def rows(self) -> Iterator[tuple[Path, dict[str, Any]]]:
        for path in sorted(self.outputs.glob("*.json")):
            with open(path, encoding="utf-8") as handle:
                for line in handle:
                    if line.strip():
                        yield path, json.loads(line)

    def take_in(self, run: Run) -> None:
        """Validate and store every output not in the store yet; then drop the files taken in."""
        if not self.outputs.is_dir():
            return
        files = set()
        for path, row in self.rows():
            files.add(path)
            key, _, attempt = str(row[ID_COLUMN]).rpartition("#")
            if key not in run.items or run.settled(key) or run.store.rejected_attempts[key] + 1 != int(attempt):
                continue  # not this run's, already settled, or this attempt is already in the store
            result = self.engine.result(row)
            if result.transport_failed:
                run.deferred.add(key)
                run.summary.failed += 1
            else:
                run.settle(key, result)
        for path in files:
            path.unlink()
