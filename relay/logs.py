"""Logging: one JSON object a line for machines, plain text on a terminal."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

LOG_MESSAGE_CAP = 2048  # characters of one log message
# Context fields that call sites pass with `extra=`; they become JSON keys.
CONTEXT_FIELDS = ("job_id", "subscription_id", "webhook_id", "status", "duration_ms",
                  "status_code", "attempt", "event_type")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exc"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class Redact(logging.Filter):
    """Last line of defence: no configured secret ever reaches a log line."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if len(s) >= 6)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            if any(secret in message for secret in self.secrets):
                record.msg, record.args = self.clean(message), ()
            if record.exc_info:
                record.exc_text = self.clean(logging.Formatter().formatException(record.exc_info))
            if record.stack_info:
                record.stack_info = self.clean(record.stack_info)
        return True

    def clean(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return text


class CapMessages(logging.Filter):
    """No log line carries an unbounded text (a receiver's Location header, an upstream's
    status): messages past `cap` characters are cut, saying how much was left out."""

    def __init__(self, cap: int = LOG_MESSAGE_CAP) -> None:
        super().__init__()
        self.cap = cap

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if len(message) > self.cap:
            left_out = len(message) - self.cap
            record.msg, record.args = f"{message[: self.cap]}... ({left_out} more characters)", ()
        return True


def configure_logging(level: str, fmt: str, secrets: tuple[str, ...] = ()) -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if use_json
        else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    handler.addFilter(Redact(secrets))
    handler.addFilter(CapMessages())  # after Redact: a secret cut in two would not match
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # arq logs every job run; our own lines say more, so it speaks only of problems.
    for noisy in ("httpx", "httpcore", "arq.worker", "arq.jobs"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
