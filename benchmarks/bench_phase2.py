"""Phase-2 generation around the model: the per-record cost of everything but the model, and the bytes sent.

Writes ``--pairs`` pairs of COCO-sized JPEGs (640 x 480 and 480 x 640, quality 90; random noise, the worst
case for decoding and re-encoding, or ``--content photo``: a smooth photo-like texture, ~134 KB a file against
COCO's ~155 KB) and a pairs JSONL (``{images: [a, b], annotation, id}``, CGD-like annotations of ~80 words),
reads it with :func:`builders.phase2.sources.read_pairs_jsonl` and runs :class:`builders.phase2.task.Phase2Task`
through the one runner (:func:`builders.generate.run_task`) three times, each into its own run folder:

1. **336 px** (what an OpenAI-compatible server gets with ``max_image_side=336``): a stand-in backend that does
   the OpenAI backend's own per-request work, :func:`builders.llm.content.openai_messages` (read, decode,
   LANCZOS resize to 336 px, JPEG q95, base64 data URIs) and ``json.dumps`` of the chat request body, then
   answers a fixed valid ~160-word summary at once (the stand-in for the network and the model only). The task's
   ``key`` (hashing both JPEGs), ``format_input`` (the template render) and ``format_output`` (parse and validate)
   are timed inside the run; what is left of the run's time is the runner and the record write.
2. **originals** (the baseline: ``max_image_side=None``, the JPEGs sent as they are): the same, no resize.
3. **tiny model**: the real tiny LLaVA (:func:`builders.llm.tiny.build_tiny_llava`, 32 px, random weights)
   through the transformers backend on ``--model-pairs`` pairs, ``max_tokens`` 64, temperature 0.2, one attempt
   per pair (its gibberish never passes the checks, so the default three attempts would triple it). Nothing is
   subtracted: the time per request includes the runner's work, but most of it is the model.

Prints the time per record of each step of 1 and 2 (goal: 1 <= 5 ms per record, one thread), the tiny model's
time per request beside it, and the mean JSON body of one OpenAI chat request at 336 px vs the originals.
Exit 0 (the goal is printed as met / not met); timings depend on the machine, so this is no test.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_phase2.py                  # 500 pairs, model on 40
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_phase2.py --pairs 100 --model-pairs 16
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from builders.generate import run_task  # noqa: E402
from builders.llm import content  # noqa: E402
from builders.llm.base import Closing, Request, Result, Sampling, make_backend  # noqa: E402
from builders.llm.tiny import build_tiny_llava  # noqa: E402
from builders.phase2.sources import Phase2Item, read_pairs_jsonl  # noqa: E402
from builders.phase2.task import Phase2Settings, Phase2Task, run_phase2  # noqa: E402

GOAL_MS = 5.0
MAX_SIDE = 336  # LLaVA-1.5's CLIP ViT-L/14-336 input
COCO_MEAN_KB = 155  # COCO train2017: 118,287 JPEGs in ~18 GB
WORDS = [
    "man",
    "woman",
    "dog",
    "cat",
    "tree",
    "car",
    "road",
    "table",
    "chair",
    "window",
    "plant",
    "lamp",
    "building",
    "grass",
    "sky",
    "fence",
    "child",
    "bicycle",
    "bag",
    "cap",
    "wall",
    "door",
    "shop",
    "street",
    "bench",
    "horse",
    "cow",
    "bird",
    "ball",
    "kite",
    "boat",
    "water",
    "pizza",
    "plate",
    "cup",
    "umbrella",
    "train",
    "bus",
    "clock",
]
SUMMARY = """Commonalities:
Both images show an everyday outdoor scene on a bright day, with a few people, a road or a path, trees in the
background and some parked vehicles near the edge of the picture; the light is natural in both.

