"""Calibrating the CaD-QA judge: fixed probes with known right answers, judged by the same :func:`judge` runner.

A judge's mean rating means something only if the judge behaves as a judge should. Five probes are made
from the reference answers themselves, so what a good judge must answer is known without any model:

========================  ==================================================  ===========================
probe                     the "predicted answer"                              a good judge
========================  ==================================================  ===========================
``self``                  the reference answer itself                         rates it near 5
``empty``                 the empty string                                    rates it near 0
``other_question``        the reference answer of another question (seeded    rates it near 0
                          derangement of the sample: never its own answer,
                          never the same text)
``swapped_images``        the reference with "Image 1" <-> "Image 2" and      rates it lower than ``self``
                          "first image" <-> "second image" swapped (only      (the drop, with its CI)
                          references that name an image: others are skipped)
``padded``                the reference followed by :data:`FILLER`, a fixed   rates it as ``self``: a
                          paragraph of ours that says nothing about the       difference is verbosity bias
                          images                                              (with its CI)
========================  ==================================================  ===========================

Every probe item is one :class:`JudgeItem` (id ``"<probe>:<question_id>"``) and all of them go through one
:func:`judge` call per judge, into a run folder per judge under ``<out>/runs`` (the folder
:func:`identity_folder` names): a rerun resumes it, a judge-server outage raises with the judgements kept,
an unreadable rating is asked again and then counted *invalid* (excluded, never scored 0), exactly as in
``cadvi judge``.

Figures (``calibration.json``; every interval a 95% percentile bootstrap, 1,000 resamples, seed 0):

* per probe: :class:`RatingSummary` (``n``, ``invalid``, mean rating with its CI, histogram 0-5): the
  judge's own summary, whose CI is the project's shared scorer (:func:`builders.confidence.mean_with_ci`,
  which ``eval_tasks.scoring`` re-exports);
* ``swapped_images - self`` and ``padded - self``: the mean of the paired per-question differences
  ``d_i = r_probe(i) - r_self(i)`` over the questions whose two ratings are both valid, its CI again from
  :func:`mean_with_ci` of the ``d_i`` (a paired bootstrap);
* with a second judge, its probe summaries too, and the agreement of the two judges over every probe item
  both rated validly (all probes pooled: within one probe the ratings hardly vary, and agreement on a
  constant is undefined):

  - quadratic-weighted Cohen's kappa over the categories ``0..5`` (:func:`weighted_kappa`):
    ``kappa = 1 - sum_ij w_ij O_ij / sum_ij w_ij E_ij`` with ``w_ij = (i - j)^2 / 5^2``, ``O`` the observed
    joint proportions and ``E_ij = p_i. * p_.j`` the product of the two judges' marginals. Equivalently
    ``kappa = 1 - n * sum_k (a_k - b_k)^2 / sum_k sum_l (a_k - b_l)^2``. 1: perfect agreement, 0: chance;
    undefined (None) when the expected disagreement is 0 (both judges constant at one rating);
  - Spearman's rho (:func:`scipy.stats.spearmanr`: Pearson correlation of the average ranks, ties
    averaged); undefined (None) when either judge is constant;
  - each with a percentile-bootstrap CI over the *pairs* (:func:`statistic_ci`: the same resamples, seed and
    interpolated percentile as :mod:`builders.confidence`, which bootstraps only means; resamples whose
    statistic is undefined are left out and counted).

Expectations (``meets_expectation``; ``tolerance`` defaults to 1 rating point): ``self`` mean >= 5 - tolerance;
``empty`` and ``other_question`` mean <= tolerance; ``swapped_images`` drop CI entirely below 0; ``padded``
difference CI containing 0 (no detectable verbosity bias; above 0 the judge rewards padding, below 0 it
penalises it).

Outputs in ``out_dir``: ``calibration.json``, ``histograms.png`` (one panel per probe, both judges side by
side), ``calibration.md`` (a short report) and ``judgements.jsonl`` (every probe item with its rating(s)).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builders.confidence import CONFIDENCE, RESAMPLES, _quantile, mean_with_ci
from builders.judge.rating import JUDGE_SAMPLING, JUDGE_TEMPLATE, RATINGS
from builders.judge.summary import JudgeReport, RatingSummary
from builders.judge.task import JudgeItem, JudgeTask, identity_folder, judge
from builders.llm.base import Backend, Sampling

PROBES: tuple[str, ...] = ("self", "empty", "other_question", "swapped_images", "padded")
# Appended to the reference by the ``padded`` probe: ours, fixed, true of any answer and about no image.
FILLER = (
    "To give a complete answer, both images were considered carefully and as a whole, and the comparison above "
    "covers what matters for the question. Looking at two images side by side is a helpful way to notice what "
    "they share and where they differ, and every point made here was weighed against the rest of the scene "
    "before it was included."
)
EXPECTATIONS: dict[str, str] = {
    "self": "near 5",
    "empty": "near 0",
    "other_question": "near 0",
    "swapped_images": "lower than self",
    "padded": "same as self (no verbosity bias)",
}
DEFAULT_SAMPLE = 500
DEFAULT_TOLERANCE = 1.0
COMPARED = ("swapped_images", "padded")  # the probes reported as a paired difference to ``self``
FILES = {
    "json": "calibration.json",
    "histograms": "histograms.png",
    "markdown": "calibration.md",
    "judgements": "judgements.jsonl",
}
_PAIR_PREFIX = "Image 1: <image>\nImage 2: <image>\n"
# "Image 1" / "image 2" / "Image  1", and "first image" / "Second image": swapped in one pass.
_IMAGE_NAMES = re.compile(
    r"\b(?P<word>image)(?P<space>\s*)(?P<number>[12])\b|\b(?P<ordinal>first|second)(?=\s+image\b)", re.I
)
_ORDINALS = {"first": "second", "second": "first"}

Progress = Callable[[str, int, int], None]  # (judge label, items settled, items in all)


@dataclass(frozen=True)
class Reference:
    """One CaD-QA question: its id, the question without the image placeholders, the reference answer."""

    question_id: str
    question: str
    answer: str


@dataclass(frozen=True)
class Calibration:
    """What :func:`calibrate` found (``results`` is ``calibration.json``) and the files it wrote."""

    results: dict[str, Any]
    paths: dict[str, Path]
    reports: dict[str, JudgeReport] = field(default_factory=dict)  # "judge", "second_judge"


# --- probes -----------------------------------------------------------------------------------------------


def swap_images(text: str) -> str:
    """``text`` with "Image 1" <-> "Image 2" and "first image" <-> "second image" swapped, case kept."""

    def swapped(match: re.Match[str]) -> str:
        if match["ordinal"]:
            word = _ORDINALS[match["ordinal"].lower()]
            return word.capitalize() if match["ordinal"][0].isupper() else word
        return f"{match['word']}{match['space']}{'2' if match['number'] == '1' else '1'}"

    return _IMAGE_NAMES.sub(swapped, text)


def other_answers(answers: Sequence[str], rng: random.Random, *, max_tries: int = 1000) -> list[int]:
    """For each answer, the index of another one whose text differs: a derangement drawn with ``rng``.

    A uniform permutation, drawn again until no answer keeps its own text (about e tries for a sample with
    distinct answers). Raises ValueError for fewer than two answers or when no such pairing turns up.
    """
    n = len(answers)
    if n < 2:
        raise ValueError(f"the other_question probe needs at least 2 references, got {n}")
    order = list(range(n))
    for _ in range(max_tries):
        rng.shuffle(order)
        if all(answers[order[i]] != answers[i] for i in range(n)):
            return list(order)
    raise ValueError(f"could not pair each of {n} questions with a different answer in {max_tries} tries")


def probe_items(references: Sequence[Reference], *, seed: int = 0) -> dict[str, list[JudgeItem]]:
    """The judge items of every probe (in :data:`PROBES` order), deterministic for ``references`` and ``seed``.

    ``swapped_images`` holds only the references that name an image (the swap changes them).
    """
    pairing = other_answers([r.answer for r in references], random.Random(f"other_question:{seed}"))

    def item(probe: str, reference: Reference, prediction: str) -> JudgeItem:
        return JudgeItem(f"{probe}:{reference.question_id}", reference.question, reference.answer, prediction)

    probes: dict[str, list[JudgeItem]] = {probe: [] for probe in PROBES}
    for index, reference in enumerate(references):
        probes["self"].append(item("self", reference, reference.answer))
        probes["empty"].append(item("empty", reference, ""))
        probes["other_question"].append(item("other_question", reference, references[pairing[index]].answer))
        swapped = swap_images(reference.answer)
        if swapped != reference.answer:
            probes["swapped_images"].append(item("swapped_images", reference, swapped))
        probes["padded"].append(item("padded", reference, f"{reference.answer.rstrip()}\n\n{FILLER}"))
    return probes


def load_references(references: Iterable[Mapping[str, Any]]) -> list[Reference]:
    """CaD-QA questions from rows: what :func:`cadqa.load` gives, or the official file's JSON lines.

    A row needs ``question_id`` and ``answer``, and ``question`` or the original ``text`` (whose
    ``Image 1: <image>\\nImage 2: <image>\\n`` prefix is removed). (``builders`` never imports ``cadqa``:
    the command loads the release and passes its rows.)
    """
    if isinstance(references, str | os.PathLike):
        raise TypeError("calibrate takes the reference rows: load a release with cadqa.load(path) first")
    rows = []
    for row in references:
        question = row.get("question")
        if question is None:
            text = str(row["text"])
            question = text[len(_PAIR_PREFIX) :] if text.startswith(_PAIR_PREFIX) else text
        rows.append(Reference(str(row["question_id"]), str(question), str(row["answer"])))
    ids = [row.question_id for row in rows]
    if len(set(ids)) != len(ids):
        raise ValueError("the references repeat a question_id")
    if not rows:
        raise ValueError("no references to calibrate on")
    return rows


def sample_references(references: Sequence[Reference], sample: int | None, seed: int = 0) -> list[Reference]:
    """``sample`` references drawn with a seeded RNG, in their original order (all of them for None or more)."""
    if sample is not None and sample < 1:
        raise ValueError(f"sample must be >= 1 (or None for all), got {sample}")
    if sample is None or sample >= len(references):
        return list(references)
    chosen = sorted(random.Random(f"sample:{seed}").sample(range(len(references)), sample))
    return [references[i] for i in chosen]


# --- agreement --------------------------------------------------------------------------------------------


def weighted_kappa(a: Sequence[int], b: Sequence[int], categories: Sequence[int] = RATINGS) -> float | None:
    """Quadratic-weighted Cohen's kappa of two raters over ``categories`` (see the module doc); None if undefined."""
    if len(a) != len(b):
        raise ValueError(f"two raters need the same items: {len(a)} and {len(b)} ratings")
    if not a:
        return None
    index = {category: i for i, category in enumerate(categories)}
    k, n = len(categories), len(a)
    observed = [[0] * k for _ in range(k)]
    for x, y in zip(a, b, strict=True):
        observed[index[x]][index[y]] += 1
    rows = [sum(observed[i]) for i in range(k)]
    cols = [sum(observed[i][j] for i in range(k)) for j in range(k)]
    weight = [[(i - j) ** 2 / (k - 1) ** 2 for j in range(k)] for i in range(k)]
    disagreement = sum(weight[i][j] * observed[i][j] for i in range(k) for j in range(k)) / n
    expected = sum(weight[i][j] * rows[i] * cols[j] for i in range(k) for j in range(k)) / (n * n)
    return None if expected == 0 else 1.0 - disagreement / expected


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rho (:func:`scipy.stats.spearmanr`); None when it is undefined (fewer than 2, a constant)."""
    if len(a) < 2 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    try:
        from scipy.stats import spearmanr
    except ImportError as error:
        raise ImportError("Spearman's rho needs scipy: pip install scipy") from error
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = float(spearmanr(a, b).statistic)
    return None if math.isnan(rho) else rho


def statistic_ci(
    pairs: Sequence[tuple[int, int]],
    statistics: Mapping[str, Callable[[Sequence[int], Sequence[int]], float | None]],
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Each statistic of the paired ratings with a percentile-bootstrap CI over the pairs.

    The pairs are resampled with replacement ``resamples`` times (``random.Random(seed)``), every statistic
    computed on the same resamples; the interval is the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2``
    quantiles (linear interpolation, as :func:`builders.confidence.bootstrap_ci`) of the resamples where the
    statistic is defined (``undefined_resamples`` counts the others).
    """
    a = [x for x, _ in pairs]
    b = [y for _, y in pairs]
    values = {name: function(a, b) for name, function in statistics.items()}
    draws: dict[str, list[float]] = {name: [] for name in statistics}
    rng = random.Random(seed)
    if pairs:
        for _ in range(resamples):
            chosen = rng.choices(range(len(pairs)), k=len(pairs))
            ra, rb = [a[i] for i in chosen], [b[i] for i in chosen]
            for name, function in statistics.items():
                value = function(ra, rb)
                if value is not None:
                    draws[name].append(value)
    alpha = (1 - confidence) / 2
    found = {}
    for name in statistics:
        ordered = sorted(draws[name])
        low = _quantile(ordered, alpha) if ordered and values[name] is not None else None
        high = _quantile(ordered, 1 - alpha) if ordered and values[name] is not None else None
        found[name] = {
            "value": values[name],
            "ci_low": low,
            "ci_high": high,
            "confidence": confidence,
            "undefined_resamples": (resamples - len(ordered)) if pairs else None,
        }
    return found


