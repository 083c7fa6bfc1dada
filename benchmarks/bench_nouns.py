"""Benchmark: the nouns of Localized-Narratives-style captions, full spaCy pipeline vs. the fast path.

What: ~20,000 synthetic captions in the style of Localized Narratives (the 873K captions that
phase-1 pairing reads: ~36 words, "In this image I can see ...", plural and irregular nouns, proper
names, colours, verbs; seeded) are reduced to their noun lemmas twice, in one run:

a. the default full pipeline (``nlp.pipe(captions)``: every component, the model's own batch size,
   256 for en_core_web_sm, one process) on a subset (default 3,000 captions: it is the slow one),
   model already loaded;
b. ``builders.nouns.extract_nouns(processes=2)`` on all captions, timed end to end: loading the
   model and starting the workers are included (importing spaCy is not: a has done it).

Why: the pairing stage needs the nouns of 873K captions; the fast path exists to make that a matter
of minutes. The goals checked are: b at least 7x faster than a (captions/s), and identical noun
lists on the common subset. The exit status is 1 when a goal fails.

Run ``python benchmarks/bench_nouns.py --help`` for the options; see ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from builders import nouns  # noqa: E402

SPEEDUP_GOAL = 7.0
LN_CAPTIONS = 873_000  # Localized Narratives image-caption pairs (paper §3.1)

# ---------------------------------------------------------------------------------------------
# Synthetic Localized Narratives captions
# ---------------------------------------------------------------------------------------------

# (singular, plural): regular, -es/-ies/-ves and irregular plurals, as spoken descriptions use them.
ANIMATE = [
    ("man", "men"),
    ("woman", "women"),
    ("person", "people"),
    ("child", "children"),
    ("boy", "boys"),
    ("girl", "girls"),
    ("kid", "kids"),
    ("player", "players"),
    ("dog", "dogs"),
    ("cat", "cats"),
    ("horse", "horses"),
    ("bird", "birds"),
    ("sheep", "sheep"),
    ("goose", "geese"),
    ("mouse", "mice"),
    ("cow", "cows"),
    ("duck", "ducks"),
    ("wolf", "wolves"),
    ("lady", "ladies"),
    ("puppy", "puppies"),
]
THINGS = [
    ("car", "cars"),
    ("bus", "buses"),
    ("truck", "trucks"),
    ("bicycle", "bicycles"),
    ("vehicle", "vehicles"),
    ("boat", "boats"),
    ("tree", "trees"),
    ("plant", "plants"),
    ("flower", "flowers"),
    ("leaf", "leaves"),
    ("bush", "bushes"),
    ("rock", "rocks"),
    ("building", "buildings"),
    ("house", "houses"),
    ("window", "windows"),
    ("door", "doors"),
    ("pole", "poles"),
    ("light", "lights"),
    ("board", "boards"),
    ("fence", "fences"),
    ("bench", "benches"),
    ("chair", "chairs"),
    ("table", "tables"),
    ("box", "boxes"),
    ("bottle", "bottles"),
    ("glass", "glasses"),
    ("cup", "cups"),
    ("plate", "plates"),
    ("bowl", "bowls"),
    ("knife", "knives"),
    ("fork", "forks"),
    ("spoon", "spoons"),
    ("shelf", "shelves"),
    ("book", "books"),
    ("bag", "bags"),
    ("shoe", "shoes"),
    ("umbrella", "umbrellas"),
    ("toy", "toys"),
    ("frame", "frames"),
    ("mountain", "mountains"),
    ("hill", "hills"),
    ("wire", "wires"),
    ("tomato", "tomatoes"),
    ("potato", "potatoes"),
    ("strawberry", "strawberries"),
    ("dress", "dresses"),
    ("kite", "kites"),
    ("banner", "banners"),
    ("laptop", "laptops"),
    ("camera", "cameras"),
    ("wheel", "wheels"),
    ("candle", "candles"),
    ("pillow", "pillows"),
    ("lamp", "lamps"),
    ("tent", "tents"),
    ("statue", "statues"),
]
MASS_NOUNS = ["grass", "water", "sand", "snow", "food", "rice", "smoke", "furniture", "glass", "mud", "dust"]
PLURALIA = ["clothes", "trousers", "jeans", "spectacles", "scissors", "stairs"]
PLACES = [
    "road",
    "grass",
    "floor",
    "ground",
    "footpath",
    "platform",
    "stage",
    "beach",
    "field",
    "sand",
    "bed",
    "sofa",
    "track",
    "snow",
    "carpet",
    "street",
    "bridge",
    "table",
    "rocks",
    "stairs",
]
ACTIONS = [
    "standing",
    "sitting",
    "walking",
    "holding a bag",
    "smiling",
    "running",
    "riding a bicycle",
    "playing with a ball",
    "eating food",
    "wearing a cap",
    "carrying boxes",
    "lying",
    "talking",
    "looking at something",
    "holding a phone",
    "jumping",
    "reading a book",
    "waving hands",
]
STATES = ["placed", "kept", "parked", "hanging", "lying", "visible", "arranged"]
COLOURS = ["red", "blue", "white", "black", "green", "yellow", "brown", "orange", "pink", "grey", "purple", "cream"]
NAMES = ["John", "Mary", "David", "Sarah", "Michael", "Emma", "James", "Olivia", "Robert", "Sophia"]
BRANDS = ["Coca-Cola", "Nike", "Starbucks", "Toyota", "Adidas", "Pepsi", "Samsung", "McDonald's"]
CITIES = ["Paris", "London", "New York", "Tokyo", "Rome", "Berlin", "Sydney", "Dubai"]
COUNTS = ["two", "three", "four", "few", "some", "many", "a group of", "a few", "five"]
OPENERS = ["In this image I can see", "In this picture I can see", "In this image we can see", "Here I can see"]


def _a(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def _phrase(rng: random.Random, nouns: list[tuple[str, str]], names: bool) -> str:
    """A noun phrase: "a man", "two black dogs", "some clothes", "John"."""
    roll = rng.random()
    singular, plural = rng.choice(nouns)
    colour = f"{rng.choice(COLOURS)} " if rng.random() < 0.35 else ""
    if roll < 0.4:
        return _a(colour + singular)
    if roll < 0.85:
        return f"{rng.choice(COUNTS)} {colour}{plural}"
    if names:
        return rng.choice(NAMES)
    return f"some {rng.choice(PLURALIA)}"


def _noun_list(rng: random.Random) -> str:
    items = [rng.choice(THINGS + ANIMATE)[1] for _ in range(rng.randint(2, 4))]
    if rng.random() < 0.3:
        items.append(rng.choice(MASS_NOUNS))
    return ", ".join(items[:-1]) + " and " + items[-1]


def _sentence(rng: random.Random) -> str:
    kind = rng.randrange(9)
    if kind == 0:
        return f"In the background there are {_noun_list(rng)}."
    if kind == 1:
        side = rng.choice(["left", "right"])
        return f"On the {side} side of the image I can see {_phrase(rng, THINGS, False)} on the {rng.choice(PLACES)}."
    if kind == 2:
        return f"At the top of the image I can see the sky with clouds{rng.choice(['', ' and the sun'])}."
    if kind == 3:
        board = _a(f"{rng.choice(COLOURS)} board")
        return f"Behind them there is {board} with the text '{rng.choice(BRANDS)}' written on it."
    if kind == 4:
        return f"{rng.choice(NAMES)} is {rng.choice(ACTIONS)} near the {rng.choice(THINGS)[0]}."
    if kind == 5:
        return f"I think this picture is taken in {rng.choice(CITIES)}."
    if kind == 6:
        return f"There is {_phrase(rng, ANIMATE, False)} {rng.choice(ACTIONS)} on the {rng.choice(PLACES)}."
    if kind == 7:
        thing = rng.choice(THINGS)[0]
        return (
            f"The {thing} is {rng.choice(COLOURS)} in color and it is {rng.choice(STATES)} on the {rng.choice(PLACES)}."
        )
    return f"At the bottom of the image there is {rng.choice(MASS_NOUNS)} and {_noun_list(rng)}."


def synthetic_caption(rng: random.Random) -> str:
    """One caption of ~36 words: an opening sentence, then sentences until 22-38 words."""
    target = rng.randint(22, 38)
    subject = _phrase(rng, ANIMATE, True)
    sentences = [f"{rng.choice(OPENERS)} {subject} {rng.choice(ACTIONS)} on the {rng.choice(PLACES)}."]
    while sum(len(s.split()) for s in sentences) < target:
        sentences.append(_sentence(rng))
    return " ".join(sentences)


def synthetic_captions(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [synthetic_caption(rng) for _ in range(count)]


# ---------------------------------------------------------------------------------------------
# Run
# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--captions", type=int, default=20_000, help="captions for the fast path (default 20,000)")
    parser.add_argument("--subset", type=int, default=3_000, help="captions for the full pipeline (default 3,000)")
    parser.add_argument("--processes", type=int, default=2, help="worker processes of the fast path (default 2)")
    parser.add_argument("--batch-size", type=int, default=nouns.DEFAULT_BATCH_SIZE, help="captions per chunk")
    parser.add_argument("--model", default=nouns.DEFAULT_MODEL, help=f"spaCy model (default {nouns.DEFAULT_MODEL})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic captions")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = os.getloadavg()[0]
    captions = synthetic_captions(args.captions, args.seed)
    subset = captions[: min(args.subset, len(captions))]
    words = sum(len(caption.split()) for caption in captions) / len(captions)
    print(f"{len(captions):,} synthetic captions, {words:.1f} words on average (seed {args.seed}); e.g.")
    print(f"  {captions[0]}")

    nlp = nouns.load_model(args.model)
    start = time.perf_counter()
    reference = [sorted(nouns.doc_nouns(doc)) for doc in nlp.pipe(subset)]
    full_seconds = time.perf_counter() - start
    full_rate = len(subset) / full_seconds
    print(f"\na. default full pipeline {nlp.pipe_names}: nlp.pipe(captions), batch_size={nlp.batch_size}, 1 process:")
    print(f"   {len(subset):,} captions in {full_seconds:.1f} s = {full_rate:,.0f} captions/s")

    start = time.perf_counter()
    fast = nouns.extract_nouns(captions, model=args.model, processes=args.processes, batch_size=args.batch_size)
    fast_seconds = time.perf_counter() - start
    fast_rate = len(captions) / fast_seconds
    print(f"b. extract_nouns(processes={args.processes}, batch_size={args.batch_size}), end to end (model loading and")
    print(
        f"   worker start included): {len(captions):,} captions in {fast_seconds:.1f} s = {fast_rate:,.0f} captions/s"
    )

    mismatches = [index for index, (ref, got) in enumerate(zip(reference, fast, strict=False)) if ref != got]
    speedup = fast_rate / full_rate
    print(f"\nspeed-up b/a: {speedup:.1f}x (goal >= {SPEEDUP_GOAL:g}x)")
    print(
        f"projected time for {LN_CAPTIONS:,} captions: full pipeline {LN_CAPTIONS / full_rate / 60:.0f} min, "
        f"extract_nouns {LN_CAPTIONS / fast_rate / 60:.1f} min"
    )
    same = len(subset) - len(mismatches)
    print(f"identical noun lists on the {len(subset):,} common captions: {same:,} / {len(subset):,}")
    for index in mismatches[:5]:
        print(f"  MISMATCH {subset[index]!r}\n    full: {reference[index]}\n    fast: {fast[index]}")
    print(f"load average (1 min) before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    goals = {"speed-up": speedup >= SPEEDUP_GOAL, "identical nouns": not mismatches}
    for goal, met in goals.items():
        print(f"{'PASS' if met else 'FAIL'}: {goal}")
    return 0 if all(goals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
