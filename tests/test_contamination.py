"""``cadvi audit contamination`` on fixtures with known overlaps: identity across naming schemes and links,
perceptual-hash matches of resized / re-encoded copies (and none for different pictures), scores recomputed
from samples files equal to hand-computed values, and bad input ending in one error line with nothing written.

The benchmark rows are the first rows of the official question files (``../shared``); the training files and
the Visual Genome links are made here, so every expected number below is worked out by hand from them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from builders.confidence import mean_with_ci
from builders.images.identity import Links, UnknownImageError, identify, schemes_of
from builders.images.phash import image_hash, near_duplicates
from tests.conftest import SHARED_EVAL, shared_file
from tests.http_faults import photo_like
from tests.test_reliability import cadvi

# BISON rows 0-3: q0 143961 + 274538, q1 369373 + 092815, q2 216437 + 252147, q3 523230 + 172616.
# COLA rows 0_0 .. 2_1: group 0 2390970 + 2388902, group 1 2383130 + 2382835, group 2 two more VG images.
BISON_ROWS, COLA_ROWS, CADQA_ROWS = 4, 6, 3
FLICKR_ID = 123456789  # the Flickr photo of VG 2383130 in the fixture links


def head_rows(name: str, count: int, folder: Path) -> Path:
    lines = shared_file(SHARED_EVAL / name).read_text().splitlines()[:count]
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path


def write_json(path: Path, content: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path


@pytest.fixture
def audit_inputs(tmp_path: Path) -> dict[str, Path]:
    files = {
        "bison": head_rows("BISON.jsonl", BISON_ROWS, tmp_path),
        "cola": head_rows("COLA.jsonl", COLA_ROWS, tmp_path),
        "cadqa": head_rows("CaD_QA_eval.jsonl", CADQA_ROWS, tmp_path),
        # CaD-Inst phase 2: COCO 2017 names (BISON's 143961 and 216437; 216437 is also VG 2388902 of COLA).
        "phase2": write_json(
            tmp_path / "phase2.json",
            [
                {"id": "a", "image": ["000000143961.jpg", "000000999999.jpg"]},
                {"id": "b", "image": ["000000216437.jpg"]},
            ],
        ),
        # A LLaVA mix: COCO under coco/train2017/, VG under gqa/images/ and vg/VG_100K_2/.
        "llava": write_json(
            tmp_path / "llava.json",
            [
                {"image": "coco/train2017/000000274538.jpg"},
                {"image": "gqa/images/2390970.jpg"},
                {"image": "vg/VG_100K_2/2406825.jpg"},
            ],
        ),
        # Phase 1: a Flickr30k name (VG 2383130's Flickr photo) and an Open Images name.
        "phase1": write_json(tmp_path / "phase1.json", [{"image": [f"{FLICKR_ID}.jpg", "0123456789abcdef.jpg"]}]),
        "vg": write_json(
            tmp_path / "image_data.json",
            [
                {
                    "image_id": 2388902,
                    "url": "http://127.0.0.1/VG_100K_2/2388902.jpg",
                    "coco_id": 216437,
                    "flickr_id": None,
                },
                {
                    "image_id": 2383130,
                    "url": "http://127.0.0.1/VG_100K/2383130.jpg",
                    "coco_id": None,
                    "flickr_id": FLICKR_ID,
                },
            ],
        ),
    }
    return files


def audit(inputs: dict[str, Path], out: Path, *extra: object, links: bool = True, benchmarks: str = "bison,cola"):
    arguments: list[object] = ["audit", "contamination", "--benchmarks", benchmarks, "--out", out]
    for kind, key in (("cadinst-phase2", "phase2"), ("llava", "llava"), ("cadinst-phase1", "phase1")):
        arguments += ["--train", f"{kind}={inputs[key]}"]
    for name in benchmarks.split(","):
        arguments += ["--benchmark-file", f"{name}={inputs[name]}"]
    if links:
        arguments += ["--visual-genome", inputs["vg"]]
    return cadvi(*arguments, *extra)


def test_identity_across_naming_schemes_and_links() -> None:
    coco = {
        identify("COCO_val2014_000000143961.jpg", schemes_of("bison")),
        identify("000000143961.jpg", schemes_of("cadinst-phase2")),
        identify("CGD_IMG_000000143961", schemes_of("cadinst-phase2")),
        identify("coco/train2017/000000143961.jpg", schemes_of("llava")),
    }
    assert coco == {"coco:143961"}
    assert identify("0_2390970.jpg", schemes_of("cola")) == identify("VG_100K_2/2390970.jpg", schemes_of("cadqa"))
    assert identify("gqa/images/2390970.jpg", schemes_of("llava")) == "vg:2390970"
    assert identify("textvqa/train_images/0123456789abcdef.jpg", schemes_of("llava")) == "openimages:0123456789abcdef"
    # a bare number is what its dataset says it is
    assert identify("300839715.jpg", schemes_of("cadinst-phase1")) == "flickr:300839715"
    assert identify("05617.jpg", schemes_of("svo_probes")) == "svo:05617"
    assert identify("ADE_train_00009414.jpg", schemes_of("cadinst-phase1")) == "ade20k:train_00009414"
    links = Links([("vg:2383130", f"flickr:{FLICKR_ID}"), ("vg:2383130", "coco:5")])
    assert links.canonical(f"flickr:{FLICKR_ID}") == links.canonical("coco:5") == links.canonical("vg:2383130")
    assert links.canonical("coco:6") != links.canonical("coco:5")
    with pytest.raises(UnknownImageError, match="matches none of the naming schemes coco2014"):
        identify("000000143961.jpg", schemes_of("bison"))


def test_overlaps_by_identity_with_and_without_links(audit_inputs: dict[str, Path], tmp_path: Path) -> None:
    run = audit(audit_inputs, tmp_path / "report")
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "report" / "contamination.json").read_text())
    bison, cola = report["benchmarks"]["bison"], report["benchmarks"]["cola"]
    # BISON: 143961 and 216437 (phase 2), 274538 (LLaVA mix); q0 has both images seen, q2 one.
    assert (bison["images"], bison["images_seen"], bison["images_seen_by_hash_only"]) == (8, 3, 0)
    assert bison["contaminated_question_ids"] == ["0", "2"] and bison["questions_all_images_seen"] == 1
    assert bison["images_seen_by_training_set"] == {
        "cadinst-phase2": {"by_identity": 2, "by_hash": 0},
        "llava": {"by_identity": 1, "by_hash": 0},
    }
    # COLA: 2390970 (gqa/images), 2388902 (= COCO 216437 through coco_id), 2383130 (= Flickr photo through flickr_id).
    assert cola["images_seen"] == 3 and cola["contaminated_question_ids"] == ["0_0", "0_1", "1_0", "1_1"]
    assert cola["questions_all_images_seen"] == 2
    linked = {e["benchmark_image"]: (e["training_set"], e["training_image"]) for e in cola["examples"]}
    assert linked["0_2388902.jpg"] == ("cadinst-phase2", "000000216437.jpg")
    assert linked["1_2383130.jpg"] == ("cadinst-phase1", f"{FLICKR_ID}.jpg")
    assert (
        "| cola | 6 | 3 (50.0%) (3 / 0) | 6 | 4 (66.7%) | 2 |" in (tmp_path / "report" / "contamination.md").read_text()
    )

    unlinked = audit(audit_inputs, tmp_path / "unlinked", links=False)
    assert unlinked.returncode == 0, unlinked.stderr
    cola = json.loads((tmp_path / "unlinked" / "contamination.json").read_text())["benchmarks"]["cola"]
    assert cola["images_seen"] == 1 and cola["contaminated_question_ids"] == ["0_0", "0_1"]


def test_perceptual_hash_finds_resized_and_reencoded_copies_only(audit_inputs: dict[str, Path], tmp_path: Path) -> None:
    bison_root, phase1_root, phase2_root = tmp_path / "val2014", tmp_path / "phase1", tmp_path / "phase2"
    for folder in (bison_root, phase1_root, phase2_root):
        folder.mkdir()
    names = [n for line in audit_inputs["bison"].read_text().splitlines() for n in json.loads(line)["image"]]
    for seed, name in enumerate(names):
        photo_like(seed).save(bison_root / name, quality=90)
    photo_like(0).save(phase2_root / "000000143961.jpg", quality=90)  # the same image, matched by identity already
    photo_like(100).save(phase2_root / "000000999999.jpg", quality=90)  # another picture
    photo_like(4).save(phase2_root / "000000216437.jpg", quality=90)
    copy = photo_like(names.index("COCO_val2014_000000092815.jpg")).resize((200, 150))
    copy.save(phase1_root / "0123456789abcdef.jpg", quality=55)  # BISON 092815 resized and re-encoded
    photo_like(101).save(phase1_root / f"{FLICKR_ID}.jpg", quality=90)

    folders = ["--benchmark-images", f"bison={bison_root}"]
    folders += ["--train-images", f"cadinst-phase1={phase1_root}", "--train-images", f"cadinst-phase2={phase2_root}"]
    run = audit(audit_inputs, tmp_path / "report", *folders)
    assert run.returncode == 0, run.stderr
    bison = json.loads((tmp_path / "report" / "contamination.json").read_text())["benchmarks"]["bison"]
    hashed = [e for e in bison["examples"] if e["how"] == "hash"]
    assert [(e["benchmark_image"], e["training_image"]) for e in hashed] == [
        ("COCO_val2014_000000092815.jpg", "0123456789abcdef.jpg")
    ]
    assert hashed[0]["distance"] <= 4
    assert (bison["images_seen"], bison["images_seen_by_hash_only"]) == (4, 1)
    assert bison["contaminated_question_ids"] == ["0", "1", "2"]
    assert bison["hashing"] == {"hashed": 8, "no_file": 0, "unreadable": 0}
    cache = tmp_path / "report" / "phash-cache.jsonl"
    lines = len(cache.read_text().splitlines())
    assert lines == 8 + 5  # every file hashed once ...
    again = audit(audit_inputs, tmp_path / "report", *folders)
    assert again.returncode == 0 and len(cache.read_text().splitlines()) == lines  # ... and not again on a rerun


def test_hash_distances_separate_copies_from_other_pictures(tmp_path: Path) -> None:
    originals, copies = {}, {}
    for seed in range(12):
        photo_like(seed, (640, 480)).save(tmp_path / f"{seed}.jpg", quality=92)
        photo_like(seed, (640, 480)).resize((256, 192)).save(tmp_path / f"{seed}-small.png")
        originals[str(seed)] = image_hash(tmp_path / f"{seed}.jpg")
        copies[f"{seed}-small"] = image_hash(tmp_path / f"{seed}-small.png")
    matches = near_duplicates(copies, originals, threshold=8)
    assert sorted((copy, original) for copy, original, _ in matches) == sorted(
        (f"{seed}-small", str(seed)) for seed in range(12)
    )
    unrelated = [bin(originals[a] ^ originals[b]).count("1") for a in originals for b in originals if a < b]
    assert min(unrelated) > 16


def samples_file(path: Path, answers: dict[str, str], metric: str = "accuracy") -> Path:
    """An lmms-eval 0.7 samples file (as its evaluation tracker writes it: no ``doc``, the filtered answer, and the
    task's per-sample result under each metric name) whose results carry only what ours do: the question id."""
    lines = []
    for doc_id, (question, answer) in enumerate(answers.items()):
        result = {"question_id": question}  # the tasks' other result fields are scored afresh, not read
        lines.append(json.dumps({"doc_id": doc_id, "target": "?", "filtered_resps": answer, metric: result}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_rescoring_matches_hand_computed_values(audit_inputs: dict[str, Path], tmp_path: Path) -> None:
    # BISON gold A A B B; answers right, wrong ("The answer is B"), right, wrong. Contaminated: q0, q2.
    bison = samples_file(tmp_path / "bison.jsonl", {"0": "A", "1": "The answer is B", "2": "B", "3": "A"})
    # COLA gold A B per group; group 1 misses its second question. Contaminated groups: 0, 1.
    cola = samples_file(
        tmp_path / "cola.jsonl",
        {"0_0": "A", "0_1": "B", "1_0": "A", "1_1": "A", "2_0": "A", "2_1": "B"},
    )
    run = audit(audit_inputs, tmp_path / "report", "--samples", f"bison={bison}", "--samples", f"cola={cola}")
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "report" / "contamination.json").read_text())["benchmarks"]
    scored = report["bison"]["rescored"]
    assert scored["samples"] == 4
    for subset, correct in (("all", [1, 0, 1, 0]), ("contaminated", [1, 1]), ("clean", [0, 0])):
        accuracy = scored[subset]["accuracy"]
        expected = mean_with_ci(correct, scale=100.0)
        assert (accuracy["value"], accuracy["n"]) == (100 * sum(correct) / len(correct), len(correct))
        assert (accuracy["ci_low"], accuracy["ci_high"]) == (expected["ci_low"], expected["ci_high"])
    groups = report["cola"]["rescored"]
    assert groups["all"]["group_accuracy"]["value"] == pytest.approx(200 / 3)
    assert groups["contaminated"]["group_accuracy"]["value"] == 50.0
    assert groups["clean"]["group_accuracy"]["value"] == 100.0
    assert groups["all"]["accuracy"]["value"] == pytest.approx(500 / 6)
    assert "| accuracy | 50.00 [" in (tmp_path / "report" / "contamination.md").read_text()


def test_cadqa_rescoring_uses_the_judge_ratings(audit_inputs: dict[str, Path], tmp_path: Path) -> None:
    rows = [json.loads(line) for line in audit_inputs["cadqa"].read_text().splitlines()]
    ratings = [{"rating": 4}, {"rating": 2}, {"rating": None, "judge_failed": True}]
    lines = [
        json.dumps({"doc_id": i, "filtered_resps": "x", "judge_rating": {"question_id": r["question_id"], **rating}})
        for i, (r, rating) in enumerate(zip(rows, ratings, strict=True))
    ]
    samples = tmp_path / "cadqa.jsonl"
    samples.write_text("\n".join(lines) + "\n")
    run = audit(audit_inputs, tmp_path / "report", "--samples", f"cadqa={samples}", benchmarks="cadqa")
    assert run.returncode == 0, run.stderr
    cadqa = json.loads((tmp_path / "report" / "contamination.json").read_text())["benchmarks"]["cadqa"]
    assert cadqa["contaminated_question_ids"] == [rows[0]["question_id"]]  # VG 2406825 is in the LLaVA mix
    rescored = cadqa["rescored"]
    assert rescored["samples"] == 2  # the unjudged answer is left out, as the task does
    assert [rescored[s]["judge_rating"]["value"] for s in ("all", "contaminated", "clean")] == [3.0, 4.0, 2.0]


def assert_one_line_error(run, *fragments: str) -> None:
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("cadvi: error: ")]
    assert len(errors) == 1, run.stderr
    first = errors[0]
    for fragment in fragments:
        assert fragment in first, first