Differences:
1. Object types: Image 1 shows a dog next to a bicycle, while Image 2 shows a horse beside a small cart.
2. Object attributes: The dog in Image 1 is brown and large, whereas the horse in Image 2 is white with spots.
3. Counting the objects: Image 1 has two people and one dog; Image 2 has three people and one horse.
4. Object actions: In Image 1 the dog is sitting still; in Image 2 the horse is walking towards the trees.
5. Object locations: Image 1 is set on a city street, while Image 2 is in a park with a pond.
6. Relative positions between objects: In Image 1 the bicycle is behind the dog; in Image 2 the cart is in
front of the horse.
Food: Image 1 shows no food at all, while Image 2 has a picnic basket on the grass."""


# ----- data -----


def write_pairs(folder: Path, count: int, kind: str, seed: int) -> Path:
    """``count`` pairs of fresh JPEGs (every image used once) and their pairs JSONL; returns the JSONL."""
    import numpy as np
    from PIL import Image

    generator = np.random.default_rng(seed)
    words = random.Random(seed)
    images = folder / "images"
    images.mkdir(parents=True)
    lines = []
    for pair in range(count):
        names = []
        for side in range(2):
            height, width = (480, 640) if (pair + side) % 2 == 0 else (640, 480)
            name = f"{pair:06d}_{side + 1}.jpg"
            Image.fromarray(pixels(generator, height, width, kind)).save(images / name, quality=90)
            names.append(name)
        lines.append(json.dumps({"id": f"pair{pair:06d}", "images": names, "annotation": annotation(words)}))
    path = folder / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def pixels(generator: Any, height: int, width: int, kind: str) -> Any:
    import numpy as np
    from PIL import Image

    if kind == "noise":
        return generator.integers(0, 256, (height, width, 3), dtype=np.uint8)
    layers = []  # coarse shapes, mid texture, fine grain: ~130 KB at quality 90, about a COCO photo
    for step, filter_ in ((16, Image.Resampling.BICUBIC), (4, Image.Resampling.BILINEAR)):
        small = generator.integers(0, 256, (height // step + 1, width // step + 1, 3), dtype=np.uint8)
        layers.append(np.asarray(Image.fromarray(small).resize((width, height), filter_), dtype=np.int16))
    grain = generator.integers(-15, 16, (height, width, 3), dtype=np.int16)
    return ((13 * layers[0] + 7 * layers[1]) // 20 + grain).clip(0, 255).astype(np.uint8)


def annotation(words: random.Random) -> str:
    """A CGD-like difference-only answer about a pair (the CGD answers of one pair are ~40-120 words)."""
    sentences = []
    while sum(len(s.split()) for s in sentences) < 80:
        a, b, c = words.sample(WORDS, 3)
        sentences.append(
            f"The first image shows a {a} near the {b}, while in the second image there is a {c} instead, "
            f"and the {b} is on the {words.choice(['left', 'right'])} side."
        )
    return " ".join(sentences)


# ----- the stand-in backend and the timed task -----


class OpenAIStandIn(Closing):
    """The OpenAI backend's per-request work (images to data URIs, the JSON body) with an instant fixed answer."""

    name = "openai-stand-in"

    def __init__(self, model: str, max_side: int | None) -> None:
        self.model = model
        self.max_side = max_side
        self.seconds = {"images": 0.0, "body": 0.0}
        self.body_bytes: list[int] = []

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model, "max_image_side": self.max_side}

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        for request in requests:
            started = time.perf_counter()
            messages = content.openai_messages(request.messages, self.max_side)
            encoded = time.perf_counter()
            body = json.dumps(request_body(self.model, messages, request.sampling)).encode()
            self.seconds["images"] += encoded - started
            self.seconds["body"] += time.perf_counter() - encoded
            self.body_bytes.append(len(body))
            yield Result(request.key, SUMMARY, prompt_tokens=0, completion_tokens=0, finish_reason="stop")


def request_body(model: str, messages: list[dict], sampling: Sampling) -> dict[str, Any]:
    """The chat completion request the OpenAI backend sends (``OpenAIBackend._create_kwargs``'s fields)."""
    body: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": sampling.max_tokens}
    body |= {"temperature": sampling.temperature, "top_p": sampling.top_p}
    return body if sampling.seed is None else {**body, "seed": sampling.seed}


class TimedPhase2Task(Phase2Task):
    """:class:`Phase2Task` with its per-item calls timed (``perf_counter`` around each: ~0.1 us)."""

    def __init__(self) -> None:
        super().__init__(Phase2Settings())
        self.seconds = {"key": 0.0, "render": 0.0, "parse": 0.0}

    def key(self, item: Phase2Item, model: str) -> str:
        started = time.perf_counter()
        try:
            return super().key(item, model)
        finally:
            self.seconds["key"] += time.perf_counter() - started

    def format_input(self, item: Phase2Item) -> tuple[dict[str, Any], ...]:
        started = time.perf_counter()
        try:
            return super().format_input(item)
        finally:
            self.seconds["render"] += time.perf_counter() - started

    def format_output(self, item: Phase2Item, result: Result) -> Any:
        started = time.perf_counter()
        try:
            return super().format_output(item, result)
        finally:
            self.seconds["parse"] += time.perf_counter() - started


