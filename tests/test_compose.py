"""docker-compose.yml against the Compose Specification, and .env.example against the settings."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

from config import load_settings
from config.settings import setting_docs

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
SCHEMA = Path(__file__).parent / "data" / "compose-spec.json"

# Variables that only docker compose reads (host ports), never varg-relay.
COMPOSE_ONLY = {"API_PORT", "SIMULATOR_PORT", "INBOX_PORT"}
DEV_ONLY = {"simulator", "inbox"}
VARIABLE = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")
ASSIGNMENT = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", re.MULTILINE)


def compose_spec() -> Draft7Validator:
    # The schema says "$schema": "https://json-schema.org/draft-07/schema", a spelling
    # jsonschema does not look up (it knows http://...#), so name the draft here.
    schema = json.loads(SCHEMA.read_text())
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def known_variables() -> set[str]:
    return {env for env, _, _ in setting_docs()} | COMPOSE_ONLY


def test_compose_file_matches_the_compose_spec() -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}"
              for e in compose_spec().iter_errors(compose())]
    assert errors == []


def test_the_schema_rejects_an_unknown_service_key() -> None:
    broken = {"services": {"api": {"image": "x", "healthcheck_typo": {}}}}
    assert not compose_spec().is_valid(broken)


@pytest.mark.parametrize("name", ["redis", "api", "worker", "simulator", "inbox"])
def test_every_service_has_a_healthcheck(name: str) -> None:
    healthcheck = services()[name]["healthcheck"]
    assert healthcheck["test"][0] == "CMD"
    assert not healthcheck.get("disable", False)


def test_every_depends_on_waits_for_a_healthy_service() -> None:
    for name, service in services().items():
        for needed, how in service.get("depends_on", {}).items():
            assert how["condition"] == "service_healthy", (name, needed)
            # A service outside the dev profile may wait for a dev one only where it runs.
            assert how.get("required", True) is (needed not in DEV_ONLY or name in DEV_ONLY)


def test_the_worker_waits_for_the_simulator_in_the_dev_profile() -> None:
    assert services()["worker"]["depends_on"]["simulator"] == {
        "condition": "service_healthy", "required": False}


def test_api_and_worker_wait_for_redis() -> None:
    assert "redis" in services()["api"]["depends_on"]
    assert "redis" in services()["worker"]["depends_on"]


def test_redis_appends_only_to_a_volume() -> None:
    redis = services()["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_worker_scales_without_a_container_name_or_host_port() -> None:
    worker = services()["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert worker["command"] == ["worker"]


def test_api_healthcheck_asks_readyz() -> None:
    api = services()["api"]
    assert "/readyz" in " ".join(api["healthcheck"]["test"])
    assert api["command"] == ["api", "--host", "0.0.0.0", "--port", "8000"]


def test_simulator_and_inbox_run_only_in_the_dev_profile() -> None:
    assert services()["simulator"]["command"] == [
        "simulate", "--host", "0.0.0.0", "--port", "8001"]
    assert services()["inbox"]["command"] == ["inbox", "--host", "0.0.0.0", "--port", "8002"]
    for name, service in services().items():
        assert service.get("profiles") == (["dev"] if name in DEV_ONLY else None), name


def test_dev_services_publish_their_ports_on_loopback_only() -> None:
    for name in DEV_ONLY:
        assert all(port.startswith("127.0.0.1:") for port in services()[name]["ports"]), name


def test_relay_services_read_settings_from_the_env_file() -> None:
    for name in ("api", "worker", "simulator", "inbox"):
        assert services()[name]["env_file"] == ".env"


def test_compose_names_only_known_variables() -> None:
    assert set(VARIABLE.findall(COMPOSE_FILE.read_text())) <= known_variables()


def test_env_example_names_only_known_variables() -> None:
    assert set(VARIABLE.findall(ENV_EXAMPLE.read_text())) <= known_variables()


@pytest.mark.parametrize(("env", "default", "meaning"),
                         [pytest.param(*doc, id=doc[0]) for doc in setting_docs()])
def test_env_example_documents_every_setting(env: str, default: str | None, meaning: str) -> None:
    text = ENV_EXAMPLE.read_text()
    documented = f"# {env}: {meaning} (default: {default if default is not None else 'none'})"
    assert documented in text.splitlines()
    assert env in {name for name, _ in ASSIGNMENT.findall(text)}


def test_env_example_values_start_every_role_against_the_simulator() -> None:
    active = {line.split("=", 1)[0]: line.split("=", 1)[1]
              for line in ENV_EXAMPLE.read_text().splitlines()
              if line and not line.startswith("#")}
    settings = load_settings(active)
    settings.require("api_tokens", "signing_secrets", "varg_api_key")
    assert settings.varg_api_url == "http://simulator:8001/v1"
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.allow_private_callbacks  # the dev profile's inbox is a private address
