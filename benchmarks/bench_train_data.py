"""Feeding the trainer: our collator vs the fork's per-sample way, and the memory of opening the 1.29M-row mix.

1. **Collator** (one process, one thread): two-image CaD-Inst samples at full resolution (the CLIP
   ViT-L/14-336 preprocessing: 336 px, bicubic, CLIP mean/std; patch 14, so 576 tokens per image),
   random-noise JPEGs of COCO size (640 x 480 and 480 x 640) read from disk. The fork's way, per sample:
   open, ``expand2square`` with the CLIP mean colour in PIL, ``CLIPImageProcessor``, its
   ``tokenizer_image_token`` and ``preprocess_v1`` label masking (the conversation tokenized once, each
   round twice more). Ours: :class:`eval_tasks.recipe.collator.CadCollator` (the processor pads, the chat
   template's generation mask gives the labels). Goal: >= 1.0x the fork, and >= 20 samples/s per core
   (so one dataloader worker per GPU feeds an H100 at ~2-3 samples/s per GPU for 7B).
2. **Memory** (each in a fresh process, peak RSS): ``json.load`` of the training files as the fork does
   (phase 1 loaded twice, as its data list names it twice) vs :func:`eval_tasks.recipe.data.prepare_mix`
   building the mix once (the main process) and reopening it (what every rank does, with the sampler's
   length column). Synthetic rows of the real size (~1.6 KB: 665K LLaVA rows, 278K phase 1, 71K phase 2).
   Goal: opening <= 25% of ``json.load``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_train_data.py            # both, full size
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_train_data.py --scale 0.1 --samples 100
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CLIP_336 = {  # openai/clip-vit-large-patch14-336 preprocessor_config.json
    "do_resize": True,
    "size": {"shortest_edge": 336},
    "resample": 3,
    "do_center_crop": True,
    "crop_size": {"height": 336, "width": 336},
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "do_convert_rgb": True,
}
IGNORE_INDEX, IMAGE_TOKEN_INDEX = -100, -200
SIZES = {"llava": 665_298, "phase1": 278_000, "phase2": 71_000}


# --- 1. collator ------------------------------------------------------------------------------------


def build_processor(folder: Path) -> Any:
    from transformers import LlavaProcessor

    from builders.llm.tiny import train_tokenizer
    from eval_tasks.recipe.images import padding_image_processor
    from eval_tasks.recipe.template import CHAT_TEMPLATE

    texts = [row["conversations"][1]["value"] for row in sample_rows()] * 3
    tokenizer = train_tokenizer(
        texts, vocab_size=2000, extra_special_tokens={"image_token": "<image>"}, model_max_length=4096
    )
    tokenizer.pad_token = "<pad>"
    processor = LlavaProcessor(
        image_processor=padding_image_processor(CLIP_336, "pad"),
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token="<image>",
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(folder)
    return processor


def sample_rows() -> list[dict[str, Any]]:
    path = ROOT / "cadinst" / "sample" / "json_files" / "phase1_instruct_data_sample.json"
    return json.loads(path.read_text())


def write_images(folder: Path, count: int) -> list[str]:
    import numpy as np
    from PIL import Image

    generator = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        height, width = (480, 640) if index % 2 == 0 else (640, 480)
        pixels = generator.integers(0, 256, (height, width, 3), dtype=np.uint8)
        path = folder / f"{index}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(str(path))
    return paths


def fork_encode(row: dict[str, Any], image_processor: Any, tokenizer: Any) -> dict[str, Any]:
    """The fork's per-sample work: PIL expand2square + CLIPImageProcessor + tokenizer_image_token + preprocess_v1."""
    import torch
    from PIL import Image

    from eval_tasks.recipe.template import fork_prompt

    background = tuple(int(x * 255) for x in image_processor.image_mean)
    images = []
    for path in row["images"]:
        image = Image.open(path).convert("RGB")
        side = max(image.size)
        square = Image.new(image.mode, (side, side), background)
        square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
        images.append(square)
    pixel_values = image_processor.preprocess(images, return_tensors="pt")["pixel_values"]

    def tokenizer_image_token(text: str) -> list[int]:
        chunks = [tokenizer(chunk).input_ids for chunk in text.split("<image>")]
        ids = list(chunks[0])
        for chunk in chunks[1:]:
            ids += [IMAGE_TOKEN_INDEX, *chunk[1:]]  # each later chunk drops its BOS
        return ids

    prompt = fork_prompt(row["conversations"])
    input_ids = torch.tensor(tokenizer_image_token(prompt))
    labels = input_ids.clone()
    separator = " ASSISTANT: "
    position = 1
    labels[:position] = IGNORE_INDEX
    for turn in prompt.split("</s>"):
        if not turn:
            break
        parts = turn.split(separator)
        if len(parts) != 2:
            break
        turn_length = len(tokenizer_image_token(turn))
        instruction_length = len(tokenizer_image_token(parts[0] + separator)) - 2
        labels[position : position + instruction_length] = IGNORE_INDEX
        position += turn_length
    labels[position:] = IGNORE_INDEX
    return {"input_ids": input_ids, "labels": labels, "pixel_values": pixel_values}


