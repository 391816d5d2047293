"""Settings read from the environment, built by a factory (never at import time).

Every variable of the public contract is here with its default; the extensions are the
`RELAY_POLL_*`, `RELAY_STREAMS_*`, `RELAY_STREAM_IDLE_TIMEOUT`, `RELAY_LOG_*`,
`RELAY_METRICS_PORT`, `RELAY_SWEEP_INTERVAL` and `RELAY_DELIVERY_CONCURRENCY` variables,
documented in the README. A wrong value raises `SettingsError` naming the variable, which the
CLI prints as one line before exiting.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

T = TypeVar("T")

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def parse_duration(text: str) -> float:
    """`5s`, `5m`, `2h`, `7d`, `250ms`, or bare seconds, to seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 5s, 5m, 2h, 7d)")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def parse_schedule(text: str) -> tuple[float, ...]:
    delays = tuple(parse_duration(part) for part in text.split(",") if part.strip())
    if not delays:
        raise ValueError("the retry schedule needs at least one delay")
    return delays


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {text!r} (use true or false)")


def parse_positive_duration(text: str) -> float:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"must be longer than zero, got {text!r}")
    return seconds


def parse_upstream_timeout(text: str) -> float:
    """A whole upstream request's deadline: it must end well inside the 30 s poll lease."""
    seconds = parse_positive_duration(text)
    if seconds > 20:
        raise ValueError(f"must be at most 20s (a poll lease lasts 30s), got {text!r}")
    return seconds


def parse_positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")
    return value


def parse_secrets(text: str) -> tuple[str, ...]:
    if "," in text:  # never in base64: the secrets were separated the way tokens are
        raise ValueError("separate secrets with spaces, not commas")
    secrets = tuple(text.split())
    for secret in secrets:
        if not secret.startswith("whsec_"):
            raise ValueError("each secret must start with whsec_")
        try:
            key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except binascii.Error:
            raise ValueError("the part after whsec_ must be base64") from None
        if len(key) < 16:
            raise ValueError("each secret needs at least 16 bytes of key")
    return secrets


def parse_sweep_interval(text: str) -> int:
    """Whole seconds from 1 to 60: the sweep is an arq cron job, which runs on whole seconds."""
    seconds = parse_duration(text)
    if seconds != int(seconds) or not 1 <= seconds <= 60:
        raise ValueError(f"must be whole seconds from 1s to 60s, got {text!r}")
    return int(seconds)


def parse_credential(text: str) -> str:
    """A key or token that goes into an Authorization header: no inner spaces or controls."""
    value = text.strip()
    if not value.isascii() or not value.isprintable() or " " in value:
        raise ValueError("must be printable ASCII without spaces")
    return value


def parse_tokens(text: str) -> tuple[str, ...]:
    tokens = [token.strip() for token in text.split(",") if token.strip()]
    if any(" " in token for token in tokens):
        raise ValueError("separate tokens with commas, not spaces")
    return tuple(parse_credential(token) for token in tokens)


def parse_port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"must be a port from 0 to 65535, got {value}")
    return value


def parse_url(text: str) -> str:
    if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", text):
        raise ValueError(f"not an http(s) URL: {text!r}")
    return text.rstrip("/")


def parse_redis_url(text: str) -> str:
    if not re.match(r"^(redis|rediss|unix)://", text):
        raise ValueError("must start with redis://, rediss:// or unix://")
    return text


def parse_log_level(text: str) -> str:
    level = text.strip().upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("use DEBUG, INFO, WARNING or ERROR")
    return level


def parse_choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError("use " + " or ".join(choices))
        return value

    return parse


parse_stream_mode = parse_choice("auto", "off")
parse_api_version = parse_choice("v1", "v2")


def parse_webhook_secret(text: str) -> str | None:
    """The secret Varg signs its webhooks with: used as given, as Varg's own SDK does."""
    value = parse_credential(text)
    if value and len(value) < 16:
        raise ValueError("must be at least 16 characters")
    return value or None


def parse_log_format(text: str) -> str:
    value = text.strip().lower()
    if value not in {"auto", "json", "text"}:
        raise ValueError("use auto, json or text")
    return value


