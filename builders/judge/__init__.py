"""The CaD-QA judge (paper §4): an LLM rates a predicted answer against the reference answer, 0-5.

What is known of the original: Mixtral-8x7B-Instruct gets the question, the reference answer and the
predicted answer and returns a rating from 0 to 5 (max 20 new tokens, greedy); the metric is the mean
rating (CaD-VI 7B 3.29, LLaVA-1.5 7B 2.54). Its prompt and code were never released, so the wording
(``prompts/templates/judge_cadqa.jinja``) and the parser here are ours; the template's sha256 goes into
every judgement record so ratings from different wordings are never mixed unknowingly.

One core, :func:`judge` (a :class:`JudgeTask` on the one generation runner), serves every caller: the
``cadvi judge`` command through any :mod:`builders.llm` backend, and the lmms-eval task through a
backend over lmms-eval's own judge server (``eval_tasks/cadqa``; ``builders`` never imports lmms-eval).

A judgement that cannot be read as a single rating is asked again (once by default), then recorded as
*invalid*: it is excluded from the mean and counted, never scored 0. Scoring it 0 would make a broken or
misconfigured judge look like a bad model; excluding it silently would hide the breakage. A judge server
that does not answer is no judgement at all: its items stay to do.
"""

from builders.judge.predictions import read_predictions
from builders.judge.rating import DEFAULT_JUDGE_MODEL, JUDGE_SAMPLING, JUDGE_TEMPLATE, RATINGS, parse_rating
from builders.judge.summary import JudgeReport, RatingSummary
from builders.judge.task import JudgeItem, Judgement, JudgeTask, identity_folder, judge, judgements

__all__ = [
    "DEFAULT_JUDGE_MODEL",
    "JUDGE_SAMPLING",
    "JUDGE_TEMPLATE",
    "RATINGS",
    "JudgeItem",
    "JudgeReport",
    "JudgeTask",
    "Judgement",
    "RatingSummary",
    "identity_folder",
    "judge",
    "judgements",
    "parse_rating",
    "read_predictions",
]
