"""config.settings: defaults from the contract table, value parsers, one-line errors naming the
variable."""

from __future__ import annotations

import base64

import pytest

from config.settings import (
    Settings,
    SettingsError,
    load_settings,
    parse_bool,
    parse_duration,
    parse_schedule,
    secrets_of,
    setting_docs,
)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_SECRET = "whsec_" + base64.b64encode(b"another-key-of-32-bytes-length!!").decode()

# CONTRACT.md section 2, as (variable, default, attribute, parsed default).
CONTRACT_TABLE = [
    ("VARG_API_URL", "https://api.varg.ai/v1", "varg_api_url", "https://api.varg.ai/v1"),
    ("VARG_API_KEY", None, "varg_api_key", None),
    ("REDIS_URL", "redis://localhost:6379/0", "redis_url", "redis://localhost:6379/0"),
    ("RELAY_API_TOKENS", None, "api_tokens", ()),
    ("RELAY_SIGNING_SECRETS", None, "signing_secrets", ()),
    ("RELAY_UPSTREAM_RATE_LIMIT", "100", "upstream_rate_limit", 100),
    ("RELAY_ALLOW_PRIVATE_CALLBACKS", "false", "allow_private_callbacks", False),
    ("RELAY_DELIVERY_TIMEOUT", "15", "delivery_timeout", 15.0),
    ("RELAY_RETRY_SCHEDULE", "5s,5m,30m,2h,5h,10h,10h", "retry_schedule",
     (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)),
    ("RELAY_WATCH_TIMEOUT", "2h", "watch_timeout", 7200.0),
    ("RELAY_NOT_FOUND_GRACE", "60s", "not_found_grace", 60.0),
    ("RELAY_RETENTION", "7d", "retention", 604800.0),
]

