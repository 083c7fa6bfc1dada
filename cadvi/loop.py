"""The CaD-VI loop (paper §3.3, Fig. 1): phase 1 -> V1 -> phase 2 with V1 -> V2 -> V1 and V2 evaluated side by side.

1. **V1**: the training recipe on the phase-1 data (a CaD-Inst release or ``cadvi export phase1`` folder);
2. **phase 2 with V1**: the merged V1 looks at both images of every phase-2 pair and refines its annotation
   (:mod:`builders.phase2`), exported in the release's phase-2 shape;
3. **V2**: the recipe again, on phase 1 + the new phase 2;
4. **evaluation**: lmms-eval runs V1 and V2 on the same tasks; one table, V1 beside V2.

Everything lands in one work folder with one manifest (``loop.json``): each step's outputs and what produced
them (models, the sha256 of every data file and template), so any figure traces back to its inputs. A step
whose outputs are recorded as complete is not run again: a killed loop resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "loop.json"


@dataclass(frozen=True)
class LoopConfig:
    """What the loop runs on. ``recipe``: a recipe mapping (the YAML's blocks); its ``data`` and ``output_dir``
    are set by the loop. ``phase2``: :func:`builders.phase2.sources.read_phase2_source` arguments."""

    workdir: Path
    phase1: Path  # a CaD-Inst release or export folder holding phase 1
    phase2_source: Path
    image_roots: tuple[Path, ...]  # training images of phase 1 and phase 2, tried in order
    recipe: Mapping[str, Any]
    phase2_options: Mapping[str, Any] = field(default_factory=dict)
    phase2_sampling: Mapping[str, Any] = field(default_factory=dict)  # Sampling fields (default: phase 2's)
    phase2_mode: str = "refine"  # the release's; "scratch": the images alone
    eval_tasks: tuple[str, ...] = ("bison",)
    eval_env: Mapping[str, str] = field(default_factory=dict)  # CADVI_EVAL_DATA_DIR, CADVI_EVAL_IMAGE_ROOT, ...
    eval_limit: int | None = None
    eval_max_new_tokens: int = 16


@dataclass
class LoopResult:
    v1: Path
    v2: Path
    phase2_rows: int
    scores: dict[str, dict[str, dict[str, float | None]]]  # model -> task -> metric -> value
    manifest: Path


def run_loop(config: LoopConfig, *, say: Callable[[str], None] = print) -> LoopResult:
    """Run (or resume) the loop in ``config.workdir``; ``say`` reports each step as it starts or is reused."""
    from builders.export import export_phase2
    from builders.llm.base import Sampling, make_backend
    from builders.phase2.sources import read_phase2_source
    from builders.phase2.task import DEFAULT_SAMPLING, Phase2Settings, Phase2Task, run_phase2
    from builders.runs import InputFile

    work = Path(config.workdir)
    work.mkdir(parents=True, exist_ok=True)
    manifest = _Manifest(work / MANIFEST)
    phase1_files = _data_files(config.phase1)

    v1 = manifest.step(
        "v1", say, lambda: _train(config, work / "v1", [("cadinst", config.phase1, "phase1")]), inputs=phase1_files
    )
    sampling = Sampling(**{**_fields(DEFAULT_SAMPLING), **config.phase2_sampling})
    settings = Phase2Settings(mode=config.phase2_mode, sampling=sampling)

    def phase2() -> dict[str, Any]:
        items = read_phase2_source(config.phase2_source, **config.phase2_options)
        with make_backend("transformers", v1["model"]) as backend:
            summary = run_phase2(
                items,
                backend,
                work / "phase2" / "run",
                settings,
                inputs=[InputFile.of(config.phase2_source)],
                progress=False,
            )
        rows = export_phase2(work / "phase2" / "run", work / "phase2" / "release", overwrite=True)
        return {"release": str(work / "phase2" / "release"), "rows": rows, "run": summary.line()}

    task = Phase2Task(settings)
    produced = {"model": v1["model"], "template": task.settings.template_name, "template_sha256": task.template.sha256}
    p2 = manifest.step("phase2", say, phase2, inputs=[config.phase2_source], produced_by=produced)
    sources = [("cadinst", config.phase1, "phase1"), ("cadinst", Path(p2["release"]), "phase2")]
    v2 = manifest.step(
        "v2", say, lambda: _train(config, work / "v2", sources), inputs=[*phase1_files, *_data_files(p2["release"])]
    )
    scores = {}
    for name, model in (("V1", v1["model"]), ("V2", v2["model"])):
        step = manifest.step(
            f"eval-{name}", say, lambda model=model, name=name: _evaluate(config, model, work / "eval" / name)
        )
        scores[name] = step["scores"]
    return LoopResult(Path(v1["model"]), Path(v2["model"]), p2["rows"], scores, manifest.path)


def _train(config: LoopConfig, folder: Path, sources: Sequence[tuple[str, Path, str]]) -> dict[str, Any]:
    from cadvi.commands.train import register_cadinst
    from eval_tasks.recipe.config import recipe_from_mapping
    from eval_tasks.recipe.merge import merge_adapter
    from eval_tasks.recipe.train import train

    register_cadinst()
    raw = {block: dict(values) for block, values in config.recipe.items()}
    raw["data"] = {
        **raw.get("data", {}),
        "sources": [{"kind": kind, "path": str(path), "config": name} for kind, path, name in sources],
        "image_roots": [str(root) for root in config.image_roots],
    }
    raw["training"] = {**raw["training"], "output_dir": str(folder / "adapter")}
    run = train(recipe_from_mapping(raw, source=f"the loop's recipe ({folder.name})"))  # resumes a killed run
    model = merge_adapter(run.output, folder / "model", dtype="float32", overwrite=True)
    return {"adapter": str(run.output), "model": str(model), "steps": run.trainer.state.global_step}


def _evaluate(config: LoopConfig, model: str, out: Path) -> dict[str, Any]:
    """lmms-eval (``llava_hf``, the real CLI) on the loop's tasks; the plain-number metrics of each task."""
    lmms_eval = Path(sys.executable).with_name("lmms-eval")
    command = [str(lmms_eval), "--model", "llava_hf", "--model_args", f"pretrained={model},device=cpu,device_map=cpu"]
    command += ["--tasks", ",".join(config.eval_tasks), "--output_path", str(out)]
    command += ["--gen_kwargs", f"max_new_tokens={config.eval_max_new_tokens}"]
    if config.eval_limit:
        command += ["--limit", str(config.eval_limit)]
    env = {key: value for key, value in os.environ.items() if not key.startswith("CADVI_")}
    env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **config.eval_env}
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, cwd=out.parent if out.parent.exists() else None
    )
    found = sorted(out.rglob("*_results.json"))
    if done.returncode != 0 or not found:
        tail = (done.stdout + done.stderr)[-1500:]
        raise RuntimeError(f"lmms-eval failed on {model} (exit {done.returncode}):\n{tail}")
    results = json.loads(found[-1].read_text())["results"]
    scores = {
        task: {key.partition(",")[0]: value for key, value in metrics.items() if isinstance(value, (int, float))}
        for task, metrics in results.items()
    }
    return {"results": str(found[-1]), "scores": scores}


