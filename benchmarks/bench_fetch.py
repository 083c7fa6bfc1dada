"""Image fetch throughput: ``cadvi images fetch``'s downloader, concurrent vs one file at a time.

Starts :class:`tests.http_faults.FaultServer` on 127.0.0.1, in a process of its own (as a remote server would be:
in the client's process it would share its GIL), holding ``--files`` small real JPEGs (64 x 48 random noise, q90,
~3.4 KB each, in folders of 100), every answer delayed by ``--latency`` seconds (the round trip to a distant image
host: the files are small, so latency, not bandwidth, is what the concurrency has to hide), and fetches them all
with :func:`builders.images.download.fetch_files` at its default concurrency (32) into a temporary folder, each
file doing a real run's work: streamed into its ``.part``, hashed, checked against its published size and MD5,
decoded with PIL, fsynced and renamed. Then, in the same run, the baseline: the same call with ``concurrency=1``
over the first ``--baseline-files`` of them (a subset, to keep the run short: one at a time, 2,000 files would take
~2 minutes; files/s is what is compared, and it does not depend on the count). Checks that every file arrived,
byte-identical to what the server holds, and that the server saw one request for each (a 200, from 127.0.0.1).

Then the audit's perceptual hashing (:mod:`builders.images.phash`) over ``--hash-images`` photo-like 640 x 480 JPEGs
(COCO's size): images/s of ``imagehash.phash`` on the fully decoded image, one process (the baseline), against the
audit's draft decode on one process and on one worker process per core, how many bits the two hashes differ, and
the time of the near-duplicate search of 2,000 hashes against 400,000 (CaD-Inst's images are ~400K).

Prints files/s and MB/s of both, their ratio (goal: >= 10x the one-at-a-time files/s at the default concurrency:
met / not met), and a final JSON line of the figures. Exit 0; timings depend on the machine (the server and the
client share its cores, and a one-file-at-a-time run pays its per-file CPU and fsync on top of the latency), so
this is no test.

    .venv/bin/python benchmarks/bench_fetch.py                                   # 2,000 files, 50 ms, baseline 200
    .venv/bin/python benchmarks/bench_fetch.py --files 500 --latency 0.1 --baseline-files 50
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from builders.images.download import Candidate, FetchJob, FetchOutcome, fetch_files  # noqa: E402
from builders.images.phash import hash_files, image_hash, near_duplicates  # noqa: E402
from tests.http_faults import FaultServer, noise_jpeg, photo_like  # noqa: E402

GOAL_RATIO = 10.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=2000, help="JPEGs fetched at the default concurrency")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the server waits before each answer")
    parser.add_argument("--baseline-files", type=int, default=200, help="of them, fetched one at a time")
    parser.add_argument("--hash-images", type=int, default=400, help="COCO-sized JPEGs hashed for the audit")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    figures: dict[str, Any] = {}
    figures["fetch"] = bench_fetch(args)
    figures["phash"] = bench_phash(args)
    print(json.dumps(figures))
    return figures


def bench_fetch(args: argparse.Namespace) -> dict[str, Any]:
    """Fetch throughput at the default concurrency and one at a time, printed; the figures."""
    started = time.perf_counter()
    files = {f"{i // 100:03d}/{i:06d}.jpg": noise_jpeg(args.seed + i) for i in range(args.files)}
    made = time.perf_counter() - started
    total = sum(map(len, files.values()))
    load = os.getloadavg()[0]
    with ServerProcess(files, args.latency) as server, tempfile.TemporaryDirectory(prefix="cadvi-fetch-") as tmp:
        jobs = [
            FetchJob(name, (Candidate(server.url(name), size=len(data), md5=hashlib.md5(data).hexdigest()),))
            for name, data in files.items()
        ]
        concurrent = timed_fetch(jobs, Path(tmp) / "concurrent", files, server)
        baseline = timed_fetch(jobs[: args.baseline_files], Path(tmp) / "serial", files, server, concurrency=1)
    ratio = concurrent["files_per_s"] / baseline["files_per_s"]
    met = ratio >= GOAL_RATIO
    print(
        f"{args.files:,} noise JPEGs (64x48, q90, mean {total / args.files / 1e3:.1f} KB, made in {made:.1f} s), "
        f"{args.latency * 1e3:.0f} ms added per request by the local server, {os.cpu_count()} CPUs shared by server "
        f"and client, load average {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"
    )
    for label, figures in (("default concurrency (32)", concurrent), ("one at a time (baseline)", baseline)):
        print(
            f"  {label:<26}{figures['files']:>6,} files in {figures['seconds']:6.2f} s: "
            f"{figures['files_per_s']:7.1f} files/s, {figures['mb_per_s']:6.2f} MB/s"
        )
    print(
        f"  (the baseline fetched the first {baseline['files']:,} files only, to keep the run short; files/s is "
        "compared)"
    )
    verdict = "met" if met else "not met"
    print(f"  concurrency speed-up: {ratio:.1f}x the files/s of one at a time; goal >= {GOAL_RATIO:g}x: {verdict}")
    print(f"  all {args.files:,} files arrived byte-identical, one request each")
    return {
        "files": args.files,
        "latency_s": args.latency,
        "mean_kb": round(total / args.files / 1e3, 2),
        "concurrent": concurrent,
        "baseline": baseline,
        "ratio": round(ratio, 2),
        "goal_ratio": GOAL_RATIO,
        "goal_met": met,
    }


def bench_phash(args: argparse.Namespace) -> dict[str, Any]:
    """Perceptual hashing for ``cadvi audit contamination``: images/s of the audit's way (draft decode, one worker
    process per core) against ``imagehash.phash`` on the fully decoded image, one at a time; and whether the
    two hashes agree (bits apart)."""
    import imagehash
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="cadvi-phash-") as tmp:
        paths = []
        for i in range(args.hash_images):
            path = Path(tmp) / f"{i:06d}.jpg"
            photo_like(args.seed + i, (640, 480)).save(path, quality=90)  # COCO's size and quality
            paths.append(str(path))
        started = time.perf_counter()
        full = {}
        for path in paths:
            with Image.open(path) as image:
                full[path] = int(str(imagehash.phash(image)), 16)
        baseline = time.perf_counter() - started
        started = time.perf_counter()
        draft_one = {path: image_hash(path) for path in paths}
        one_worker = time.perf_counter() - started
        started = time.perf_counter()
        hashes, errors = hash_files(paths, workers=os.cpu_count())
        pool = time.perf_counter() - started
    assert not errors and hashes == {str(Path(p).resolve()): v for p, v in draft_one.items()}
    apart = [bin(full[p] ^ draft_one[p]).count("1") for p in paths]
    rates = {
        "full_decode_1_process": args.hash_images / baseline,
        "draft_decode_1_process": args.hash_images / one_worker,
        f"draft_decode_{os.cpu_count()}_processes": args.hash_images / pool,
    }
    print(f"perceptual hashing, {args.hash_images:,} photo-like 640x480 JPEGs (q90):")
    for label, rate in rates.items():
        print(f"  {label:<28}{rate:8.1f} images/s ({rate / rates['full_decode_1_process']:.2f}x)")
    print(f"  draft vs full decode: hashes {max(apart)} bits apart at most (mean {sum(apart) / len(apart):.2f})")
    rng = random.Random(args.seed)
    index = {str(i): rng.getrandbits(64) for i in range(400_000)}
    queries = {f"q{i}": rng.getrandbits(64) for i in range(2_000)}
    started = time.perf_counter()
    near_duplicates(queries, index)
    search = time.perf_counter() - started
    print(f"  near-duplicate search: 2,000 x 400,000 hashes in {search:.1f} s ({8e8 / search / 1e6:.0f}M pairs/s)")
    return {
        "search_2000_x_400000_s": round(search, 2),
        "images": args.hash_images,
        "images_per_s": {label: round(rate, 1) for label, rate in rates.items()},
        "speedup": round(rates[f"draft_decode_{os.cpu_count()}_processes"] / rates["full_decode_1_process"], 2),
        "draft_vs_full_bits": {"max": max(apart), "mean": round(sum(apart) / len(apart), 2)},
    }


class ServerProcess:
    """A :class:`FaultServer` in a process of its own, as a remote server would be: in this one it would share the
    client's GIL, and the benchmark would measure the two together. ``log()`` asks it what it was asked."""

    def __init__(self, files: dict[str, bytes], latency: float) -> None:
        context = multiprocessing.get_context("fork")  # the files travel by fork, not by pickle
        self._pipe, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, files, latency), daemon=True)
        self.port = 0

    def __enter__(self) -> ServerProcess:
        self._process.start()
        self.port = self._pipe.recv()
        return self

    def __exit__(self, *exc: object) -> None:
        self._pipe.send("stop")
        self._process.join(timeout=10)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def log(self) -> list[tuple[str, int | None, str]]:
        """(path, status, client address) of every request so far."""
        self._pipe.send("log")
        return self._pipe.recv()


