"""Where the original CaD-VI release lives, and how to cite the paper."""

HUB_REPO = "wlin21at/CaD-Inst"
# The original release at the commit that gave the JSON files their final names.
HUB_REVISION = "b77df80908bf650b94b53513354302f628e3eb76"
# sha256 of the official json_files/CaD_QA_eval.jsonl (7,520 questions), at HUB_REVISION and in the authors'
# GitHub repository: a build from a file with these bytes is the official benchmark.
CADQA_SHA256 = "4f66b8929dcff307f9ab499691484f4eabfff7e761cc71eedf61d9c80b851a5f"
CADQA_ROWS = 7520

CITATION = """@article{lin2024comparison,
  title   = {Comparison Visual Instruction Tuning},
  author  = {Lin, Wei and Mirza, Muhammad Jehanzeb and Doveh, Sivan and Feris, Rogerio and Giryes, Raja and
             Hochreiter, Sepp and Karlinsky, Leonid},
  journal = {arXiv preprint arXiv:2406.09240},
  year    = {2024}
}"""


def package_version() -> str:
    """The installed cad-vi version, recorded in cards and run manifests."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cad-vi")
    except PackageNotFoundError:
        return "unknown"
