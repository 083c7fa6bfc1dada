"""``cadvi audit contamination``: benchmark images a training set has seen, and the scores without them.

:mod:`.overlap` finds the seen images (canonical identity, perceptual hash), :mod:`.rescore` recomputes a
benchmark's score from an lmms-eval samples file without the contaminated questions, :mod:`.report` writes
``contamination.json`` and ``contamination.md``.
"""
