"""`varg-relay dev` as a new user runs it: it starts with a Redis of its own, the lines its
banner says to paste register a job whose webhooks reach the inbox, and SIGTERM stops it
cleanly, taking its throwaway Redis along."""

from __future__ import annotations

import os
import re
import subprocess

import httpx
import pytest

from relay.devtools.redis_server import answers, free_port
from relay.store import keys
from tests.conftest import REDIS_URL
from tests.e2e.processes import Process
from tests.support import eventually_sync

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


class Dev(Process):
    """`varg-relay dev` on free ports, in the environment of a new user: none of the relay's
    variables set (REDIS_URL only when given)."""

    def __init__(self, redis_url: str | None = None) -> None:
        self.port, self.sim_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("RELAY_", "VARG_")) and k != "REDIS_URL"}
        if redis_url:
            env["REDIS_URL"] = redis_url
        super().__init__("dev", ["dev", "--port", str(self.port), "--sim-port",
                                 str(self.sim_port)], env, inherit=False)

    def try_it(self) -> str:
        """The lines the banner says to paste."""
        self.wait_for_log("_dev/inbox     #")
        return self.text().split("paste these lines into another terminal):\n", 1)[1].split(
            "_dev/inbox     #", 1)[0] + "_dev/inbox\n"

    def redis_url(self) -> str:
        found = re.search(r"^  Redis +(\S+)", self.text(), re.M)
        assert found, self.text()
        return found.group(1)

    def inbox(self) -> list[str]:
        answer = httpx.get(f"http://127.0.0.1:{self.port}/_dev/inbox").json()
        return [item["event"]["type"] for item in answer["data"]]


def test_dev_runs_the_banner_s_lines_and_stops_cleanly() -> None:
    dev = Dev()
    try:
        lines = dev.try_it()
        assert lines.startswith("export TOKEN=dev_"), lines
        own_redis = dev.redis_url()
        assert "throwaway redis-server of its own" in dev.text()
        assert answers(own_redis)

        pasted = subprocess.run(["bash", "-euo", "pipefail", "-c", lines], capture_output=True,
                                text=True, timeout=30)
        assert pasted.returncode == 0, pasted.stderr
        assert '"state":"active"' in pasted.stdout  # the subscription was created (not a 401)
        eventually_sync(dev.inbox, 30, what="the demo job's webhooks in the inbox",
                        until=lambda got: got == ["job.queued", "job.processing",
                                                  "job.completed"])
    finally:
        code = dev.terminate(timeout=30)
    assert code == 0, dev.text()[-3000:]
    assert "Traceback" not in dev.text()
    assert not answers(own_redis), "the throwaway redis-server outlived dev"


def test_dev_uses_redis_url_when_set_and_says_so() -> None:
    dev = Dev(REDIS_URL)
    try:
        dev.try_it()
        assert f"  Redis          {REDIS_URL}   (from REDIS_URL; keys under {keys.PREFIX} and " \
            "arq:)" in dev.text()
    finally:
        assert dev.terminate(timeout=30) == 0, dev.text()[-3000:]