def bench_collator(samples: int, workdir: Path) -> tuple[float, float]:
    from transformers import CLIPImageProcessor

    from eval_tasks.recipe.collator import CadCollator

    processor = build_processor(workdir / "processor")
    paths = write_images(workdir / "images", 16)
    rows = []
    for index, row in enumerate(sample_rows() * (samples // len(sample_rows()) + 1)):
        rows.append({**row, "id": f"{row['id']}-{index}", "images": [paths[index % 16], paths[(index + 5) % 16]]})
    rows = rows[:samples]
    clip = CLIPImageProcessor(**{key: value for key, value in CLIP_336.items()})
    ours = CadCollator(processor, max_length=2048)
    timings = {}
    for name, encode in (
        ("fork", lambda row: fork_encode(row, clip, processor.tokenizer)),
        ("ours", ours.encode),
    ):
        encode(rows[0])  # warm up (imports, caches)
        started = time.perf_counter()
        for row in rows:
            encode(row)
        timings[name] = samples / (time.perf_counter() - started)
    check = ours.encode(rows[0])
    assert int((check["input_ids"] == ours.image_id).sum()) == 2 * 576, "576 image tokens per 336 px image"
    return timings["fork"], timings["ours"]


# --- 2. memory --------------------------------------------------------------------------------------


def synthetic_files(folder: Path, scale: float) -> dict[str, Path]:
    """LLaVA-format files of the real row sizes; images point at a few real files under ``folder/images``."""
    rng = random.Random(0)
    summary = sample_rows()[0]["conversations"][1]["value"]
    words = summary.split()
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for index in range(64):
        (folder / "images" / f"{index}.jpg").write_bytes(b"\xff\xd8\xff")  # stat() is all prepare needs
    files = {}
    for kind, full in SIZES.items():
        count = max(1, int(full * scale))
        path = folder / f"{kind}.json"
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("[")
            for index in range(count):
                # ~1.6 KB per row, as the real files (581 MB / 349K CaD-Inst rows; 1.03 GB / 665K LLaVA rows)
                text = " ".join(rng.choices(words, k=rng.randint(200, 260)))
                if kind == "llava" and index % 16 == 0:  # ~6% text-only, as the 665K mix
                    row = {
                        "id": f"t{index}",
                        "conversations": [{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": text}],
                    }
                elif kind == "llava":
                    prompt = "<image>\nDescribe the image."
                    row = {
                        "id": index,
                        "image": f"{index % 64}.jpg",
                        "conversations": [{"from": "human", "value": prompt}, {"from": "gpt", "value": text}],
                    }
                else:
                    prompt = "Image 1: <image>\nImage 2: <image>\nSummarize the commonalities and differences."
                    images = [f"{index % 64}.jpg", f"{(index + 1) % 64}.jpg"]
                    row = {
                        "id": f"{kind}-{index}",
                        "image": images,
                        "conversations": [{"from": "human", "value": prompt}, {"from": "gpt", "value": text}],
                    }
                handle.write(("," if index else "") + json.dumps(row))
            handle.write("]")
        files[kind] = path
    return files


def measure(mode: str, folder: Path) -> None:
    """Run in a child process: do ``mode`` and print peak RSS (MiB) and rows."""
    files = {kind: folder / f"{kind}.json" for kind in SIZES}
    started = time.perf_counter()
    if mode == "json":
        rows = []
        for kind in ("llava", "phase1", "phase1", "phase2"):  # the fork's data list: phase 1 twice
            with open(files[kind], encoding="utf-8") as handle:
                rows += json.load(handle)
        count = len(rows)
    else:
        from eval_tasks.recipe.data import DataConfig, Source, prepare_mix

        config = DataConfig(
            sources=(Source(str(files["llava"])), Source(str(files["phase1"]), repeat=2), Source(str(files["phase2"]))),
            image_roots=(str(folder / "images"),),
        )
        mix = prepare_mix(config, folder / "mix")
        lengths = mix.with_format("numpy")["modality_length"]  # what the sampler reads in every rank
        count = len(mix) if len(lengths) == len(mix) else -1
    seconds = time.perf_counter() - started
    peak = peak_rss_mib()
    print(json.dumps({"mode": mode, "rows": count, "peak_mib": round(peak), "seconds": round(seconds, 1)}))


def peak_rss_mib() -> float:
    """This process's peak resident memory (``VmHWM``: reset by exec, unlike ``ru_maxrss``, which keeps the
    forking parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(mode: str, folder: Path) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, __file__, "--measure", mode, "--folder", str(folder)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=200, help="samples per collator (default 200)")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the 1.29M-row mix (default 1)")
    parser.add_argument("--skip", choices=["collator", "memory"], help="run only the other part")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.folder)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-train-data-") as tmp:
        workdir = Path(tmp)
        if args.skip != "collator":
            fork, ours = bench_collator(args.samples, workdir)
            print(f"collator, {args.samples} two-image samples at 336 px, one thread:")
            print(f"  fork's way  {fork:6.1f} samples/s")
            print(
                f"  ours        {ours:6.1f} samples/s   {ours / fork:.2f}x  (goals: >= 1.0x, >= 20 samples/s per core)"
            )
        if args.skip != "memory":
            started = time.perf_counter()
            synthetic_files(workdir, args.scale)
            size = sum(p.stat().st_size for p in workdir.glob("*.json")) / 2**20
            print(f"memory, {size:,.0f} MiB of JSON written in {time.perf_counter() - started:.0f} s:")
            loaded = child("json", workdir)
            built = child("mix", workdir)
            opened = child("mix", workdir)  # the manifest matches: memory-mapped reopen
            for name, result in (
                ("json.load (fork)", loaded),
                ("prepare_mix: build", built),
                ("prepare_mix: open", opened),
            ):
                ratio = result["peak_mib"] / loaded["peak_mib"]
                figures = f"{result['rows']:>9,} rows  {result['peak_mib']:>6,} MiB peak  {result['seconds']:>6.1f} s"
                print(f"  {name:20s} {figures}  {ratio:.0%}")
            print("  goal: opening <= 25% of json.load")
    return 0


if __name__ == "__main__":
    sys.exit(main())
