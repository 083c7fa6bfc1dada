"""``cadvi images fetch`` end to end: the real command against a real faulty server on 127.0.0.1.

The sources' annotation files (COCO, Visual Genome, Open Images) are written in their own formats with URLs
pointing at the test's :class:`tests.http_faults.FaultServer`; the dataset files are the first rows of the
official question files (``../shared``) or a phase-1-style release. Nothing leaves 127.0.0.1: every URL in the
fixtures is the server's, and the server's log holds exactly the requests the manifest counts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.http_faults import FaultServer, noise_jpeg
from tests.test_contamination import assert_one_line_error, head_rows, write_json
from tests.test_reliability import CADVI, cadvi

BISON_ROWS = 4  # 8 COCO val2014 images


def bison_names(path: Path) -> list[str]:
    return [name for line in path.read_text().splitlines() for name in json.loads(line)["image"]]


def coco_id(name: str) -> int:
    return int(Path(name).stem.rsplit("_", 1)[-1])


def coco_annotations(path: Path, server: FaultServer, names: list[str], folder: str) -> Path:
    """A COCO ``instances_*.json`` whose coco_url is the server's; flickr_url a 404 on the same server."""
    images = [
        {
            "id": coco_id(n),
            "file_name": n,
            "coco_url": server.url(f"{folder}/{n}"),
            "flickr_url": server.url(f"gone/{n}"),
        }
        for n in names
    ]
    return write_json(path, {"info": {}, "images": images, "annotations": [], "categories": []})


@pytest.fixture
def bison_setup(tmp_path: Path):
    data = head_rows("BISON.jsonl", BISON_ROWS, tmp_path)
    names = bison_names(data)
    files = {f"val2014/{name}": noise_jpeg(seed, (96, 72)) for seed, name in enumerate(names)}
    with FaultServer(files) as server:
        annotations = coco_annotations(tmp_path / "instances_val2014.json", server, names, "val2014")
        yield server, data, annotations, names, files


def manifest_of(folder: Path, dataset: str) -> dict:
    return json.loads((folder / f"cadvi-fetch-{dataset}.json").read_text())


def test_fetch_through_faults_then_rerun_fetches_nothing(bison_setup, tmp_path: Path) -> None:
    server, data, annotations, names, files = bison_setup
    server.faults.update(
        {
            f"/val2014/{names[0]}": ["500", "ok"],
            f"/val2014/{names[1]}": ["drop", "ok"],
            f"/val2014/{names[2]}": ["truncate", "ok"],
            f"/val2014/{names[3]}": ["slow:3", "ok"],
            f"/val2014/{names[4]}": ["404"],  # then the flickr_url candidate: a 404 too -> missing
        }
    )
    out = tmp_path / "val2014"
    run = cadvi("images", "fetch", "bison", "--data", data, "--coco", annotations, "--to", out, "--timeout", "1")
    assert run.returncode == 0, run.stderr  # a 404 is permanent: reported, not a failed run to retry
    for name in names[:4] + names[5:]:
        assert (out / name).read_bytes() == files[f"val2014/{name}"], name
    assert not (out / names[4]).exists() and not list(out.rglob("*.part"))
    manifest = manifest_of(out, "bison")
    assert (manifest["needed"], manifest["complete"]) == (8, 7)
    assert manifest["counts"] == {"present": 0, "downloaded": 7, "linked": 0, "missing": 1}
    (missing,) = manifest["missing"]
    assert missing["name"] == names[4] and missing["identity"] == f"coco:{coco_id(names[4])}"
    assert "404" in missing["reason"] and missing["why"] == "source refused"
    resumed = server.requests(f"val2014/{names[1]}")
    assert [r.range_start for r in resumed] == [None, resumed[0].sent]  # the drop was resumed by range
    assert server.sent(f"val2014/{names[1]}") == len(files[f"val2014/{names[1]}"])  # no byte sent twice
    attempts = sum(entry["attempts"] for entry in manifest["downloaded"] + manifest["missing"])
    assert attempts == len(server.log)  # the manifest accounts for every request the server saw
    assert all(r.client == "127.0.0.1" for r in server.log)

    server.clear_log()
    again = cadvi("images", "fetch", "bison", "--data", data, "--coco", annotations, "--to", out)
    assert again.returncode == 0, again.stderr
    assert [r.path for r in server.log] == [f"/val2014/{names[4]}"]  # only what is missing (served now)
    assert manifest_of(out, "bison")["counts"] == {"present": 7, "downloaded": 1, "linked": 0, "missing": 0}