def agreement(
    first: Mapping[str, int | None], second: Mapping[str, int | None], *, confidence: float = CONFIDENCE
) -> dict[str, Any]:
    """Weighted kappa and Spearman's rho of two judges over the items both rated validly, with CIs."""
    common = [key for key in first if key in second]
    pairs = [(first[key], second[key]) for key in common if first[key] is not None and second[key] is not None]
    found = statistic_ci(pairs, {"weighted_kappa": weighted_kappa, "spearman": spearman}, confidence=confidence)  # type: ignore[arg-type]
    found["weighted_kappa"]["weights"] = "quadratic"
    return {"n": len(pairs), "excluded": len(common) - len(pairs), **found}


# --- the run ----------------------------------------------------------------------------------------------


def calibrate(
    references: Iterable[Mapping[str, Any]],
    backend: Backend,
    out_dir: str | os.PathLike,
    *,
    sample: int | None = DEFAULT_SAMPLE,
    seed: int = 0,
    second_backend: Backend | None = None,
    retries: int = 1,
    template: str = JUDGE_TEMPLATE,
    sampling: Sampling = JUDGE_SAMPLING,
    source: str | os.PathLike | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    confidence: float = CONFIDENCE,
    progress: Progress | None = None,
) -> Calibration:
    """Judge the probes of ``sample`` references (seeded) with ``backend`` (and ``second_backend``); write the report.

    ``references``: the CaD-QA rows (:func:`cadqa.load`'s dataset, or dicts: see :func:`load_references`);
    ``source``: where they came from (shown in the report; an ``out_dir`` that is or holds it is refused).
    Judgements go to ``<out_dir>/runs/<judge>`` as they are made (a rerun resumes them); a judge server
    that fails raises :class:`~builders.llm.base.BackendUnavailableError` and writes no report.
    ``progress(label, settled, total)`` is called for ``"judge"`` / ``"second judge"`` as items settle.
    """
    from builders.outputs import refuse_output_over_sources

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{str(out)!r} is a file; --out names a folder")
    refuse_output_over_sources(out, [source], what="calibration folder")
    everything = load_references(references)
    chosen = sample_references(everything, sample, seed)
    probes = probe_items(chosen, seed=seed)
    items = [item for probe in PROBES for item in probes[probe]]
    task = JudgeTask(template=template, sampling=sampling, retries=retries)

    judges = {"judge": backend, **({"second_judge": second_backend} if second_backend is not None else {})}
    reports: dict[str, JudgeReport] = {}
    for name, judge_backend in judges.items():
        label = name.replace("_", " ")
        run_dir = identity_folder(out / "runs", task, judge_backend.name, judge_backend.model)
        settled = [0]

        def advance(count: int, label: str = label, settled: list[int] = settled) -> None:
            settled[0] += count
            if progress is not None:
                progress(label, settled[0], len(items))

        reports[name] = judge(
            items,
            judge_backend,
            retries=retries,
            template=template,
            sampling=sampling,
            run_dir=run_dir,
            progress=advance,
            on_resume=advance,
            warn_invalid=False,
        )

    ratings = {name: {r.item.id: r.rating for r in report.records} for name, report in reports.items()}
    results: dict[str, Any] = {
        "references": None if source is None else str(source),
        "n_references": len(everything),
        "sample": len(chosen),
        "seed": seed,
        "probes": list(PROBES),
        "filler": FILLER,
        "tolerance": tolerance,
        "confidence": confidence,
        "skipped": {"swapped_images": len(chosen) - len(probes["swapped_images"])},  # references naming no image
    }
    for name, report in reports.items():
        results[name] = _judge_results(report, probes, ratings[name], tolerance=tolerance, confidence=confidence)
    results.setdefault("second_judge", None)
    results["agreement"] = (
        agreement(ratings["judge"], ratings["second_judge"], confidence=confidence)
        if "second_judge" in reports
        else None
    )

    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / file for name, file in FILES.items()}
    paths["json"].write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    write_histograms(results, paths["histograms"])
    paths["markdown"].write_text(markdown_report(results), encoding="utf-8")
    _write_judgements(reports, paths["judgements"])
    return Calibration(results, paths, reports)