def test_bad_input_is_one_error_line_and_nothing_written(audit_inputs: dict[str, Path], tmp_path: Path) -> None:
    coco = write_json(
        tmp_path / "instances_val2014.json", {"images": [{"id": 1, "file_name": "x.jpg", "coco_url": "u"}]}
    )
    out = tmp_path / "report"
    wrong_kind = audit({**audit_inputs, "vg": coco}, out)
    assert_one_line_error(wrong_kind, str(coco), "not a Visual Genome image_data.json file", "--coco")

    unknown = write_json(tmp_path / "phase2-bad.json", [{"image": ["000000000001.jpg"]}, {"image": ["cat.jpg"]}])
    run = audit({**audit_inputs, "phase2": unknown}, out)
    assert_one_line_error(run, f"{unknown}:2:", "'cat.jpg'", "naming schemes")

    blocked = tmp_path / "a-file"
    blocked.write_text("")
    run = audit(audit_inputs, blocked / "report")
    assert_one_line_error(run, "cannot write the report")

    other = samples_file(tmp_path / "cola-as-bison.jsonl", {"0_0": "A"})
    run = audit(audit_inputs, out, "--samples", f"bison={other}")
    assert_one_line_error(run, f"{other}:1:", "'0_0' is not a bison question")
    assert not any(p.name.startswith("contamination") for p in out.glob("*")), "no report from a failed audit"