def score_table(result: LoopResult, metric: str = "accuracy") -> list[tuple[str, float | None, float | None]]:
    """``(task, V1, V2)`` rows of one metric."""
    tasks = sorted(set(result.scores["V1"]) | set(result.scores["V2"]))
    return [
        (task, result.scores["V1"].get(task, {}).get(metric), result.scores["V2"].get(task, {}).get(metric))
        for task in tasks
    ]


class _Manifest:
    """``loop.json``: each step's outputs and inputs; a step recorded with the same inputs is reused."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.steps: dict[str, Any] = json.loads(path.read_text())["steps"] if path.is_file() else {}

    def step(
        self,
        name: str,
        say: Callable[[str], None],
        run: Callable[[], dict[str, Any]],
        *,
        inputs: Sequence[Path | str] = (),
        produced_by: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        hashes = {str(path): _sha256(Path(path)) for path in inputs}
        recorded = self.steps.get(name)
        if recorded and recorded.get("inputs") == hashes:
            say(f"{name}: done before ({self.path.name}), reused")
            return recorded["outputs"]
        say(f"{name}: running")
        outputs = run()
        self.steps[name] = {"inputs": hashes, "outputs": outputs, "produced_by": dict(produced_by or {})}
        self.path.write_text(json.dumps({"steps": self.steps}, indent=2) + "\n")
        return outputs


def _data_files(folder: Path | str) -> list[Path]:
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".json", ".jsonl", ".parquet"))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fields(sampling: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(sampling)