def _setting(env: str, default: str | None, parse: Callable[[str], Any], help: str) -> Any:
    # Secrets stay out of repr(), so printing settings never shows them.
    secret = env in ("VARG_API_KEY", "RELAY_API_TOKENS", "RELAY_SIGNING_SECRETS",
                     "VARG_WEBHOOK_SECRET")
    meta = {"env": env, "default": default, "parse": parse, "help": help}
    return field(metadata=meta, repr=not secret)


@dataclass(frozen=True)
class Settings:
    varg_api_url: str = _setting(
        "VARG_API_URL", "https://api.varg.ai/v1", parse_url, "upstream base URL"
    )
    varg_api_key: str | None = _setting(
        "VARG_API_KEY", None, parse_credential,
        "upstream key; never logged, never returned by the API",
    )
    varg_api_version: str = _setting(
        "VARG_API_VERSION", "v1", parse_api_version,
        "Varg API version: v1, or v2 (jobs by `id`, statuses `submitting` and `running`)",
    )
    varg_webhook_secret: str | None = _setting(
        "VARG_WEBHOOK_SECRET", None, parse_webhook_secret,
        "secret of Varg's own v2 webhooks; turns on `POST /v1/ingest/varg`",
    )
    redis_url: str = _setting(
        "REDIS_URL", "redis://localhost:6379/0", parse_redis_url,
        "the one Redis that API and workers share",
    )
    api_tokens: tuple[str, ...] = _setting(
        "RELAY_API_TOKENS", None, parse_tokens,
        "comma-separated bearer tokens accepted by the relay API",
    )
    signing_secrets: tuple[str, ...] = _setting(
        "RELAY_SIGNING_SECRETS", None, parse_secrets,
        "space-separated `whsec_…` secrets; every one signs (rotation)",
    )
    upstream_rate_limit: int = _setting(
        "RELAY_UPSTREAM_RATE_LIMIT", "100", parse_positive_int,
        "upstream requests per minute, for the whole deployment",
    )
    allow_private_callbacks: bool = _setting(
        "RELAY_ALLOW_PRIVATE_CALLBACKS", "false", parse_bool,
        "allow callbacks to loopback/private addresses (dev, tests)",
    )
    delivery_timeout: float = _setting(
        "RELAY_DELIVERY_TIMEOUT", "15", parse_positive_duration, "seconds for one webhook attempt"
    )
    retry_schedule: tuple[float, ...] = _setting(
        "RELAY_RETRY_SCHEDULE", "5s,5m,30m,2h,5h,10h,10h", parse_schedule,
        "delays between delivery attempts",
    )
    watch_timeout: float = _setting(
        "RELAY_WATCH_TIMEOUT", "2h", parse_positive_duration,
        "stop watching a job that has not reached a terminal status",
    )
    not_found_grace: float = _setting(
        "RELAY_NOT_FOUND_GRACE", "60s", parse_duration,
        "how long a 404 may persist before `job.not_found`",
    )
    retention: float = _setting(
        "RELAY_RETENTION", "7d", parse_positive_duration,
        "how long finished subscriptions and delivery logs are kept",
    )
    max_subscriptions_per_token: int = _setting(
        "RELAY_MAX_SUBSCRIPTIONS_PER_TOKEN", "10000", parse_positive_int,
        "most active subscriptions one API token may hold; past it 429 (extension)",
    )
    upstream_timeout: float = _setting(
        "RELAY_UPSTREAM_TIMEOUT", "10s", parse_upstream_timeout,
        "longest one upstream request may take, body included; at most 20s (extension)",
    )
    poll_min_interval: float = _setting(
        "RELAY_POLL_MIN_INTERVAL", "1s", parse_positive_duration,
        "shortest gap between two polls of one job; with budget to spare, every live job is "
        "polled this often (extension)",
    )
    poll_max_interval: float = _setting(
        "RELAY_POLL_MAX_INTERVAL", "60s", parse_positive_duration,
        "longest gap between two polls of a live job when the budget allows (extension)",
    )
    poll_batch_size: int = _setting(
        "RELAY_POLL_BATCH_SIZE", "50", parse_positive_int,
        "most jobs one worker leases and polls concurrently (extension)",
    )
    poll_lease: float = _setting(
        "RELAY_POLL_LEASE", "30s", parse_positive_duration,
        "how long a worker holds a job it polls; a killed worker's jobs wait this long (extension)",
    )
    sweep_interval: int = _setting(
        "RELAY_SWEEP_INTERVAL", "5s", parse_sweep_interval,
        "how often each worker restarts delivery queues that nothing runs (extension)",
    )
    stream: str = _setting(
        "RELAY_STREAM", "auto", parse_stream_mode,
        "auto: follow jobs on Varg's SSE stream when it is served (else poll); off: poll only",
    )
    streams_per_worker: int = _setting(
        "RELAY_STREAMS_PER_WORKER", "1000", parse_positive_int,
        "most streams one worker holds open at once (extension)",
    )
    streams_max: int = _setting(
        "RELAY_STREAMS_MAX", "5000", parse_positive_int,
        "most streams open at once in the whole deployment (extension)",
    )
    stream_idle_timeout: float = _setting(
        "RELAY_STREAM_IDLE_TIMEOUT", "45s", parse_positive_duration,
        "a stream silent this long (no event, no keepalive) is dropped and reopened (extension)",
    )
    delivery_concurrency: int = _setting(
        "RELAY_DELIVERY_CONCURRENCY", "50", parse_positive_int,
        "webhook deliveries one worker runs at once (extension)",
    )
    delivery_concurrency_per_host: int = _setting(
        "RELAY_DELIVERY_CONCURRENCY_PER_HOST", "10", parse_positive_int,
        "webhook attempts one worker has in flight to one destination (address and port)"
        " (extension)",
    )
    delivery_concurrency_per_tenant: int = _setting(
        "RELAY_DELIVERY_CONCURRENCY_PER_TENANT", "25", parse_positive_int,
        "webhook attempts one worker has in flight for one API token (extension)",
    )
    metrics_port: int = _setting(
        "RELAY_METRICS_PORT", "9100", parse_port,
        "worker's Prometheus port; 0 turns it off (extension)",
    )
    log_level: str = _setting(
        "RELAY_LOG_LEVEL", "INFO", parse_log_level, "DEBUG, INFO, WARNING or ERROR (extension)"
    )
    log_format: str = _setting(
        "RELAY_LOG_FORMAT", "auto", parse_log_format,
        "json, text, or auto (text on a terminal) (extension)",
    )

    def require(self, *names: str) -> None:
        """Fail start-up when a role needs a variable that has no value."""
        for name in names:
            if not getattr(self, name):
                raise SettingsError(f"{env_name(name)} is required but not set")