def _judge_results(
    report: JudgeReport,
    probes: Mapping[str, Sequence[JudgeItem]],
    ratings: Mapping[str, int | None],
    *,
    tolerance: float,
    confidence: float,
) -> dict[str, Any]:
    """One judge's block of ``calibration.json``: its probe summaries and the two paired differences."""
    summaries = {
        probe: RatingSummary.of((ratings[item.id] for item in probes[probe]), confidence=confidence) for probe in PROBES
    }
    comparisons = {}
    for probe in COMPARED:
        differences = []
        for item in probes[probe]:
            question_id = item.id.split(":", 1)[1]
            own, base = ratings[item.id], ratings[f"self:{question_id}"]
            if own is not None and base is not None:
                differences.append(own - base)
        summary = mean_with_ci(differences, confidence=confidence)
        comparisons[f"{probe}_minus_self"] = {
            "n": summary["n"],
            "excluded": len(probes[probe]) - summary["n"],
            "value": summary["value"],
            "ci_low": summary["ci_low"],
            "ci_high": summary["ci_high"],
            "confidence": confidence,
        }
    block: dict[str, Any] = {
        "model": report.model,
        "backend": report.settings.get("asked", {}).get("backend"),
        "template": report.template,
        "template_sha256": report.template_sha256,
        "sampling": report.settings.get("asked", {}).get("sampling"),
        "retries": report.settings.get("retries"),
        "probes": {},
        "comparisons": comparisons,
    }
    for probe, summary in summaries.items():
        meets = _meets(probe, summary, comparisons, tolerance)
        block["probes"][probe] = {**summary.as_dict(), "expectation": EXPECTATIONS[probe], "meets_expectation": meets}
    block["comparisons"]["padded_minus_self"]["reading"] = _padding_reading(comparisons["padded_minus_self"])
    return block


