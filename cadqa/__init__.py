"""CaD-QA: 7,520 open questions over Visual Genome image pairs (split ``test``).

>>> import cadqa
>>> ds = cadqa.load("CaD_QA_eval.jsonl", image_roots=["/data/visual_genome"])
"""

from cadqa.builder import FEATURES, PAIR_PREFIX, CadQA, load, source_files

__all__ = ["FEATURES", "PAIR_PREFIX", "CadQA", "load", "source_files"]