def env_name(attribute: str) -> str:
    return str(Settings.__dataclass_fields__[attribute].metadata["env"])


def setting_docs() -> list[tuple[str, str | None, str]]:
    """(variable, default, meaning) for every setting: the README table is checked against it."""
    return [(f.metadata["env"], f.metadata["default"], f.metadata["help"])
            for f in fields(Settings)]


def load_settings(environ: Mapping[str, str], **overrides: Any) -> Settings:
    values: dict[str, Any] = {}
    for f in fields(Settings):
        raw = environ.get(f.metadata["env"], f.metadata["default"])
        values[f.name] = _parse(f.metadata["env"], f.metadata["parse"], raw)
    values.update(overrides)
    return Settings(**values)


def _parse(env: str, parse: Callable[[str], T], raw: str | None) -> T | tuple[()] | None:
    if raw is None:
        return () if parse in (parse_tokens, parse_secrets) else None
    try:
        return parse(raw)
    except ValueError as exc:
        raise SettingsError(f"{env} is invalid: {exc}") from None


def secrets_of(settings: Settings) -> tuple[str, ...]:
    """Every value that must never be logged or returned."""
    key = (settings.varg_api_key,) if settings.varg_api_key else ()
    hook = (settings.varg_webhook_secret,) if settings.varg_webhook_secret else ()
    return key + hook + settings.signing_secrets + settings.api_tokens