# ----- the passes -----


def framework_pass(items: list[Phase2Item], max_side: int | None, folder: Path) -> dict[str, Any]:
    """One run of every item through the runner with the stand-in; seconds per step and body sizes."""
    content._file_sha256.cache_clear()  # each pass hashes the JPEGs itself, as a fresh process does
    task = TimedPhase2Task()
    backend = OpenAIStandIn("cad-llava-v1", max_side)
    started = time.perf_counter()
    summary = run_task(task, items, backend, folder, progress=False)
    total = time.perf_counter() - started
    if summary.valid != len(items) or summary.attempted != len(items):
        raise SystemExit(f"the stand-in pass did not accept every pair at once: {summary.line()}")
    steps = {**task.seconds, **backend.seconds}
    steps["runner + write"] = total - sum(steps.values())
    return {"steps": steps, "total": total, "body": sum(backend.body_bytes) / len(backend.body_bytes)}


def image_steps(items: list[Phase2Item], max_side: int) -> dict[str, float]:
    """Seconds per record of each step of ``data_uri(path, max_side)``, timed one by one (a diagnostic)."""
    import base64
    import io

    from PIL import Image

    seconds = dict.fromkeys(("read file", "decode", "LANCZOS resize", "JPEG q95 encode", "base64"), 0.0)
    for item in items:
        for path in item.images:
            t0 = time.perf_counter()
            data = Path(path).read_bytes()
            t1 = time.perf_counter()
            image = Image.open(io.BytesIO(data))
            image.load()
            t2 = time.perf_counter()
            scale = max_side / max(image.size)
            small = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
            t3 = time.perf_counter()
            buffer = io.BytesIO()
            small.save(buffer, format="JPEG", quality=95)
            t4 = time.perf_counter()
            base64.b64encode(buffer.getvalue()).decode("ascii")
            t5 = time.perf_counter()
            for step, (a, b) in zip(seconds, ((t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5)), strict=True):
                seconds[step] += b - a
    return {step: value / len(items) for step, value in seconds.items()}


def threaded_images(items: list[Phase2Item], max_side: int, threads: int) -> float:
    """Wall seconds per record of ``openai_messages`` over every item in a pool of ``threads`` threads (the OpenAI
    backend runs it with ``asyncio.to_thread``, one per request in flight)."""
    task = Phase2Task()
    messages = [task.format_input(item) for item in items]
    with ThreadPoolExecutor(threads) as pool:
        started = time.perf_counter()
        for _ in pool.map(lambda m: content.openai_messages(m, max_side), messages):
            pass
        return (time.perf_counter() - started) / len(items)


def model_pass(items: list[Phase2Item], folder: Path) -> dict[str, Any]:
    """The tiny LLaVA through the transformers backend and the runner: load, then one attempt per pair."""
    model = build_tiny_llava(folder / "tiny-llava")
    started = time.perf_counter()
    backend = make_backend("transformers", str(model))
    load = time.perf_counter() - started
    sampling = Sampling(max_tokens=64, temperature=0.2, top_p=1.0, seed=0)
    settings = Phase2Settings(sampling=sampling, max_attempts=1)
    with backend:
        run_phase2(items[:2], backend, folder / "run-warm-up", settings, progress=False)  # first calls: lazy init
        started = time.perf_counter()
        summary = run_phase2(items, backend, folder / "run-model", settings, progress=False)
        seconds = time.perf_counter() - started
    records = [json.loads(line) for path in (folder / "run-model").rglob("*.jsonl") for line in path.open()]
    finish = Counter(r["finish_reason"] for r in records if "finish_reason" in r)
    tokens = sum(r.get("completion_tokens", 0) for r in records)
    return {"load": load, "seconds": seconds, "requests": summary.attempted, "finish": finish, "tokens": tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=500, help="pairs through the two stand-in passes")
    parser.add_argument("--model-pairs", type=int, default=40, help="pairs through the tiny model (0: skip it)")
    parser.add_argument("--content", choices=("noise", "photo"), default="noise", help="what the JPEGs hold")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="cadvi-bench-phase2-") as temporary:
        work = Path(temporary)
        started = time.perf_counter()
        path = write_pairs(work, args.pairs, args.content, args.seed)
        made = time.perf_counter() - started
        jpeg_kb = sum(f.stat().st_size for f in (work / "images").iterdir()) / (2 * args.pairs) / 1e3
        started = time.perf_counter()
        items = read_pairs_jsonl(path, image_root=work / "images")
        read = time.perf_counter() - started
        resized = framework_pass(items, MAX_SIDE, work / "run-336")
        originals = framework_pass(items, None, work / "run-originals")
        resized["image steps"] = image_steps(items[:100], MAX_SIDE)
        resized["threads"] = len(os.sched_getaffinity(0))
        resized["threaded"] = threaded_images(items, MAX_SIDE, resized["threads"])
        model = model_pass(items[: args.model_pairs], work) if args.model_pairs > 0 else None
    report(args, made, jpeg_kb, read, resized, originals, model)