def _meets(probe: str, summary: RatingSummary, comparisons: Mapping[str, Mapping[str, Any]], tolerance: float):
    """Whether the probe's figure is what a good judge gives (None when there is no figure)."""
    if probe in COMPARED:
        difference = comparisons[f"{probe}_minus_self"]
        low, high = difference["ci_low"], difference["ci_high"]
        if low is None or high is None:
            return None
        return high < 0 if probe == "swapped_images" else low <= 0 <= high
    if summary.mean is None:
        return None
    if probe == "self":
        return summary.mean >= RATINGS[-1] - tolerance
    return summary.mean <= RATINGS[0] + tolerance


def _padding_reading(difference: Mapping[str, Any]) -> str | None:
    low, high = difference["ci_low"], difference["ci_high"]
    if low is None or high is None:
        return None
    if low > 0:
        return "rewards padding"
    if high < 0:
        return "penalises padding"
    return "no detectable verbosity bias"


def _write_judgements(reports: Mapping[str, JudgeReport], path: Path) -> None:
    second = reports.get("second_judge")
    second_ratings = {r.item.id: r.rating for r in second.records} if second is not None else {}
    with path.open("w", encoding="utf-8") as handle:
        for record in reports["judge"].records:
            probe, question_id = record.item.id.split(":", 1)
            line = {
                "probe": probe,
                "question_id": question_id,
                "prediction": record.item.prediction,
                "rating": record.rating,
                "raw": list(record.raw),
            }
            if second is not None:
                line["second_rating"] = second_ratings.get(record.item.id)
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")


