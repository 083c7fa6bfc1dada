"""Phase 2 (paper §3.3): a multimodal model in the loop refines difference-only annotations into CaD summaries.

:mod:`.sources` reads the annotation sources into one item per image pair (:mod:`.cgd` for MIMIC-IT CGD,
:mod:`.cauldron` for the_cauldron ``mimic_cgd``, JSON Lines itself; :mod:`.items` holds what they share);
:mod:`.task` is the generation task the one runner runs; ``builders.export.export_phase2`` writes the
release's phase-2 shape, which ``cadinst`` reads as config ``phase2``.
"""
