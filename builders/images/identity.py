"""What image a file name is: canonical identities across the naming schemes of the sources.

The same COCO photo is ``COCO_val2014_000000143961.jpg`` in BISON, ``000000143961.jpg`` in COCO 2017 and
CaD-Inst phase 1/2, ``coco/train2017/000000143961.jpg`` in the LLaVA-1.5 mix and ``CGD_IMG_000000143961`` in
MIMIC-IT CGD: all ``coco:143961``. A Visual Genome image is ``VG_100K/2550.jpg`` in CaD-QA, ``0_2550.jpg`` in
COLA and ``gqa/images/2550.jpg`` in GQA: ``vg:2550``. Visual Genome's ``image_data.json`` links ~51K of its
images to COCO (``coco_id``) and to Flickr (``flickr_id``: the Flickr photo id, which is also the Flickr30k
file name), so identities are joined through :class:`Links` before two sets are compared.

A bare number means different things in different datasets (a VG id in CaD-QA, a Flickr id in phase 1, the
CaD-VI authors' own SVO-Probes numbering), so names are read under the :data:`SCHEMES` of their dataset; a
name no scheme of its dataset knows is an error, never a guess.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

__all__ = ["DATASET_SCHEMES", "SCHEMES", "Links", "UnknownImageError", "identify", "schemes_of"]


class UnknownImageError(ValueError):
    """A file name that none of its dataset's naming schemes knows."""


@dataclass(frozen=True)
class Scheme:
    """One naming scheme: a pattern over the file name (or its path) and how it maps to ``source:id``."""

    name: str
    source: str
    pattern: re.Pattern[str]
    on_path: bool = False  # match the whole relative path, not only the file name

    def identify(self, name: str) -> str | None:
        text = name if self.on_path else PurePosixPath(name).name
        match = self.pattern.fullmatch(text)
        if match is None:
            return None
        value = match.group("id")
        return f"{self.source}:{int(value) if value.isdigit() and self.source in _NUMERIC else value}"


_NUMERIC = {"coco", "vg", "flickr"}  # ids compared as numbers: "000000143961" and "143961" are one id
_IMAGE = r"\.(?:jpe?g|png)"

SCHEMES: dict[str, Scheme] = {
    scheme.name: scheme
    for scheme in (
        # COCO 2014/2015 names, 2017 names (12 digits), MIMIC-IT CGD ids (with or without an extension).
        Scheme("coco2014", "coco", re.compile(rf"COCO_(?:train|val|test)20(?:14|15)_(?P<id>\d{{12}}){_IMAGE}")),
        Scheme("coco2017", "coco", re.compile(rf"(?P<id>\d{{12}}){_IMAGE}")),
        Scheme("cgd", "coco", re.compile(rf"CGD_IMG_(?P<id>\d+)(?:{_IMAGE})?")),
        # Visual Genome: VG_100K/2550.jpg, VG_100K_2/2406825.jpg, GQA's gqa/images/2354786.jpg, or a bare id.
        Scheme("vg", "vg", re.compile(rf"(?:.*/)?(?:VG_100K(?:_2)?|gqa/images)/(?P<id>\d+){_IMAGE}"), True),
        # COLA: <group>_<vg id>.jpg.
        Scheme("cola", "vg", re.compile(rf"\d+_(?P<id>\d+){_IMAGE}")),
        # Open Images (also TextVQA's images): 16 hex digits.
        Scheme("openimages", "openimages", re.compile(rf"(?P<id>[0-9a-f]{{16}}){_IMAGE}")),
        # ADE20K: ADE_train_00009414.jpg, ADE_val_00000001.jpg.
        Scheme("ade20k", "ade20k", re.compile(rf"ADE_(?P<id>(?:train|val)_\d{{8}}){_IMAGE}")),
        # Flickr30k: the Flickr photo id (no zero padding).
        Scheme("flickr30k", "flickr", re.compile(rf"(?P<id>[1-9]\d*){_IMAGE}")),
        # NLVR2: test1-463-0-img0.png (split-set-pair-image).
        Scheme("nlvr2", "nlvr2", re.compile(r"(?P<id>(?:train|dev|test1|test2)-\d+-\d+-img[01])\.png")),
        # EqBen: eqbensd/844/image0.png (subset/sample/image).
        Scheme("eqben", "eqben", re.compile(r"(?P<id>eqben\w+/.+)\.(?:png|jpe?g)"), True),
        # SVO-Probes: the CaD-VI authors' own 5-digit numbering, known to nothing else.
        Scheme("svo", "svo", re.compile(rf"(?P<id>\d{{5}}){_IMAGE}")),
        # OCR-VQA (LLaVA-1.5 mix): ocr_vqa/images/<asin>.jpg.
        Scheme("ocrvqa", "ocrvqa", re.compile(rf"(?:.*/)?ocr_vqa/images/(?P<id>[^/]+){_IMAGE}"), True),
    )
}

# The schemes each dataset's names are read under, tried in order (the first that matches wins).
DATASET_SCHEMES: dict[str, tuple[str, ...]] = {
    "cadinst-phase1": ("coco2017", "openimages", "ade20k", "flickr30k"),
    "cadinst-phase2": ("coco2017", "coco2014", "cgd"),
    "cadqa": ("vg",),
    "bison": ("coco2014",),
    "svo_probes": ("svo",),
    "nlvr2": ("nlvr2",),
    "eqben": ("eqben",),
    "cola": ("cola", "vg"),
    # A LLaVA-format training file (e.g. the LLaVA-1.5 665K mix): coco/..., gqa/images/..., vg/VG_100K/...,
    # textvqa/train_images/<open images id>.jpg, ocr_vqa/images/...; bare names as in phase 1.
    "llava": ("coco2014", "coco2017", "ocrvqa", "vg", "openimages", "ade20k", "flickr30k"),
}


def schemes_of(dataset: str) -> tuple[Scheme, ...]:
    try:
        return tuple(SCHEMES[name] for name in DATASET_SCHEMES[dataset])
    except KeyError:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(DATASET_SCHEMES)}") from None


def identify(name: str, schemes: Sequence[Scheme]) -> str:
    """The canonical ``source:id`` of file ``name`` under ``schemes``, or :class:`UnknownImageError`."""
    for scheme in schemes:
        identity = scheme.identify(name)
        if identity is not None:
            return identity
    known = ", ".join(scheme.name for scheme in schemes)
    raise UnknownImageError(f"image name {name!r} matches none of the naming schemes {known}")


class Links:
    """Identities known to be the same image (VG <-> COCO, VG <-> Flickr), joined by union-find.

    ``canonical(identity)`` is one representative of its group, so two identities name the same image
    exactly when their representatives are equal. Without links every identity is its own group.
    """

    def __init__(self, pairs: Iterable[tuple[str, str]] = ()) -> None:
        self._parent: dict[str, str] = {}
        self.count = 0
        for first, second in pairs:
            self.join(first, second)

    def _find(self, identity: str) -> str:
        parent = self._parent
        root = identity
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(identity, identity) != root:  # path compression
            parent[identity], identity = root, parent[identity]
        return root

    def join(self, first: str, second: str) -> None:
        a, b = self._find(first), self._find(second)
        if a != b:
            self._parent[max(a, b)] = min(a, b)  # deterministic representative: the smallest identity
            self.count += 1

    def canonical(self, identity: str) -> str:
        return self._find(identity)
