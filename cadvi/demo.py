"""``cadvi demo``: the whole pipeline, offline, on the samples bundled in the package.

For now (the dataset foundation): build CaD-Inst and CaD-QA from the bundled samples in the
release formats into the Hub layout, draw stand-in images for their file names, load the built
folders back with ``datasets.load_dataset`` (images resolved) and print the statistics.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterable
from pathlib import Path

import datasets
from PIL import Image, ImageDraw
from rich.console import Console
from rich.table import Table

import cadinst.hub
import cadqa.hub
from builders.release.images import attach_images, checked_relative_name

SAMPLES = Path(__file__).resolve().parent.parent
CADINST_SAMPLE = SAMPLES / "cadinst" / "sample"
CADQA_SAMPLE = SAMPLES / "cadqa" / "sample" / "CaD_QA_eval_sample.jsonl"


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


def run(workdir: Path | None = None, console: Console | None = None) -> dict[str, datasets.Dataset]:
    """Run the demo in ``workdir`` (a temporary folder by default); returns the loaded datasets."""
    console = console or Console()
    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="cadvi-demo-"))
    workdir = Path(workdir)
    console.rule("[bold]cadvi demo[/bold]: datasets from the bundled samples")
    console.print(f"working folder: {workdir}")

    phases = cadinst.hub.build(
        CADINST_SAMPLE,
        workdir / "hub" / "cadinst",
        repo_id="demo/CaD-Inst",
        overwrite=True,
        cache_dir=workdir / "cache",
    )
    qa = cadqa.hub.build(
        CADQA_SAMPLE, workdir / "hub" / "cadqa", repo_id="demo/CaD-QA", overwrite=True, cache_dir=workdir / "cache"
    )
    images = workdir / "images"
    drawn = draw_stand_in_images((n for ds in [*phases.values(), qa] for pair in ds["image"] for n in pair), images)
    console.print(f"drew {drawn} stand-in images into {images} (the release never ships images)")

    loaded = {
        "cadinst/all": datasets.load_dataset(
            str(workdir / "hub" / "cadinst"), "all", split="train", cache_dir=str(workdir / "cache")
        ),
        "cadqa/test": datasets.load_dataset(
            str(workdir / "hub" / "cadqa"), split="test", cache_dir=str(workdir / "cache")
        ),
    }
    loaded = {name: attach_images(ds, images) for name, ds in loaded.items()}
    table = Table(title="Built, then loaded back with datasets.load_dataset")
    for column in ("dataset", "rows", "columns", "first pair (decoded)"):
        table.add_column(column)
    for name, ds in loaded.items():
        first = ds[0]["images"]
        table.add_row(
            name, str(len(ds)), ", ".join(ds.column_names), " + ".join(f"{i.size[0]}x{i.size[1]}" for i in first)
        )
    console.print(table)
    for folder in ("cadinst", "cadqa"):
        card = workdir / "hub" / folder / "README.md"
        console.print(f"[bold]{folder}[/bold] card: {card}")
        console.print(_statistics_excerpt(card.read_text()))
    console.print("[green]demo finished[/green]: the Hub folders above are what `cadvi publish` uploads")
    return loaded


def _statistics_excerpt(card: str) -> str:
    section = card.split("## Statistics", 1)[1].split("## Licence", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("|") or line.startswith("###"))
