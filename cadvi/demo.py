"""``cadvi demo``: the whole pipeline, offline, on the samples bundled in the package.

Localized-Narratives-style captions (ours) -> spaCy nouns -> noun-overlap pairs -> phase-1
generation through the transformers backend -> two-turn conversations -> the CaD-Inst Hub
layout -> ``datasets.load_dataset`` with stand-in images; CaD-QA from its bundled sample; then the
CaD-VI loop on tiny stand-ins (train V1 -> phase 2 with V1 -> train V2 -> lmms-eval, V1 beside V2).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterable
from pathlib import Path

import datasets
from PIL import Image, ImageDraw
from rich.console import Console
from rich.table import Table

import cadinst.hub
import cadqa.hub
from builders.export import export_phase1
from builders.llm.base import Sampling, make_backend
from builders.nouns import DEFAULT_STOP_NOUNS
from builders.pairs import Bin, PairingConfig
from builders.phase1 import Phase1Settings, run_phase1
from builders.release.images import attach_images
from builders.release.validate import checked_relative_name
from builders.runs import InputFile
from builders.stages import nouns_stage, pairs_stage
from cadvi.demo_model import build_parrot
from prompts import render

SAMPLES = Path(__file__).resolve().parent.parent
CADINST_SAMPLE = SAMPLES / "cadinst" / "sample"
CADQA_SAMPLE = SAMPLES / "cadqa" / "sample" / "CaD_QA_eval_sample.jsonl"
NARRATIVES = Path(__file__).resolve().parent / "sample" / "narratives.jsonl"
# 16 images: small quotas so every bin can be shown.
DEMO_BINS = (Bin("low", 1, 2, 0.25), Bin("medium", 3, 4, 0.5), Bin("high", 5, None, 0.25))


def draw_stand_in_images(names: Iterable[str], root: Path, size: int = 64) -> int:
    """Write a small deterministic picture for every image name (colours and shapes from its hash).

    The release never ships images; demos and tests need real files to decode.
    """
    count = 0
    for name in sorted(set(names)):
        path = root.joinpath(*checked_relative_name(name).parts)
        if path.exists():
            continue
        digest = hashlib.sha256(name.encode()).digest()
        image = Image.new("RGB", (size, size), tuple(digest[:3]))
        draw = ImageDraw.Draw(image)
        for i in range(3):
            x, y = digest[3 + i] % (size // 2), digest[6 + i] % (size // 2)
            draw.ellipse((x, y, x + size // 3, y + size // 3), fill=tuple(digest[9 + 3 * i : 12 + 3 * i]))
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, format="JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else None)
        count += 1
    return count


def run(
    workdir: Path | None = None, console: Console | None = None, model: str | None = None, loop: bool = True
) -> dict[str, datasets.Dataset]:
    """Run the demo in ``workdir`` (a temporary folder by default); returns the loaded datasets.

    captions -> nouns -> pairs -> generation (transformers backend) -> conversations -> CaD-Inst
    build -> ``load_dataset``; CaD-QA is built from its bundled sample. ``loop``: then the CaD-VI loop on
    tiny stand-ins (:mod:`cadvi.demo_loop`: train V1 -> phase 2 with V1 -> train V2 -> lmms-eval V1 vs V2).
    """
    console = console or Console()
    workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="cadvi-demo-"))
    console.rule("[bold]cadvi demo[/bold]: the phase-1 pipeline on bundled captions, offline")
    console.print(f"working folder: {workdir}")

    records = nouns_stage(
        NARRATIVES, workdir / "nouns.jsonl", stop_nouns=DEFAULT_STOP_NOUNS, cache_dir=workdir / "cache" / "nouns"
    )
    console.print(
        f"[bold]1. nouns[/bold]: {len(records)} images, e.g. {records[0].image}: {', '.join(records[0].nouns)}"
    )
    config = PairingConfig(num_pairs=8, max_uses_per_image=2, bins=DEMO_BINS, seed=0)
    pairs, report = pairs_stage(workdir / "nouns.jsonl", workdir / "pairs.jsonl", config=config)
    console.print(
        f"[bold]2. pairs[/bold]: {len(pairs)} pairs; per bin: " + ", ".join(f"{b.name} {b.pairs}" for b in report.bins)
    )

    settings = Phase1Settings(sampling=Sampling(max_tokens=256, temperature=0.0, seed=0))
    if model is None:
        model_path = stand_in_model(workdir / "models" / "parrot", [p.captions for p in pairs])
        console.print(
            "[bold yellow]3. generation with a STAND-IN model[/bold yellow]: no real LLM can be downloaded "
            "offline, so the demo uses a tiny random model fitted for a few seconds on the bundled sample "
            "summaries. Its text is not meaningful; the pipeline around it is the real one. Use --model "
            "for a real model, or see the README for Mixtral on GPUs."
        )
    else:
        model_path = model
        console.print(f"[bold]3. generation[/bold] with {model}")
    backend = make_backend("transformers", str(model_path), batch_size=4)
    try:
        inputs = [InputFile.of(workdir / "pairs.jsonl")]
        summary = run_phase1(pairs, backend, workdir / "run", settings, inputs=inputs, console=console)
    finally:
        backend.close()
    console.print(f"   {summary.line()}")
    if summary.valid == 0 and not summary.already_done:
        console.print(
            f"[red]no summary passed validation; nothing to export[/red] (rejects: {workdir / 'run' / 'rejects'})"
        )
        return {}
    exported = export_phase1(workdir / "run", workdir / "release", overwrite=True)
    console.print(f"[bold]4. conversations[/bold]: {exported} two-turn conversations in {workdir / 'release'}")

    cadinst.hub.build(
        workdir / "release",
        workdir / "hub" / "cadinst",
        repo_id="demo/CaD-Inst",
        overwrite=True,
        cache_dir=workdir / "cache",
    )
    qa = cadqa.hub.build(
        CADQA_SAMPLE, workdir / "hub" / "cadqa", repo_id="demo/CaD-QA", overwrite=True, cache_dir=workdir / "cache"
    )
    loaded = {
        "cadinst/phase1": datasets.load_dataset(
            str(workdir / "hub" / "cadinst"), "phase1", split="train", cache_dir=str(workdir / "cache")
        ),
        "cadqa/test": datasets.load_dataset(
            str(workdir / "hub" / "cadqa"), split="test", cache_dir=str(workdir / "cache")
        ),
    }
    images = workdir / "images"
    drawn = draw_stand_in_images((n for ds in loaded.values() for pair in ds["image"] for n in pair), images)
    console.print(
        f"[bold]5. datasets[/bold]: built the Hub layout; drew {drawn} stand-in images into {images} "
        f"(the release never ships images); {len(qa)} CaD-QA questions from the bundled sample"
    )
    loaded = {name: attach_images(ds, images) for name, ds in loaded.items()}
    table = Table(title="Built, then loaded back with datasets.load_dataset")
    for column in ("dataset", "rows", "columns", "first pair (decoded)"):
        table.add_column(column)
    for name, ds in loaded.items():
        first = ds[0]["images"]
        sizes = " + ".join(f"{i.size[0]}x{i.size[1]}" for i in first)
        table.add_row(name, str(len(ds)), ", ".join(ds.column_names), sizes)
    console.print(table)
    first = loaded["cadinst/phase1"][0]["conversations"]
    console.print("[bold]first generated conversation[/bold]:")
    for turn in first:
        console.print(f"  [cyan]{turn['from']}[/cyan]: {turn['value']}", highlight=False)
    for folder in ("cadinst", "cadqa"):
        card = workdir / "hub" / folder / "README.md"
        console.print(f"[bold]{folder}[/bold] card: {card}")
        console.print(_statistics_excerpt(card.read_text()))
    if loop:
        from cadvi.demo_loop import run_loop_demo

        run_loop_demo(workdir, workdir / "release", images, console)
    console.print("[green]demo finished[/green]: the Hub folders above are what `cadvi publish` uploads")
    return loaded


def stand_in_model(path: str | Path, captions: list[tuple[str, str]] | None = None) -> Path:
    """The tiny stand-in, fitted on the bundled sample summaries with prompts of ``captions`` pairs
    (default: consecutive bundled narratives); reused when ``path`` already holds the same build."""
    if captions is None:
        from builders.captions import read_captions

        texts = [c.caption for c in read_captions(NARRATIVES)]
        captions = list(zip(texts[::2], texts[1::2], strict=False))
    path = Path(path)
    rows = [json.loads(p.read_text()) for p in sorted((CADINST_SAMPLE / "json_files").glob("*.json"))]
    summaries = [row["conversations"][1]["value"] for rows_ in rows for row in rows_]
    examples = [
        (
            render("phase1.jinja", caption_1=captions[i % len(captions)][0], caption_2=captions[i % len(captions)][1]),
            text,
        )
        for i, text in enumerate(summaries)
    ]
    return build_parrot(path, examples)


def _statistics_excerpt(card: str) -> str:
    section = card.split("## Statistics", 1)[1].split("## Licence", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("|") or line.startswith("###"))