# One malformed value for every variable; test_every_variable_has_a_malformed_case keeps it whole.
MALFORMED = [
    ("VARG_API_URL", "ftp://api.varg.ai/v1"),
    ("VARG_API_URL", "api.varg.ai/v1"),
    ("VARG_API_URL", "https://api.varg.ai/v1 oops"),
    ("VARG_API_KEY", "varg key"),
    ("VARG_API_KEY", "varg\nkey"),
    ("REDIS_URL", "localhost:6379"),
    ("RELAY_API_TOKENS", "tok_alice,tok bob"),
    ("RELAY_SIGNING_SECRETS", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
    ("RELAY_SIGNING_SECRETS", "whsec_not*base64!"),
    ("RELAY_SIGNING_SECRETS", "whsec_" + base64.b64encode(b"short").decode()),
    ("RELAY_SIGNING_SECRETS", SECRET + " whsec_%%%"),
    ("RELAY_UPSTREAM_RATE_LIMIT", "0"),
    ("RELAY_UPSTREAM_RATE_LIMIT", "lots"),
    ("RELAY_ALLOW_PRIVATE_CALLBACKS", "maybe"),
    ("RELAY_DELIVERY_TIMEOUT", "fast"),
    ("RELAY_DELIVERY_TIMEOUT", "0"),
    ("RELAY_RETRY_SCHEDULE", "5s,soon"),
    ("RELAY_RETRY_SCHEDULE", ","),
    ("RELAY_WATCH_TIMEOUT", "2 hours"),
    ("RELAY_WATCH_TIMEOUT", "0s"),
    ("RELAY_NOT_FOUND_GRACE", "-1s"),
    ("RELAY_RETENTION", "7w"),
    ("RELAY_POLL_MIN_INTERVAL", "0ms"),
    ("RELAY_UPSTREAM_TIMEOUT", "25s"),
    ("RELAY_MAX_SUBSCRIPTIONS_PER_TOKEN", "0"),
    ("RELAY_POLL_MAX_INTERVAL", "1y"),
    ("RELAY_POLL_BATCH_SIZE", "0"),
    ("RELAY_POLL_LEASE", "0s"),
    ("RELAY_SWEEP_INTERVAL", "1.5s"),
    ("RELAY_SWEEP_INTERVAL", "2m"),
    ("RELAY_DELIVERY_CONCURRENCY", "1.5"),
    ("RELAY_DELIVERY_CONCURRENCY_PER_HOST", "0"),
    ("RELAY_DELIVERY_CONCURRENCY_PER_TENANT", "-1"),
    ("RELAY_METRICS_PORT", "70000"),
    ("RELAY_METRICS_PORT", "http"),
    ("RELAY_LOG_LEVEL", "loud"),
    ("RELAY_LOG_FORMAT", "xml"),
    ("VARG_API_VERSION", "v3"),
    ("VARG_WEBHOOK_SECRET", "short"),
    ("VARG_WEBHOOK_SECRET", "has a space in it, sadly"),
    ("RELAY_STREAM", "sometimes"),
    ("RELAY_STREAMS_PER_WORKER", "0"),
    ("RELAY_STREAMS_MAX", "many"),
    ("RELAY_STREAM_IDLE_TIMEOUT", "0s"),
]


def test_defaults_match_the_contract_table() -> None:
    docs = {env: default for env, default, _ in setting_docs()}
    settings = load_settings({})
    for env, default, attribute, parsed in CONTRACT_TABLE:
        assert docs[env] == default, env
        assert getattr(settings, attribute) == parsed, env


def test_load_settings_reads_only_the_mapping_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VARG_API_KEY", "from_os_environ")
    assert load_settings({}).varg_api_key is None


def test_values_from_the_environment_are_parsed() -> None:
    settings = load_settings({
        "VARG_API_URL": "http://localhost:8080/v1/",
        "VARG_API_KEY": " varg_key ",
        "RELAY_UPSTREAM_RATE_LIMIT": "240",
        "RELAY_NOT_FOUND_GRACE": "0",
        "RELAY_METRICS_PORT": "0",
        "RELAY_LOG_LEVEL": "debug",
    })
    assert settings.varg_api_url == "http://localhost:8080/v1"
    assert settings.varg_api_key == "varg_key"
    assert settings.upstream_rate_limit == 240
    assert settings.not_found_grace == 0.0
    assert settings.metrics_port == 0
    assert settings.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5.0), ("5m", 300.0), ("2h", 7200.0), ("7d", 604800.0), ("250ms", 0.25),
     ("15", 15.0), ("1.5", 1.5), (" 2h ", 7200.0), ("0", 0.0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "s", "5x", "-5s", "5 s s", "1e3", "five"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_parse_schedule() -> None:
    assert parse_schedule("5s,5m,30m") == (5.0, 300.0, 1800.0)
    assert parse_schedule(" 200ms , 1 ,2h,") == (0.2, 1.0, 7200.0)


def test_parse_schedule_needs_one_delay() -> None:
    with pytest.raises(ValueError):
        parse_schedule(" , ")


@pytest.mark.parametrize("text", ["1", "true", "TRUE", "yes", "on", " True "])
def test_parse_bool_true(text: str) -> None:
    assert parse_bool(text) is True


@pytest.mark.parametrize("text", ["0", "false", "False", "no", "off", ""])
def test_parse_bool_false(text: str) -> None:
    assert parse_bool(text) is False


def test_allow_private_callbacks_from_environment() -> None:
    assert load_settings({"RELAY_ALLOW_PRIVATE_CALLBACKS": "true"}).allow_private_callbacks


@pytest.mark.parametrize(("env", "value"), MALFORMED)
def test_malformed_value_names_the_variable(env: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({env: value})
    message = str(caught.value)
    assert message.startswith(env + " ")
    assert "\n" not in message


def test_every_variable_has_a_malformed_case() -> None:
    assert {env for env, _, _ in setting_docs()} == {env for env, _ in MALFORMED}


def test_secrets_are_space_separated_whsec_base64() -> None:
    settings = load_settings({"RELAY_SIGNING_SECRETS": f" {SECRET}  {OTHER_SECRET} "})
    assert settings.signing_secrets == (SECRET, OTHER_SECRET)


def test_tokens_are_comma_separated() -> None:
    settings = load_settings({"RELAY_API_TOKENS": "tok_alice, tok_bob,,tok_carol "})
    assert settings.api_tokens == ("tok_alice", "tok_bob", "tok_carol")


def test_empty_tokens_count_as_none() -> None:
    assert load_settings({"RELAY_API_TOKENS": ""}).api_tokens == ()


@pytest.mark.parametrize(
    ("attribute", "env"),
    [("varg_api_key", "VARG_API_KEY"), ("api_tokens", "RELAY_API_TOKENS"),
     ("signing_secrets", "RELAY_SIGNING_SECRETS")],
)
def test_require_names_the_missing_variable(attribute: str, env: str) -> None:
    with pytest.raises(SettingsError, match=f"^{env} is required"):
        load_settings({}).require(attribute)


def test_require_passes_when_set() -> None:
    settings = load_settings({"VARG_API_KEY": "k", "RELAY_API_TOKENS": "t",
                              "RELAY_SIGNING_SECRETS": SECRET})
    settings.require("varg_api_key", "api_tokens", "signing_secrets")


def test_empty_api_key_is_missing() -> None:
    with pytest.raises(SettingsError, match="VARG_API_KEY"):
        load_settings({"VARG_API_KEY": ""}).require("varg_api_key")


def test_setting_docs_lists_every_variable() -> None:
    docs = setting_docs()
    names = [env for env, _, _ in docs]
    assert len(names) == len(set(names)) == len(Settings.__dataclass_fields__)
    assert {env for env, _, _, _ in CONTRACT_TABLE} <= set(names)
    assert {"RELAY_POLL_MIN_INTERVAL", "RELAY_POLL_MAX_INTERVAL"} <= set(names)
    assert all(meaning for _, _, meaning in docs)


def test_secrets_of_lists_key_secrets_and_tokens() -> None:
    settings = load_settings({"VARG_API_KEY": "varg_key", "RELAY_API_TOKENS": "t1,t2",
                              "RELAY_SIGNING_SECRETS": SECRET})
    assert set(secrets_of(settings)) == {"varg_key", SECRET, "t1", "t2"}


def test_secrets_of_without_a_key() -> None:
    assert secrets_of(load_settings({"RELAY_API_TOKENS": "t1"})) == ("t1",)


SPACES = "separate secrets with spaces, not commas"
COMMAS = "separate tokens with commas, not spaces"


@pytest.mark.parametrize(("env", "value", "says"), [
    ("RELAY_SIGNING_SECRETS", f"{SECRET},{OTHER_SECRET}", SPACES),
    ("RELAY_SIGNING_SECRETS", f"{SECRET}, {OTHER_SECRET}", SPACES),
    ("RELAY_API_TOKENS", "tok_alice tok_bob", COMMAS),
])
def test_the_wrong_separator_is_named(env: str, value: str, says: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({env: value})
    assert str(raised.value) == f"{env} is invalid: {says}"


def test_varg_webhook_secret_is_a_secret() -> None:
    settings = load_settings({"VARG_WEBHOOK_SECRET": "vhook_0123456789abcdef"})
    assert settings.varg_webhook_secret == "vhook_0123456789abcdef"
    assert "vhook_0123456789abcdef" in secrets_of(settings)
    assert "vhook_0123456789abcdef" not in repr(settings)


def test_stream_settings_defaults() -> None:
    settings = load_settings({})
    assert (settings.stream, settings.varg_api_version) == ("auto", "v1")
    assert (settings.streams_per_worker, settings.streams_max) == (1000, 5000)
    assert settings.stream_idle_timeout == 45.0
    assert load_settings({"RELAY_STREAM": "OFF", "VARG_API_VERSION": "v2"}).stream == "off"
