"""Benchmark: the per-record overhead of phase-1 generation around the LLM (render + parse + write).

What: for 278,000 synthetic pairs (LN-style captions, ~157-word summaries in the release's shape)
it times, per record, (1) rendering ``phase1.jinja`` in the sandboxed environment, (2) checking and
parsing the summary into the six axes, (3) appending the record to a :class:`builders.runs.RunStore`
(one flushed JSON line each), and, as the baseline of the same run, (0) ``json.dumps`` + write of
the same record to a plain file with no flush. The model's own time is not part of it.

Why: at 278K records the pipeline's bookkeeping must stay negligible next to the LLM. Goal:
render + parse + write <= 0.5 ms per record. Exit 1 when the goal fails.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from builders.runs import RunStore, request_key
from builders.summary import check_summary, structured
from prompts import load_template

GOAL_MS = 0.5
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
]
SUMMARY = """Commonalities:
Both images show {a} and {b} outdoors on a sunny day, with {c} in the background and a few {d} near the edge of the
scene; the light is natural and the colours are bright in both pictures.

Differences:
1. Object types: Image 1 shows a {a} next to a {c}, while Image 2 shows a {b} beside a {d} and a small {e}.
2. Object attributes: The {a} in Image 1 is brown and large, whereas the {b} in Image 2 is white with dark spots.
3. Counting the objects: Image 1 has two {c}s and one {a}; Image 2 has three {d}s, one {b} and a {e}.
4. Object actions: In Image 1 the {a} is standing still; in Image 2 the {b} is running towards the {d}.
5. Object locations: Image 1 is set on a road near a {c}, while Image 2 is in a park with a {e}.
6. Relative positions between objects: In Image 1 the {c} is behind the {a}; in Image 2 the {e} is in front of
the {b}."""


def caption(rng: random.Random) -> str:
    picks = rng.sample(WORDS, 6)
    return (
        f"In this image I can see a {picks[0]} and a {picks[1]} near the {picks[2]}. In the background there "
        f"are {picks[3]}s, a {picks[4]} and the {picks[5]}, and on the right side I can see a few more objects."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=278_000)
    args = parser.parse_args()
    rng = random.Random(0)
    items = []
    for i in range(args.records):
        picks = rng.sample(WORDS, 5)
        items.append((f"pair{i}", caption(rng), caption(rng), SUMMARY.format(**dict(zip("abcde", picks, strict=True)))))
    template = load_template("phase1.jinja")
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        with open(Path(folder) / "baseline.jsonl", "w", encoding="utf-8") as handle:
            for pair_id, first, second, text in items:
                handle.write(json.dumps({"key": pair_id, "captions": [first, second], "text": text}) + "\n")
        baseline = time.perf_counter() - started

        timings = {"render": 0.0, "parse": 0.0, "write": 0.0}
        rejected = 0
        with RunStore(Path(folder) / "run", {"stage": "bench"}) as store:
            for pair_id, first, second, text in items:
                t0 = time.perf_counter()
                prompt = template.render(caption_1=first, caption_2=second)
                t1 = time.perf_counter()
                summary, _reason = check_summary(text)
                record = {
                    "key": request_key("phase1", template.sha256, pair_id),
                    "pair_id": pair_id,
                    "captions": [first, second],
                    "prompt_chars": len(prompt),
                    "text": text,
                }
                if summary is not None:
                    record["summary"] = structured(summary)
                else:
                    rejected += 1
                t2 = time.perf_counter()
                store.add(record)
                t3 = time.perf_counter()
                timings["render"] += t1 - t0
                timings["parse"] += t2 - t1
                timings["write"] += t3 - t2
    n = args.records
    total = sum(timings.values())
    print(f"{n:,} records ({rejected} rejected by the checks; 0 expected)")
    print(f"{'baseline: json.dumps + write, no flush':<44}{baseline / n * 1e3:8.4f} ms/record")
    for name, seconds in timings.items():
        print(f"{name:<44}{seconds / n * 1e3:8.4f} ms/record")
    per_record = total / n * 1e3
    print(
        f"{'render + parse + write':<44}{per_record:8.4f} ms/record  ({total / baseline:.1f}x the baseline; "
        f"{total:.1f} s for all)"
    )
    ok = per_record <= GOAL_MS and rejected == 0
    print(f"{'PASS' if ok else 'FAIL'}  render + parse + write <= {GOAL_MS} ms per record: {per_record:.3f} ms")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
