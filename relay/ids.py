"""Identifiers that sort by creation time, so lists can page by id."""

from __future__ import annotations

import re
import secrets
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32 keeps the order of the numbers

# The shapes of the ids the relay issues; anything else names nothing (and must never reach
# Redis as part of a key name). Delivery ids come from poll.lua: `msg_` + hex milliseconds
# (11 digits until the year 2527) + an 8-digit hex sequence.
SUBSCRIPTION_ID = re.compile(f"sub_[{_ALPHABET}]{{26}}")
DELIVERY_ID = re.compile(r"msg_[0-9a-f]{19,24}")


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