def report(
    args: argparse.Namespace,
    made: float,
    jpeg_kb: float,
    read: float,
    resized: dict[str, Any],
    originals: dict[str, Any],
    model: dict[str, Any] | None,
) -> None:
    n = args.pairs
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(
        f"{n:,} pairs of {args.content} JPEGs (640x480 / 480x640, q90, mean {jpeg_kb:.0f} KB; COCO's mean is "
        f"~{COCO_MEAN_KB} KB; written in {made:.1f} s), OMP_NUM_THREADS={threads}, load average "
        f"{args.load[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end (other work skews the timings)"
    )
    print("Everything but the model, ms per record (one request each, accepted at once):")
    labels = {
        "read": "read the pairs JSONL",
        "key": "request key (sha256 of both JPEGs)",
        "render": "render (template, parts)",
        "images": "images -> data URIs (decode, resize, JPEG q95, base64)",
        "body": "request body (json.dumps)",
        "parse": "parse + validate the summary",
        "runner + write": "runner + record write (the rest)",
    }
    print(f"  {'step':<56}{'336 px':>10}{'originals':>12}")
    rows = {"read": (read, read)} | {s: (resized["steps"][s], originals["steps"][s]) for s in resized["steps"]}
    for step, label in labels.items():
        a, b = rows[step]
        print(f"  {label:<56}{a / n * 1e3:10.3f}{b / n * 1e3:12.3f}")
        if step == "images":
            for name, seconds in resized["image steps"].items():
                print(f"    {'of which ' + name:<54}{seconds * 1e3:10.3f}")
    ms = (read + resized["total"]) / n * 1e3
    base = (read + originals["total"]) / n * 1e3
    print(f"  {'total':<56}{ms:10.3f}{base:12.3f}   ({ms / base:.1f}x the originals)")
    verdict = "met" if ms <= GOAL_MS else "not met"
    print(f"  goal: <= {GOAL_MS:g} ms per record at {MAX_SIDE} px: {ms:.2f} ms, {verdict}")
    print(
        f"  ('of which': the same steps timed one by one on {min(n, 100)} pairs; images -> data URIs in a pool of "
        f"{resized['threads']} threads, as the OpenAI backend runs them: {resized['threaded'] * 1e3:.3f} ms per "
        "record, wall)"
    )
    if model is not None:
        per = model["seconds"] / model["requests"] * 1e3
        finish = ", ".join(f"{count} {reason}" for reason, count in model["finish"].most_common())
        print(
            f"Tiny LLaVA (32 px, transformers, max_tokens 64, temperature 0.2), {model['requests']} pairs, one "
            f"attempt each: {per:.1f} ms per request ({model['tokens'] / model['seconds']:.0f} new tokens/s; "
            f"finish: {finish}; model load {model['load']:.1f} s, not counted)"
        )
        print(
            f"  everything but the model at {MAX_SIDE} px ({ms:.1f} ms) is {ms / per:.2f}x the tiny model's whole time"
        )
    body, full = resized["body"], originals["body"]
    print(
        f"OpenAI chat request body, mean: {body / 1e3:.1f} KB at {MAX_SIDE} px vs {full / 1e3:.1f} KB with the "
        f"original JPEGs: {full / body:.2f}x smaller ({body / full:.0%} of the bytes)"
    )


if __name__ == "__main__":
    main()
