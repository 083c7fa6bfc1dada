"""What each benchmark is: its pinned question file, its answers and where its images live.

Question files: the official ones of the original release (GitHub ``wlin-at/CaD-VI``, folder
``eval_json_files/``, at :data:`PINNED_COMMIT`), and CaD-QA's from the Hub dataset ``wlin21at/CaD-Inst``;
every one a :class:`eval_tasks.pinned.PinnedFile` with its published sha256.

Image layouts (the same table is in ``eval_tasks/README.md``); the image root is
``CADVI_<NAME>_IMAGE_ROOT`` or ``$CADVI_EVAL_IMAGE_ROOT/<name>``:

========== ============================= ============================== =========================================
name       names in the question file    files under the image root     where the images come from
========== ============================= ============================== =========================================
bison      COCO_val2014_000000143961.jpg the same names, flat           COCO 2014 val (BISON is built on it):
                                                                        point the root at ``val2014/``
svo_probes 05617.jpg                     the same names, flat           SVO-Probes publishes image URLs only; the
                                                                        5-digit names are the CaD-VI authors' own
                                                                        numbering, with no published mapping that
                                                                        we could find (may not be reproducible)
nlvr2      test1-463-0-img0.png          the same names, flat           NLVR2 ``test1`` images (NLVR2 authors)
eqben      eqbensd/844/image0.png        <subset>/<id>/image{0,1}.png   EqBen release (Wang et al., ICCV 2023):
                                                                        eqbensd, eqbenag, eqbengebc,
                                                                        eqbenkubric_{attr,cnt,loc}
cola       0_2390970.jpg                 <group>_<id>.jpg, or <id>.jpg, COLA multi-object set (Ray et al., 2023),
                                         or VG_100K{,_2}/<id>.jpg       Visual Genome images; that <id> is the VG
                                                                        image id is our belief, not documented
cadqa      VG_100K_2/2406825.jpg         the same relative paths        Visual Genome (VG_100K, VG_100K_2)
========== ============================= ============================== =========================================
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from builders.release.origin import CADQA_ROWS, CADQA_SHA256, HUB_REPO, HUB_REVISION
from eval_tasks.pinned import HUB, PinnedFile

PINNED_COMMIT = "c8ae4101d28db5668b2e245f1586456adf97d344"
GITHUB_REPO = "wlin-at/CaD-VI"
GITHUB_FOLDER = "eval_json_files"
DEFAULT_BASE_URL = f"https://raw.githubusercontent.com/{GITHUB_REPO}/{PINNED_COMMIT}/{GITHUB_FOLDER}/"


@dataclass(frozen=True)
class Benchmark:
    """One official question file and where its images live."""

    name: str
    source: PinnedFile
    rows: int
    answers: tuple[str, ...] | None
    images: str
    alternative_names: Callable[[str], Sequence[str]] | None = field(default=None, compare=False, repr=False)

    @property
    def file(self) -> str:
        """The question file's name (also its name under ``CADVI_EVAL_DATA_DIR``)."""
        return self.source.name

    @property
    def sha256(self) -> str | None:
        return self.source.sha256

    @property
    def image_env(self) -> str:
        """``CADVI_<NAME>_IMAGE_ROOT``, e.g. ``CADVI_SVO_PROBES_IMAGE_ROOT``."""
        return f"CADVI_{self.name.upper()}_IMAGE_ROOT"

    def candidate_names(self, name: str) -> list[str]:
        """The names tried in the image root, the official one first."""
        extra = self.alternative_names(name) if self.alternative_names else ()
        return [name, *(alternative for alternative in extra if alternative != name)]


def _official(name: str, file: str, sha256: str) -> PinnedFile:
    """A question file of the original GitHub release at the pinned commit."""
    return PinnedFile(name, GITHUB_REPO, f"{GITHUB_FOLDER}/{file}", PINNED_COMMIT, sha256)


def _cola_names(name: str) -> list[str]:
    """COLA's ``<group>_<vg id>.jpg`` also found as Visual Genome's own ``<vg id>.jpg``."""
    match = re.fullmatch(r"\d+_(\d+\.jpg)", name)
    if not match:
        return []
    vg_name = match.group(1)
    return [vg_name, f"VG_100K/{vg_name}", f"VG_100K_2/{vg_name}"]


BENCHMARKS: dict[str, Benchmark] = {
    benchmark.name: benchmark
    for benchmark in (
        Benchmark(
            "bison",
            _official("bison", "BISON.jsonl", "3253673dfe0f9c2205e8f1091d2ad0aa91bb20e02cdf0761b1e0a2e1a820545f"),
            150,
            ("A", "B"),
            "COCO 2014 val images (folder val2014/)",
        ),
        Benchmark(
            "svo_probes",
            _official(
                "svo_probes", "SVO_Probes.jsonl", "a3e3a87a32a387b32c09f0e59e974615d2bd8a686ae82f0db2e470b832864376"
            ),
            1500,
            ("A", "B"),
            "SVO-Probes images (downloaded from the dataset's URLs; 5-digit names as in the question file)",
        ),
        Benchmark(
            "nlvr2",
            _official("nlvr2", "NLVR2.jsonl", "493a5102d44d17e52ca444abcdc56511242b552595e295a877e533bb5b39bf77"),
            150,
            ("True", "False"),
            "NLVR2 test1 images (folder test1/, flat)",
        ),
        Benchmark(
            "eqben",
            _official("eqben", "EQBEN.jsonl", "4b3794b3b8ac647eb7174ef9105babd20ac4c86a4c419848e4fc54d6d28f791c"),
            240,
            ("A", "B"),
            "EqBen images: the folder holding eqbensd/, eqbenag/, eqbengebc/, eqbenkubric_*/",
        ),
        Benchmark(
            "cola",
            _official("cola", "COLA.jsonl", "59f2b5b0f2661b8bf77f9686a5020497b87425fd2c5d4c458fa2af69a4bbb97a"),
            420,
            ("A", "B"),
            "COLA multi-object images (Visual Genome), named <group>_<vg id>.jpg or <vg id>.jpg",
            _cola_names,
        ),
        Benchmark(
            "cadqa",
            PinnedFile("cadqa", HUB_REPO, "json_files/CaD_QA_eval.jsonl", HUB_REVISION, CADQA_SHA256, host=HUB),
            CADQA_ROWS,
            None,
            "Visual Genome images (the folder holding VG_100K/ and VG_100K_2/)",
        ),
    )
}


def benchmark(name: str) -> Benchmark:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}") from None
