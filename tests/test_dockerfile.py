"""The Dockerfile builds one small, non-root image from the lock file; the lock covers pyproject."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", re.MULTILINE)


def instructions(keyword: str) -> list[str]:
    """Arguments of every `KEYWORD ...` line, continuation lines joined."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    return [line.split(None, 1)[1] for line in text.splitlines()
            if line.split(None, 1)[:1] == [keyword]]


def locked() -> dict[str, str]:
    return {canonicalize_name(name): version for name, version in PIN.findall(LOCK.read_text())}


def runtime_dependencies() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(spec) for spec in project["dependencies"]]


def test_image_starts_from_python_slim() -> None:
    assert instructions("FROM") == ["python:3.11-slim"]


def test_image_runs_as_a_non_root_user() -> None:
    users = instructions("USER")
    assert users, "no USER instruction"
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_dependencies_install_from_the_lock_with_hashes() -> None:
    runs = " ".join(instructions("RUN"))
    assert re.search(r"pip install --require-hashes -r \S*requirements\.lock", runs)
    assert "pip install --no-deps" in runs  # the project itself adds nothing unlocked
    assert any("requirements.lock" in copy for copy in instructions("COPY"))


def test_one_image_for_every_role() -> None:
    assert [json.loads(e) for e in instructions("ENTRYPOINT")] == [["varg-relay"]]
    assert [json.loads(c) for c in instructions("CMD")] == [
        ["api", "--host", "0.0.0.0", "--port", "8000"]
    ]


def test_dockerignore_lets_in_exactly_what_the_dockerfile_copies() -> None:
    lines = [line for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line and not line.startswith("#")]
    assert lines[0] == "*"  # so .env, .venv and caches never reach the build context
    let_in = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = {source for copy in instructions("COPY") for source in copy.split()[:-1]}
    assert let_in == copied


def test_lock_pins_every_runtime_dependency() -> None:
    pins = locked()
    for requirement in runtime_dependencies():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in requirements.lock"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]}"


def test_lock_has_a_hash_for_every_pin() -> None:
    blocks = re.split(r"\n(?=\S)", LOCK.read_text())
    pinned = [block for block in blocks if PIN.match(block)]
    assert pinned
    assert all("--hash=sha256:" in block for block in pinned)


def test_lock_holds_no_dev_tools() -> None:
    assert not {"pytest", "mypy", "ruff", "pip-tools", "schemathesis"} & locked().keys()
