"""SEED-Bench video with one or two frames (CaD-VI Table 3): see ``utils.py``.

A package (unlike lmms-eval's usual task folders) so that ``utils.py`` ships with a wheel and
``python -m eval_tasks.cadvi_seed_video.utils`` extracts frames.
"""
