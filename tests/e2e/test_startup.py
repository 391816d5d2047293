"""First-run faults with real processes: each is one line naming the cause, and a non-zero
exit; `--version` prints the version and exits 0."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.devtools.redis_server import free_port
from relay.version import VERSION
from tests.conftest import SECRET, SIM_KEY, TOKEN
from tests.e2e.processes import BIN

pytestmark = pytest.mark.e2e

ARQ = str(Path(sys.executable).with_name("arq"))
SETTINGS = {"VARG_API_KEY": SIM_KEY, "RELAY_API_TOKENS": TOKEN, "RELAY_SIGNING_SECRETS": SECRET,
            "RELAY_METRICS_PORT": "0", "RELAY_LOG_FORMAT": "json"}


def run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env={**os.environ, **SETTINGS, **env}, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The process failed with exactly one line on stderr and nothing on stdout."""
    assert result.returncode != 0, result
    assert result.stdout == "", result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something else is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_version_prints_the_version_and_exits_0() -> None:
    result = run([*BIN, "--version"])
    assert (result.returncode, result.stdout, result.stderr) == (0, f"varg-relay {VERSION}\n", "")


@pytest.mark.parametrize("command", [[*BIN, "api", "--port", "{port}"], [*BIN, "worker"],
                                     [ARQ, "workers.WorkerSettings"]],
                         ids=["api", "worker", "arq"])
def test_an_unreachable_redis_is_one_line_naming_redis_url(command: list[str]) -> None:
    assert shutil.which(command[0]) or Path(command[0]).exists()
    command = [arg.format(port=free_port()) for arg in command]
    url = f"redis://127.0.0.1:{free_port()}/0"
    line = one_line(run(command, REDIS_URL=url))
    assert line.startswith(f"varg-relay: REDIS_URL unreachable: {url} ("), line


def test_the_redis_password_is_not_shown() -> None:
    url = f"redis://:hunter2secret@127.0.0.1:{free_port()}/0"
    line = one_line(run([*BIN, "api", "--port", str(free_port())], REDIS_URL=url))
    assert "hunter2secret" not in line and "REDIS_URL unreachable" in line


@pytest.mark.parametrize("args", [["api"], ["simulate"], ["dev"]])
def test_a_port_in_use_is_one_line_naming_the_port(busy_port: int, args: list[str]) -> None:
    line = one_line(run([*BIN, *args, "--port", str(busy_port)]))
    assert line == (f"varg-relay: port {busy_port} is in use on 127.0.0.1; stop what uses it "
                    "or choose another (--port)")


def test_dev_names_its_simulator_port_when_that_one_is_in_use(busy_port: int) -> None:
    line = one_line(run([*BIN, "dev", "--port", str(free_port()), "--sim-port", str(busy_port)]))
    assert line.endswith("choose another (--sim-port)"), line


def test_a_malformed_setting_is_one_line_naming_it() -> None:
    for command in ([*BIN, "worker"], [ARQ, "workers.WorkerSettings"]):
        line = one_line(run(command, RELAY_SIGNING_SECRETS=f"{SECRET},{SECRET}"))
        assert line == ("varg-relay: RELAY_SIGNING_SECRETS is invalid: separate secrets with "
                        "spaces, not commas"), line
