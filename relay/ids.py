"""Identifiers that sort by creation time, so lists can page by id."""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32 keeps the order of the numbers


def _base32(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


_last = (0, 0)


def new_id(prefix: str, now: float | None = None) -> str:
    """`prefix_` + 10 chars of milliseconds + 16 random chars (a ULID).

    Within one millisecond the random part counts up, so ids made by one process keep
    their creation order (lists page by id).
    """
    global _last
    millis = int((time.time() if now is None else now) * 1000)
    random_part = secrets.randbits(80)
    if millis <= _last[0]:
        millis, random_part = _last[0], (_last[1] + 1) % (1 << 80)
    _last = (millis, random_part)
    return f"{prefix}_{_base32(millis, 10)}{_base32(random_part, 16)}"
