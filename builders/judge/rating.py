"""Reading a judge's reply as a 0-5 rating, strictly: a number in a list or an image name is no rating."""

from __future__ import annotations

import re

from builders.llm.base import Sampling

JUDGE_TEMPLATE = "judge_cadqa.jinja"
DEFAULT_JUDGE_MODEL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
# The paper: max 20 new tokens. Greedy so that the same answer always gets the same rating.
JUDGE_SAMPLING = Sampling(max_tokens=20, temperature=0.0)
RATINGS: tuple[int, ...] = (0, 1, 2, 3, 4, 5)

# The scale echoed back ("Rating (0-5): 4", "on a scale from 0 to 5") is not a candidate rating.
_SCALE_ECHO = re.compile(r"\(?\s*(?:from\s+)?\b0\s*(?:-|–|—|to)\s*5\b\s*\)?", re.IGNORECASE)
# One rating: "4", "4.0", "[3]", "4/5", "4 (out of 5)"; sign and fraction are read so they can be refused.
_RATING = (
    r"[\[(]?\s*(?P<sign>[-−]\s?)?(?P<int>\d+)(?:\.(?P<frac>\d+))?"
    r"(?:\s*\(?\s*(?:/|out\s+of)\s*(?P<den>\d+)(?:\.\d+)?\s*\)?)?\s*[\])]?(?![\w.]*\d)"
)
_LABEL = r"(?:(?:the|my|final)\s+)*\b(?:rating|score|grade)\b"
# A first line that is a rating and nothing else: "4", "4.", "**4**", "Rating: 4", "The rating is 4.", "4/5".
_RATING_LINE = re.compile(rf"(?:{_LABEL}\s*(?:[:=]|is)?\s*)?{_RATING}\s*[.!]?", re.IGNORECASE)
# A rating stated anywhere: "Rating: 2", "The score is 4", "score of 4", "I rate it 3 (out of 5)".
_LABELLED = re.compile(
    rf"(?:{_LABEL}\s*(?:[:=]|is|of|would\s+be|should\s+be)|\brate\s+(?:it|this(?:\s+answer)?|the\s+(?:predicted\s+)?"
    rf"answer)?\s*(?:a|as|at)?)\s*{_RATING}",
    re.IGNORECASE,
)
# A number opening the first line ("4. Rating: 3", "1. The answer..."): not a verdict by itself, but a
# rating stated elsewhere must agree with it.
_LEADING_NUMBER = re.compile(_RATING)


def parse_rating(text: str | None) -> int | None:
    """The 0-5 rating of a judge's reply, or None unless the reply is a rating in an accepted form.

    Accepted: a first line that is a rating and nothing else (``4``, ``4.``, ``**4**``, ``[3]``, ``4/5``,
    ``Rating: 4``, ``Score: 4.0``, ``The rating is 4.``), optionally followed by an explanation on the
    next lines; or a rating stated with its label (``... Rating: 2``, ``I would rate it 3 (out of 5).``).
    Every rating the reply states must be the same, in range, on the 0-5 scale, and agree with a number
    that opens the reply. Rejected (None): no such form (``Commonalities:\nDifferences:\n1.``, where
    ``1.`` is a list number, or ``1. The answer ...``); out of range (``6``, ``-1``); another scale
    (``7/10``); a fraction (``3.5``); disagreement (``3 or 4``, ``4. Rating: 3``). The scale repeated
    back ("0-5", "0 to 5") is ignored.
    """
    if not text:
        return None
    text = _SCALE_ECHO.sub(" ", text.replace("**", "").replace("__", "").replace("`", ""))
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return None
    verdicts = [match for match in _LABELLED.finditer(text)]
    whole_line = _RATING_LINE.fullmatch(lines[0])
    if whole_line:
        verdicts.append(whole_line)
    if not verdicts:
        return None
    values = {_rating_value(match) for match in verdicts}
    leading = _LEADING_NUMBER.match(lines[0])
    if leading and not whole_line:
        values.add(_rating_value(leading))
    if len(values) != 1 or None in values:
        return None
    return values.pop()


def _rating_value(match: re.Match[str]) -> int | None:
    if match["sign"] or (match["frac"] and int(match["frac"]) != 0):
        return None
    if match["den"] is not None and int(match["den"]) != RATINGS[-1]:
        return None
    value = int(match["int"])
    return value if value in RATINGS else None
