"""scripts/compose_smoke.py without an engine: the README lines it runs agree with the stack.

The smoke test itself runs the stack (CI runs it after this suite); these checks keep the
README's compose block, .env.example and docker-compose.yml saying the same thing, so the smoke
test runs what a reader would type.
"""

from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def load_smoke() -> ModuleType:
    path = ROOT / "scripts" / "compose_smoke.py"
    spec = importlib.util.spec_from_file_location("compose_smoke", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


smoke = load_smoke()


def commands() -> list[list[str]]:
    return [shlex.split(c, comments=True) for c in smoke.readme_commands(smoke.README.read_text())]


def env_example() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def compose_ports(service: str) -> str:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    return str(services[service]["ports"][0])


def test_the_readme_block_is_three_curl_lines() -> None:
    assert [c[0] for c in commands()] == ["curl", "curl", "curl"]


def test_the_subscription_uses_the_shipped_token_and_the_inbox_in_the_stack() -> None:
    subscribe = commands()[1]
    token = env_example()["RELAY_API_TOKENS"].split(",")[0]
    assert f"authorization: Bearer {token}" in subscribe
    assert subscribe[-1].endswith(f'"url": "{smoke.INBOX_IN_STACK}"}}')
    assert smoke.INBOX_IN_STACK.startswith("http://inbox:8002/")
    assert env_example()["RELAY_ALLOW_PRIVATE_CALLBACKS"] == "true"


def test_the_lines_use_the_ports_the_compose_file_publishes() -> None:
    urls = [next(word for word in c if word.startswith("http://")) for c in commands()]
    assert urls == [smoke.SIMULATOR + "/_sim/jobs", smoke.API + "/v1/subscriptions", smoke.INBOX]
    assert compose_ports("simulator").endswith("${SIMULATOR_PORT:-8001}:8001")
    assert compose_ports("api") == "${API_PORT:-8000}:8000"
    assert compose_ports("inbox").endswith("${INBOX_PORT:-8002}:8002")


def test_a_readme_without_the_mark_fails_loudly() -> None:
    with pytest.raises(smoke.SmokeFailure):
        smoke.readme_commands("# nothing here\n```sh\ncurl x\n```\n")


def test_continuation_lines_are_joined() -> None:
    text = f"{smoke.MARK}\n```sh\ncurl -s a \\\n     -d b\ncurl c   # note\n```\n"
    assert smoke.readme_commands(text) == ["curl -s a       -d b", "curl c   # note"]


@pytest.mark.parametrize(("types", "ok"), [
    (["job.queued", "job.processing", "job.completed"], True),
    (["job.queued", "job.completed"], True),
    (["job.completed"], True),
    (["job.queued", "job.processing"], False),
    (["job.processing", "job.queued", "job.completed"], False),
    (["job.queued", "job.queued", "job.completed"], False),
    (["job.failed"], False),
    ([], False),
])
def test_in_flow_order(types: list[str], ok: bool) -> None:
    assert smoke.in_flow_order(types) is ok


def test_ci_runs_the_smoke_test_after_the_tests_and_fails_when_either_fails() -> None:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert "set -euo pipefail" in lines
    assert lines.index("scripts/compose-smoke") > lines.index("scripts/test")