def test_mixed_sources_checksums_and_manual_sets(tmp_path: Path) -> None:
    """Phase 1's flat folder: Open Images (MD5 published), COCO 2017, and Flickr30k/ADE20K (no per-image URL)."""
    oi_ids = ["0123456789abcdef", "fedcba9876543210"]
    files = {f"oi/{i}.jpg": noise_jpeg(n, (80, 60)) for n, i in enumerate(oi_ids)}
    files["coco/000000000009.jpg"] = noise_jpeg(7, (80, 60))
    data = write_json(
        tmp_path / "phase1.json",
        [
            {"id": "1", "image": [f"{oi_ids[0]}.jpg", "000000000009.jpg"]},
            {"id": "2", "image": [f"{oi_ids[1]}.jpg", "300839715.jpg"]},
            {"id": "3", "image": ["ADE_train_00009414.jpg", "000000000009.jpg"]},
        ],
    )
    with FaultServer(files) as server:
        server.faults[f"/oi/{oi_ids[1]}.jpg"] = ["corrupt"] * 20  # wrong bytes every time: the MD5 says so
        csv = tmp_path / "oi-images.csv"
        lines = ["ImageID,Subset,OriginalURL,OriginalLandingURL,License,OriginalSize,OriginalMD5"]
        for image_id in oi_ids:
            body = files[f"oi/{image_id}.jpg"]
            md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
            lines.append(f"{image_id},,{server.url(f'oi/{image_id}.jpg')},,,{len(body)},{md5}")
        csv.write_text("\n".join(lines) + "\n")
        coco = coco_annotations(tmp_path / "instances_train2017.json", server, ["000000000009.jpg"], "coco")
        out = tmp_path / "phase1-images"
        common = ["images", "fetch", "cadinst-phase1", "--data", data, "--open-images", csv, "--coco", coco]
        run = cadvi(*common, "--to", out, "--retries", "2")
        assert run.returncode == 75, run.stderr  # a download failed: rerun later
        assert "rerun the same command" in run.stderr
        manifest = manifest_of(out, "cadinst-phase1")
        reasons = {entry["name"]: entry for entry in manifest["missing"]}
        assert set(reasons) == {f"{oi_ids[1]}.jpg", "300839715.jpg", "ADE_train_00009414.jpg"}
        assert "md5" in reasons[f"{oi_ids[1]}.jpg"]["reason"]
        assert reasons["300839715.jpg"]["why"] == "no per-image URL published"
        assert "Flickr30k" in reasons["300839715.jpg"]["reason"] and "ADEChallengeData2016" in str(reasons)
        assert (out / f"{oi_ids[0]}.jpg").read_bytes() == files[f"oi/{oi_ids[0]}.jpg"]
        assert not (out / f"{oi_ids[1]}.jpg").exists()

        server.faults.clear()
        server.clear_log()
        again = cadvi(*common, "--to", out)
        assert again.returncode == 0, again.stderr
        assert [r.path for r in server.log] == [f"/oi/{oi_ids[1]}.jpg"]
        assert manifest_of(out, "cadinst-phase1")["counts"] == {
            "present": 2,
            "downloaded": 1,
            "linked": 0,
            "missing": 2,
        }


