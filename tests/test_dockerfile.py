"""The Dockerfile builds one small, non-root image from the lock file; the lock covers pyproject."""

from __future__ import annotations

import json
import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", re.MULTILINE)
MARKED_PIN = re.compile(PIN.pattern + r"(?: ; ([^\\\n]+?))? \\$", re.MULTILINE)
# Pythons the lock must serve: the floor of requires-python, Debian bookworm's python3 (3.11.2,
# before redis stops needing async-timeout at 3.11.3), and later releases.
PYTHONS = ["3.11.0", "3.11.2", "3.11.3", "3.11.14", "3.12.0", "3.13.0", "3.14.0"]


def instructions(keyword: str) -> list[str]:
    """Arguments of every `KEYWORD ...` line, continuation lines joined."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    return [line.split(None, 1)[1] for line in text.splitlines()
            if line.split(None, 1)[:1] == [keyword]]


def locked() -> dict[str, str]:
    return {canonicalize_name(name): version for name, version in PIN.findall(LOCK.read_text())}


def marked_pins() -> dict[str, tuple[str, Marker | None]]:
    return {canonicalize_name(name): (version, Marker(marker) if marker else None)
            for name, version, marker in MARKED_PIN.findall(LOCK.read_text())}


def environment(python: str) -> dict[str, str]:
    return {"python_full_version": python, "python_version": ".".join(python.split(".")[:2]),
            "implementation_name": "cpython", "platform_python_implementation": "CPython",
            "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
            "platform_machine": "x86_64", "extra": ""}


def installs(python: str) -> dict[str, str]:
    """What `pip install --require-hashes -r requirements.lock` installs on that Python."""
    env = environment(python)
    return {name: version for name, (version, marker) in marked_pins().items()
            if marker is None or marker.evaluate(env)}


def runtime_dependencies() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(spec) for spec in project["dependencies"]]


def test_image_starts_from_python_slim() -> None:
    assert instructions("FROM") == ["python:3.11-slim"]


def test_image_runs_as_a_non_root_user() -> None:
    users = instructions("USER")
    assert users, "no USER instruction"
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_the_user_is_made_without_a_warning() -> None:
    """useradd warns when --system meets a uid above the system range (SYS_UID_MAX 999)."""
    [useradd] = [run for run in instructions("RUN") if run.startswith("useradd")]
    uid = int(useradd.split("--uid", 1)[1].split()[0])
    assert "--system" not in useradd or uid < 1000
    assert instructions("USER")[-1] == str(uid)


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


def test_every_pin_is_read_with_its_marker() -> None:
    assert marked_pins().keys() == locked().keys()


def test_the_lock_serves_every_python_that_requires_python_admits() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    admitted = SpecifierSet(project["requires-python"])
    assert admitted.contains(PYTHONS[0]) and admitted.contains("3.11.2")
    assert all(admitted.contains(python) for python in PYTHONS)


@pytest.mark.parametrize("python", PYTHONS)
def test_locked_packages_find_what_they_need_on(python: str) -> None:
    """Each locked package's own requirements (read from the copy installed here when it is
    the locked version) are locked too, for that Python: pip --require-hashes refuses
    anything unpinned, as it did async-timeout for redis on 3.11.2."""
    chosen = installs(python)
    env = environment(python)
    checked = []
    for name, version in chosen.items():
        try:
            if metadata.version(name) != version:
                continue  # another version here; its requirements may differ
        except metadata.PackageNotFoundError:
            continue
        checked.append(name)
        for spec in metadata.requires(name) or []:
            needed = Requirement(spec)
            if needed.marker is not None and not needed.marker.evaluate(env):
                continue
            dependency = canonicalize_name(needed.name)
            assert dependency in chosen, f"{name} needs {needed} on {python}: run scripts/lock"
            assert needed.specifier.contains(chosen[dependency], prereleases=True)
    assert "redis" in checked, "redis here is not the locked version: run scripts/lock"


def test_debian_python_gets_async_timeout_and_later_pythons_do_not() -> None:
    assert "async-timeout" in installs("3.11.2")
    assert "async-timeout" not in installs("3.11.3")
