"""CaD-Inst: 349K two-image instruction conversations (phase 1: 278K, phase 2: 71K).

>>> import cadinst
>>> ds = cadinst.load("path/or/org/repo", config="phase1", image_roots=["/data/images"])
"""

from cadinst.builder import CONFIGS, FEATURES, CadInst, load, source_files
from cadinst.llava import to_llava_json

__all__ = ["CONFIGS", "FEATURES", "CadInst", "load", "source_files", "to_llava_json"]