def test_visual_genome_layout_for_cola_and_cadqa(tmp_path: Path) -> None:
    cola = head_rows("COLA.jsonl", 4, tmp_path)  # 0_2390970, 0_2388902, 1_2383130, 1_2382835
    cadqa = head_rows("CaD_QA_eval.jsonl", 2, tmp_path)
    vg_names = {n for line in cadqa.read_text().splitlines() for n in json.loads(line)["image"]}
    vg_ids = {int(n.split("_", 1)[1].split(".")[0]) for n in bison_names(cola)} | {int(Path(n).stem) for n in vg_names}
    files = {f"VG_100K/{i}.jpg": noise_jpeg(i % 1000, (64, 48)) for i in vg_ids}
    with FaultServer(files) as server:
        image_data = [
            {"image_id": i, "url": server.url(f"VG_100K/{i}.jpg"), "coco_id": None, "flickr_id": None}
            for i in sorted(vg_ids)
        ]
        vg = write_json(tmp_path / "image_data.json", image_data)
        assert (
            cadvi(
                "images", "fetch", "cola", "--data", cola, "--visual-genome", vg, "--to", tmp_path / "cola"
            ).returncode
            == 0
        )
        assert (tmp_path / "cola" / "0_2390970.jpg").read_bytes() == files["VG_100K/2390970.jpg"]
        run = cadvi("images", "fetch", "cadqa", "--data", cadqa, "--visual-genome", vg, "--to", tmp_path / "vg")
        assert run.returncode == 0, run.stderr
        for name in vg_names:  # VG_100K/ or VG_100K_2/, as the question file names them
            assert (tmp_path / "vg" / name).read_bytes() == files[f"VG_100K/{Path(name).stem}.jpg"]


def test_killed_fetch_resumes_without_fetching_twice(bison_setup, tmp_path: Path) -> None:
    server, data, annotations, names, files = bison_setup
    server.drip, server.drip_chunk = 0.05, 256  # a few KB a file: about a second each
    out = tmp_path / "val2014"
    command = [str(CADVI), "images", "fetch", "bison", "--data", str(data), "--coco", str(annotations)]
    command += ["--to", str(out), "--concurrency", "2"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = [n for n in names if (out / n).exists()]
        parts = [p for p in out.glob("*.part") if p.stat().st_size > 0] if out.exists() else []
        if done and parts:
            break
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert done and parts, "the first run was killed with files done and files partly downloaded"
    completed_first = {n for n in names if (out / n).exists()}
    part_sizes = {p.name.removesuffix(".part"): p.stat().st_size for p in out.glob("*.part")}

    server.drip = 0.0
    server.clear_log()
    run = cadvi("images", "fetch", "bison", "--data", data, "--coco", annotations, "--to", out)
    assert run.returncode == 0, run.stderr
    for name in names:
        assert (out / name).read_bytes() == files[f"val2014/{name}"], name
    asked = {r.path.rsplit("/", 1)[1]: r for r in server.log}
    assert not completed_first & set(asked), "a file the first run completed was fetched again"
    for name, size in part_sizes.items():
        assert asked[name].range_start == size, f"{name} resumed from byte {size}"
    assert not list(out.glob("*.part"))
    assert manifest_of(out, "bison")["counts"]["present"] == len(completed_first)


def test_bad_input_is_one_error_line_and_nothing_fetched(bison_setup, tmp_path: Path) -> None:
    server, data, annotations, names, _ = bison_setup
    out = tmp_path / "images"
    wrong = cadvi("images", "fetch", "bison", "--data", data, "--visual-genome", annotations, "--to", out)
    assert_one_line_error(wrong, str(annotations), "not a Visual Genome image_data.json file", "--coco")

    unknown = cadvi("images", "fetch", "bison", "--data", data, "--coco", annotations, "--to", out, "--only", "x.jpg")
    assert_one_line_error(unknown, "x.jpg", "lists no image of that name")
    no_source = write_json(tmp_path / "other.json", {"images": [{"id": 1, "file_name": "a", "coco_url": "u"}]})
    run = cadvi("images", "fetch", "bison", "--data", data, "--coco", no_source, "--to", out, "--only", names[0])
    assert_one_line_error(run, names[0], "no source knows it", "not in the --coco file(s) given")

    bad_names = write_json(tmp_path / "bad.json", [{"image": ["000000000001.jpg"]}])
    run = cadvi("images", "fetch", "bison", "--data", bad_names, "--coco", annotations, "--to", out)
    assert_one_line_error(run, f"{bad_names}:1:", "000000000001.jpg")

    blocked = tmp_path / "a-file"
    blocked.write_text("")
    run = cadvi("images", "fetch", "bison", "--data", data, "--coco", annotations, "--to", blocked / "images")
    assert_one_line_error(run, "cannot write the images")
    assert not out.exists() and server.log == [], "nothing was fetched or written"
