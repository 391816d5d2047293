"""The receiver helper as its own distribution (receiver/): built from this repository, it
depends on standardwebhooks alone, and the README's example runs in a fresh virtualenv that
has nothing of the server, against webhooks signed by the relay's own delivery code."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from redis.asyncio import Redis

from relay.delivery.send import webhook_headers
from relay.delivery.signing import new_secret
from tests.conftest import REDIS_URL

ROOT = Path(__file__).resolve().parents[2]
PIP = [sys.executable, "-m", "pip"]
MARKER = "<!-- receiver example: tests/receiver/test_distribution.py runs it -->"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([*PIP, "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out),
                    str(ROOT / "receiver")], check=True, capture_output=True, timeout=300)
    (built,) = out.glob("varg_relay_receiver-*.whl")
    return built


def test_the_wheel_holds_the_receiver_alone_and_needs_only_standardwebhooks(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = next(archive.read(n).decode() for n in names if n.endswith("/METADATA"))
    code = [n for n in names if ".dist-info/" not in n]
    assert sorted(code) == ["varg_relay_receiver/__init__.py", "varg_relay_receiver/py.typed"]
    requires = re.findall(r"^Requires-Dist: (\S+)", metadata, re.M)
    assert [re.split(r"[<>=!~ ;]", r)[0] for r in requires] == ["standardwebhooks"]
    assert re.search(r"^Name: varg-relay-receiver$", metadata, re.M)


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    block = text.split(MARKER, 1)[1]
    found = re.match(r"\s*```python\n(.*?)```", block, re.S)
    assert found, "the README's receiver example must follow its marker"
    return found.group(1)


DRIVER = '''
import json, os, sys
namespace = {"__name__": "readme_example"}
exec(compile(open(sys.argv[1]).read(), "README.md", "exec"), namespace)
real_handle = namespace["handle"]

def failing(event):
    raise RuntimeError("the handler failed")

for label, body, headers, fails in json.load(open(sys.argv[2])):
    namespace["handle"] = failing if fails else real_handle
    try:
        print(label, namespace["on_webhook"](body.encode(), headers), flush=True)
    except RuntimeError as exc:
        print(label, "raised", exc, flush=True)
'''


def webhook(secret: str, msg_id: str, job_id: str) -> tuple[str, dict[str, str]]:
    body = json.dumps({"type": "job.completed", "timestamp": "2026-01-02T03:04:05.000Z",
                       "data": {"subscription_id": "sub_1", "job_id": job_id,
                                "status": "completed", "previous_status": "processing",
                                "job": {"job_id": job_id, "status": "completed"},
                                "metadata": {"order": 42}}}, separators=(",", ":"))
    return body, webhook_headers(msg_id, body.encode(), (secret,), int(time.time()))


@pytest.mark.slow
async def test_the_readme_example_runs_in_a_fresh_virtualenv(
    wheel: Path, tmp_path: Path, redis: Redis
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    # What another service runs: the wheel (or the git subdirectory), and redis for RedisSeen.
    subprocess.run([*PIP, "--python", str(python), "install", "--quiet", str(wheel), "redis"],
                   check=True, capture_output=True, timeout=300)
    missing = subprocess.run([python, "-c", "import relay"], capture_output=True, timeout=60,
                             cwd=tmp_path)
    assert missing.returncode != 0, "the server must not be installed in this virtualenv"

    old, new = new_secret(), new_secret()
    body_a, headers_a = webhook(old, "msg_a", "job_a")  # signed with the secret being retired
    body_b, headers_b = webhook(new, "msg_b", "job_b")
    forged = dict(headers_a, **{"webhook-id": "msg_forged"})
    cases = [("first", body_a, headers_a, False), ("again", body_a, headers_a, False),
             ("forged", body_a, forged, False), ("fails", body_b, headers_b, True),
             ("retried", body_b, headers_b, False)]
    (tmp_path / "example.py").write_text(readme_example())
    (tmp_path / "driver.py").write_text(DRIVER)
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    ran = subprocess.run(
        [python, str(tmp_path / "driver.py"), str(tmp_path / "example.py"),
         str(tmp_path / "cases.json")],
        env={"VARG_RELAY_SECRETS": f"{new} {old}", "REDIS_URL": REDIS_URL},
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == [
        "handled job.completed for job_a {'order': 42}", "first 204",
        "again 204",  # a duplicate: not handled twice
        "forged 400",
        "fails raised the handler failed",  # the id is released...
        "handled job.completed for job_b {'order': 42}", "retried 204",  # ...so the retry runs
    ]
