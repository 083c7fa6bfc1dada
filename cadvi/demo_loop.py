"""The demo's second half: the CaD-VI loop on tiny stand-ins (phase 1 -> V1 -> phase 2 -> V2 -> lmms-eval).

Offline there is no Vicuna, CLIP or LLaVA to download, so V1 and V2 start from a tiny random LLaVA
(``builders.llm.tiny``) and the recipe trains it for a few hundred steps. Its embeddings and output layer
are trained too (``modules_to_save``), which the real recipe does not do: a random tiny model cannot learn
anything through LoRA alone. The phase-2 source is our bundled sample in the MIMIC-IT CGD format (not
MIMIC-IT data) over stand-in images, run in ``scratch`` mode: a model trained for seconds on phase-1 prompts
only parrots those, and the ``refine`` prompt (the annotation in quotes), which the release used and
``cadvi generate phase2`` defaults to, is one it never saw. The evaluation is a BISON-format file built
from the demo's own pairs (their turn-2 questions), not the BISON benchmark. The loop, the recipe and
lmms-eval are the real ones; the models and figures are not meaningful, and the demo says so.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from cadvi.loop import LoopConfig, LoopResult, run_loop, score_table

CGD_SAMPLE = Path(__file__).resolve().parent / "sample" / "CGD_instructions_sample.json"
TINY_TRAINING = {
    "max_steps": 300,
    "per_device_train_batch_size": 2,
    "learning_rate": 1.0e-2,
    "projector_lr": 1.0e-3,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.05,
    "logging_steps": 100,
    "save_strategy": "no",
    "report_to": "none",
    "use_cpu": True,
    "seed": 0,
    "disable_tqdm": True,
}


def tiny_recipe(start: Path) -> dict[str, Any]:
    """The recipe's blocks for a tiny stand-in (see the module docstring for what differs from the real one)."""
    return {
        "model": {"start": str(start), "dtype": "float32", "max_length": 1024},
        "lora": {
            "r": 16,
            "alpha": 32,
            "dropout": 0.0,
            "modules_to_save": ["multi_modal_projector", "lm_head", "embed_tokens"],
        },
        "training": dict(TINY_TRAINING),
    }


def tiny_start(folder: Path, release: Path) -> Path:
    """A tiny random LLaVA whose tokenizer was trained on the release's texts (so prompts stay short)."""
    from builders.llm.tiny import LLAVA_TEXTS, build_tiny_llava

    texts = list(LLAVA_TEXTS)
    for file in sorted(release.rglob("*.json")):
        rows = json.loads(file.read_text())
        if isinstance(rows, list):
            texts += [turn["value"] for row in rows for turn in row.get("conversations", [])]
    return build_tiny_llava(folder, texts=texts, vocab_size=1024)


def bison_format_check(release: Path, images: Path, folder: Path) -> dict[str, str]:
    """A BISON-format question file from the release's turn-2 questions, and its image folder; the env for it."""
    rows = json.loads(next((release / "json_files").glob("phase1_*.json")).read_text())
    annotations, image_root = folder / "annotations", folder / "images" / "bison"
    annotations.mkdir(parents=True, exist_ok=True)
    image_root.mkdir(parents=True, exist_ok=True)
    with open(annotations / "BISON.jsonl", "w", encoding="utf-8") as handle:
        for number, row in enumerate(rows):
            question, answer = row["conversations"][2]["value"], row["conversations"][3]["value"]
            text = "Image 1: <image>\nImage 2: <image>\n" + question
            handle.write(
                json.dumps({"image": row["image"], "text": text, "answer": answer, "question_id": number}) + "\n"
            )
            for name in row["image"]:
                shutil.copyfile(images / name, image_root / name)
    return {"CADVI_EVAL_DATA_DIR": str(annotations), "CADVI_EVAL_IMAGE_ROOT": str(folder / "images")}


def run_loop_demo(workdir: Path, release: Path, images: Path, console: Console) -> LoopResult:
    """The loop on the demo's phase-1 export (``release``, images in ``images``) with tiny stand-in models."""
    from cadvi.demo import draw_stand_in_images

    console.rule("[bold]the CaD-VI loop[/bold]: phase 1 -> V1 -> phase 2 with V1 -> V2 -> lmms-eval")
    console.print(
        "[bold yellow]TINY STAND-INS[/bold yellow]: V1 and V2 are tiny random LLaVAs trained for seconds by the "
        "real recipe; the phase-2 source is our CGD-format sample over drawn images; the evaluation is a "
        "BISON-format file made from the demo's own pairs. The figures show the loop runs, not what CaD-VI scores."
    )
    loop_dir = workdir / "loop"
    coco = loop_dir / "coco_train2017"
    names = [
        image[8:] + ".jpg"
        for record in json.loads(CGD_SAMPLE.read_text())["data"].values()
        for image in record["image_ids"]
    ]
    draw_stand_in_images(names, coco)
    start = tiny_start(workdir / "models" / "tiny-llava-start", release)
    config = LoopConfig(
        workdir=loop_dir,
        phase1=release,
        phase2_source=CGD_SAMPLE,
        phase2_options={"kind": "cgd", "coco_root": coco},
        phase2_mode="scratch",  # a tiny stand-in cannot follow the refine prompt it never saw (see the docstring)
        phase2_sampling={"max_tokens": 400},
        image_roots=(images, coco),
        recipe=tiny_recipe(start),
        eval_tasks=("bison",),
        eval_env=bison_format_check(release, images, loop_dir / "eval-data"),
    )
    result = run_loop(config, say=lambda line: console.print(f"   {line}"))
    table = Table(title="lmms-eval, the same task for both models (tiny stand-ins: not CaD-VI's scores)")
    for column in ("task", "V1 (phase 1)", "V2 (phase 1 + phase 2)"):
        table.add_column(column)
    for task, first, second in score_table(result):
        table.add_row(f"{task} (accuracy %)", _percent(first), _percent(second))
    console.print(table)
    console.print(
        f"   phase 2 (scratch mode): {result.phase2_rows} summaries by V1 in {loop_dir / 'phase2' / 'release'}"
    )
    console.print(f"   V1: {result.v1}\n   V2: {result.v2}\n   what produced what: {result.manifest}")
    return result


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"