def test_dataset_cards_link_the_report(audit_inputs: dict[str, Path], tmp_path: Path) -> None:
    import cadinst.hub
    import cadqa.hub

    root = Path(__file__).resolve().parents[1]
    report = tmp_path / "report"
    assert audit(audit_inputs, report, benchmarks="bison,cola,cadqa").returncode == 0
    built = tmp_path / "cadinst-built"
    cadinst.hub.build(root / "cadinst" / "sample", built, audit=report, cache_dir=tmp_path / "cache")
    card = (built / "README.md").read_text()
    assert "## Train/eval contamination" in card and "[audit/contamination.md](audit/contamination.md)" in card
    assert "| cola | 6 | 3 (0) | 6 | 4 |" in card and "| bison | 8 | 3 (0) | 4 | 2 |" in card
    assert (built / "audit" / "contamination.json").read_bytes() == (report / "contamination.json").read_bytes()
    from builders.release.hub import plan_publish

    uploaded = [name for name, _ in plan_publish(built, "ORG/CaD-Inst").files]
    assert "audit/contamination.md" in uploaded and "audit/contamination.json" in uploaded

    qa = tmp_path / "cadqa-built"
    cadqa.hub.build(
        root / "cadqa" / "sample" / "CaD_QA_eval_sample.jsonl",
        qa,
        audit=report / "contamination.json",
        cache_dir=tmp_path / "cache",
    )
    card = (qa / "README.md").read_text()
    assert "| cadqa | 6 | 1 (0) | 3 | 1 |" in card and "| bison |" not in card  # only CaD-QA's own row

    bison_only = tmp_path / "bison-only"
    run = cadvi(
        "audit",
        "contamination",
        "--benchmarks",
        "bison",
        "--benchmark-file",
        f"bison={audit_inputs['bison']}",
        "--train",
        f"llava={audit_inputs['llava']}",
        "--out",
        bison_only,
    )
    assert run.returncode == 0, run.stderr
    with pytest.raises(ValueError, match="not CaD-Inst"):
        cadinst.hub.build(root / "cadinst" / "sample", tmp_path / "refused", audit=bison_only)
    with pytest.raises(ValueError, match="does not audit CaD-QA"):
        cadqa.hub.build(root / "cadqa" / "sample" / "CaD_QA_eval_sample.jsonl", tmp_path / "refused", audit=bison_only)
    assert not (tmp_path / "refused").exists()
