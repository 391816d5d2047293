"""Strict JSON: what every webhook body and every API response is (RFC 8259 in valid UTF-8).

Python's json module is lenient both ways: it reads and writes `NaN` and `Infinity`, reads
`1e999` as infinity, and carries lone surrogates (`"\\ud800"`, or the raw bytes `ED A0 80`)
into strings that no UTF-8 encoder can write. JavaScript's and Go's parsers reject the first;
the second makes the response fail to render at all. So: tenants' input that is not strict is
refused (relay/api/validation.py); Varg's is cleaned (`clean`), since a job must still be
relayed when one of its fields is odd; and API responses clean anything that slipped through
rather than answer 500 for as long as the record is kept (relay/api/render.py).
"""

from __future__ import annotations

import json
from typing import Any


def is_strict(value: Any) -> bool:
    """Whether `value` can be written as strict JSON (no NaN/Infinity, no lone surrogate)."""
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        return False
    return True


def clean(value: Any) -> Any:
    """`value` with NaN and ±Infinity as null and each lone surrogate as U+FFFD."""
    text = json.dumps(value, ensure_ascii=False)  # NaN -> NaN, inf -> Infinity
    # UTF-16 pairs surrogates that belong together and replaces the rest.
    text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return json.loads(text, parse_constant=_null)


def loads_lenient(content: bytes) -> Any:
    """Parse bytes from an upstream that should send strict JSON but may not, into a value
    that is: invalid UTF-8 and lone surrogates become U+FFFD, non-finite numbers null.
    Raises ValueError when it is not JSON at all."""
    return clean(json.loads(content.decode("utf-8-sig", errors="replace")))


def _null(name: str) -> None:
    return None