def _serve(pipe: Any, files: dict[str, bytes], latency: float) -> None:
    with FaultServer(files, latency=latency) as server:
        pipe.send(server.port)
        while (command := pipe.recv()) == "log":
            pipe.send([(r.path, r.status, r.client) for r in server.log])
        assert command == "stop"


def timed_fetch(
    jobs: list[FetchJob], folder: Path, files: dict[str, bytes], server: ServerProcess, **options: Any
) -> dict[str, Any]:
    """Fetch ``jobs`` into ``folder`` (timed), then check every file against the server's bytes, and that the
    server saw one request for each, from 127.0.0.1."""
    before = len(server.log())
    started = time.perf_counter()
    outcomes: list[FetchOutcome] = fetch_files(jobs, folder, **options)
    seconds = time.perf_counter() - started
    bad = [o for o in outcomes if o.status != "downloaded"]
    if bad:
        raise SystemExit(f"{len(bad)} files not downloaded, e.g. {bad[0]}")
    for job in jobs:
        if (folder / job.name).read_bytes() != files[job.name]:
            raise SystemExit(f"{job.name} differs from what the server holds")
    requests = server.log()[before:]
    if sorted(path for path, _, _ in requests) != sorted("/" + job.name for job in jobs):
        raise SystemExit(f"{len(requests)} requests for {len(jobs)} files")
    if {status for _, status, _ in requests} != {200} or {client for _, _, client in requests} != {"127.0.0.1"}:
        raise SystemExit("a request that did not get a 200, or not from 127.0.0.1")
    if sum(o.attempts for o in outcomes) != len(jobs):
        raise SystemExit("the outcomes count more requests than the server saw")
    received = sum(o.received for o in outcomes)
    return {
        "files": len(jobs),
        "seconds": round(seconds, 3),
        "files_per_s": round(len(jobs) / seconds, 1),
        "mb_per_s": round(received / seconds / 1e6, 3),
        "bytes": received,
    }


if __name__ == "__main__":
    main()
