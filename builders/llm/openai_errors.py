"""What an ``openai`` client error means: the server failed (retry it, count no attempt), or it answered about
the request (do not retry); and how to say so in one line without the image bytes a server may echo back."""

from __future__ import annotations

import re

from builders.llm.content import redact_data_uris

RETRY_STATUS = frozenset({408, 409, 429})  # plus every 5xx
# How servers say a request field is unknown (transformers serve: "Unexpected fields in the request";
# pydantic-based servers: "Extra inputs are not permitted"; OpenAI: "Unrecognized request argument").
_UNKNOWN_FIELD = re.compile(r"unexpected field|unrecognized|unknown (field|param|arg)|extra|not permitted", re.I)


def is_transport_error(error: BaseException) -> bool:
    """Whether an ``openai`` client error means the server failed (refused, dropped, timed out, 408/409/429,
    5xx), not that it refused the request: the one rule for retrying, and for "not a rejected output"."""
    import openai

    if isinstance(error, openai.APIConnectionError):  # refused, dropped, timed out (APITimeoutError)
        return True
    if isinstance(error, openai.APIStatusError):
        return error.status_code in RETRY_STATUS or error.status_code >= 500
    # Plain HTTP clients (lmms-eval's requests fallback): a connection that failed or timed out.
    status = getattr(getattr(error, "response", None), "status_code", None)
    if isinstance(status, int):
        return status in RETRY_STATUS or status >= 500
    return isinstance(error, ConnectionError | TimeoutError) or type(error).__name__ in ("ConnectionError", "Timeout")


def is_answer(error: Exception) -> bool:
    """Whether the server answered the request itself (a 4xx/5xx about it), not that it is busy or away."""
    import openai

    return isinstance(error, openai.APIStatusError) and error.status_code not in RETRY_STATUS


def retry_after(error: Exception) -> float | None:
    response = getattr(error, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:  # an HTTP date: rare enough to fall back to our own backoff
        return None


def rejects_field(error: Exception, field: str) -> bool:
    """A 400/422 saying ``field`` is not part of the API, as opposed to a bad value in it (an invalid schema)."""
    text = error_text(error)
    return field in text and _UNKNOWN_FIELD.search(text) is not None


def error_text(error: Exception) -> str:
    """The message with the server's answer (openai 3 leaves the response body out of ``str(error)``), with
    data URIs cut out: a server that echoes the request (a 422's "input") would otherwise log the images."""
    text = str(error)
    body = getattr(error, "body", None)
    if body is not None and str(body) not in text:
        text = f"{text} - {body}"
    return redact_data_uris(text)


def error_summary(error: Exception) -> str:
    """One line for logs and ``Result.error``: the error's class, status and the first 300 characters."""
    status = getattr(error, "status_code", None)
    lines = error_text(error).splitlines()
    return f"{type(error).__name__}{f' {status}' if status else ''}: {lines[0][:300] if lines else ''}"