# --- the report -------------------------------------------------------------------------------------------


def write_histograms(results: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """One panel per probe: the share of each rating 0-5 (and invalid), one bar per judge (Agg, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    judges = [name for name in ("judge", "second_judge") if results.get(name)]
    figure = Figure(figsize=(3.2 * len(PROBES), 3.2), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(PROBES), sharey=True)
    labels = [str(r) for r in RATINGS] + ["inv."]
    width = 0.8 / len(judges)
    for axis, probe in zip(axes, PROBES, strict=True):
        titles = []
        for offset, name in enumerate(judges):
            summary = results[name]["probes"][probe]
            counts = [summary["histogram"][str(r)] for r in RATINGS] + [summary["invalid"]]
            total = max(summary["n"], 1)
            positions = [i + (offset - (len(judges) - 1) / 2) * width for i in range(len(labels))]
            axis.bar(positions, [c / total for c in counts], width=width, label=results[name]["model"])
            mean = summary["mean_rating"]
            titles.append("-" if mean is None else f"{mean:.2f}")
        axis.set_title(f"{probe}\nmean {' / '.join(titles)} (n={results['judge']['probes'][probe]['n']})", fontsize=9)
        axis.set_xticks(range(len(labels)), labels)
        axis.set_xlabel("rating")
    axes[0].set_ylabel("share of items")
    axes[0].set_ylim(0, 1)
    if len(judges) > 1:
        axes[-1].legend(fontsize=7)
    figure.suptitle("CaD-QA judge calibration: ratings per probe", fontsize=10)
    figure.savefig(path, dpi=100)
    return Path(path)


def _number(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _with_ci(figure: Mapping[str, Any], key: str = "value", signed: bool = False) -> str:
    value = figure.get(key)
    if value is None:
        return "-"
    low, high = figure.get("ci_low"), figure.get("ci_high")
    return f"{_number(value, signed)} [{_number(low, signed)}, {_number(high, signed)}]"


def _verdict(meets: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "-"}[meets]


def markdown_report(results: Mapping[str, Any]) -> str:
    """The short Markdown report of ``calibration.json``'s figures."""
    confidence = f"{results['confidence']:.0%}"
    lines = ["# CaD-QA judge calibration", ""]
    source = results["references"] or "the given references"
    lines.append(
        f"{results['sample']:,} of {results['n_references']:,} questions of `{source}` (seed {results['seed']}); "
        f"intervals are {confidence} bootstrap CIs; invalid judgements are excluded from means, never scored 0."
    )
    for name, title in (("judge", "Judge"), ("second_judge", "Second judge")):
        block = results.get(name)
        if not block:
            continue
        lines += ["", f"## {title}: `{block['model']}`", ""]
        lines.append(f"Template `{block['template']}` (sha256 `{block['template_sha256'][:12]}`).")
        lines += [
            "",
            "| probe | expected | n | invalid | mean rating [CI] | histogram 0/1/2/3/4/5 | as expected |",
            "|---|---|---:|---:|---|---|---|",
        ]
        for probe in PROBES:
            summary = block["probes"][probe]
            histogram = "/".join(str(summary["histogram"][str(r)]) for r in RATINGS)
            lines.append(
                f"| {probe} | {summary['expectation']} | {summary['n']:,} | {summary['invalid']:,} | "
                f"{_with_ci(summary, 'mean_rating')} | {histogram} | {_verdict(summary['meets_expectation'])} |"
            )
        lines += ["", "| paired difference | n | mean [CI] | reading |", "|---|---:|---|---|"]
        for probe in COMPARED:
            difference = block["comparisons"][f"{probe}_minus_self"]
            if probe == "swapped_images":
                reading = {True: "drops swapped images", False: "**no significant drop**", None: "-"}[
                    block["probes"][probe]["meets_expectation"]
                ]
            else:
                reading = difference.get("reading") or "-"
            lines.append(f"| {probe} - self | {difference['n']:,} | {_with_ci(difference, signed=True)} | {reading} |")
    skipped = results["skipped"]["swapped_images"]
    if skipped:
        names = "reference names" if skipped == 1 else "references name"
        lines += ["", f"{skipped:,} {names} no image, so they have no swapped_images probe."]
    agreed = results.get("agreement")
    if agreed:
        lines += [
            "",
            "## Agreement of the two judges (all probes pooled)",
            "",
            "| pairs | excluded (an invalid rating) | weighted kappa (quadratic) [CI] | Spearman rho [CI] |",
            "|---:|---:|---|---|",
            f"| {agreed['n']:,} | {agreed['excluded']:,} | {_with_ci(agreed['weighted_kappa'])} | "
            f"{_with_ci(agreed['spearman'])} |",
        ]
    return "\n".join(lines) + "\n"
