"""Shared machinery for the release datasets (CaD-Inst, CaD-QA): validate, resolve, publish."""
