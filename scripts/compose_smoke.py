"""The compose smoke test: build the image, run the dev profile, try it as the README says.

Run by scripts/compose-smoke, which first makes sure that a container engine, Compose v2 and
the base images are there (scripts/container-engine). Standard library only: it runs with the
machine's python3, before or without .venv.

It works on a copy of the project (the files git knows, committed or not) with
`cp .env.example .env`, as a user would, under its own compose project name so that a stack of
yours is left alone; the host ports are the README's (8000, 8001, 8002). Steps, each timed:

1. build the image; plain `docker compose up -d` with the shipped .env, whose VARG_API_URL is
   the dev profile's simulator: /readyz must name it unreachable; then
   `docker compose --profile dev up -d --wait`;
2. the README's curl lines, as written there (the block after MARK), and the signed webhooks
   they make arrive in the stack's inbox, every signature verified, in order;
3. Redis restarted while a second job runs: nothing stored before is lost or changed, and the
   second job's webhooks all arrive;
4. `--scale worker=3`: three healthy workers, and a third job's webhooks arrive;
5. `docker compose down -v`: no container, network or volume of the project is left.

Any failure stops it with the reason, the containers' state and their last log lines.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARK = "<!-- scripts/compose-smoke runs these lines as they are -->"
PROJECT = "varg-relay-smoke"
# Plain progress lines, for a log.
COMPOSE = ["docker", "compose", "--progress", "plain", "-p", PROJECT]
DEV = ["--profile", "dev"]
PORTS = {8000: "API_PORT", 8001: "SIMULATOR_PORT", 8002: "INBOX_PORT"}
API = "http://127.0.0.1:8000"
SIMULATOR = "http://127.0.0.1:8001"
INBOX = "http://127.0.0.1:8002/_dev/inbox"
INBOX_IN_STACK = "http://inbox:8002/_dev/inbox"
FLOW = ["job.queued", "job.processing", "job.completed"]


class SmokeFailure(Exception):
    pass


def readme_commands(text: str) -> list[str]:
    """The shell commands of the fenced block after MARK, continuation lines joined."""
    if MARK not in text:
        raise SmokeFailure(f"README.md has no {MARK!r}")
    block = re.search(r"```sh\n(.*?)```", text.split(MARK, 1)[1], re.DOTALL)
    if block is None:
        raise SmokeFailure("README.md has no ```sh block after the smoke test's mark")
    joined = block.group(1).replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip()]


def in_flow_order(types: list[str]) -> bool:
    """Events of a job that goes queued, processing, completed: some of them, in order, ending
    with completed (a status that comes and goes between two polls is not seen)."""
    positions = [FLOW.index(t) for t in types if t in FLOW]
    return (len(positions) == len(types) and positions == sorted(set(positions))
            and types[-1:] == ["job.completed"])


def until(what: str, check: Callable[[], Any], timeout: float) -> Any:
    """Call `check` until it returns something true; fail naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, ValueError) as exc:  # not answering yet, or half-written JSON
            last = exc
        else:
            if last:
                return last
        time.sleep(0.5)
    raise SmokeFailure(f"{what}: not within {timeout:.0f} s (last: {last!r})")


def http(method: str, url: str, body: Any = None, token: str | None = None) -> Any:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


class Smoke:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.timings: list[tuple[str, float]] = []
        self.token = ""

    # ------------------------------------------------------------------ tools

    def compose(self, *args: str, capture: bool = False, profile: bool = True) -> str:
        command = [*COMPOSE, *(DEV if profile else []), *args]
        done = subprocess.run(command, cwd=self.workdir, text=True, check=False,
                              stdout=subprocess.PIPE if capture else None)
        if done.returncode != 0:
            raise SmokeFailure(f"`{' '.join(command)}` exited {done.returncode}")
        return done.stdout or ""

    def step(self, name: str, action: Callable[[], None]) -> None:
        print(f"\n== {name}", flush=True)
        started = time.monotonic()
        action()
        self.timings.append((name, time.monotonic() - started))
        print(f"== {name}: ok ({self.timings[-1][1]:.1f} s)", flush=True)

    def inbox(self, job_id: str) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = http("GET", INBOX)["data"]
        return [e for e in entries if e["event"]["data"]["job_id"] == job_id]

    def completed(self, job_id: str, timeout: float = 90) -> list[dict[str, Any]]:
        def arrived() -> list[dict[str, Any]]:
            got = self.inbox(job_id)
            return got if got and got[-1]["event"]["type"] == "job.completed" else []

        result: list[dict[str, Any]] = until(f"job.completed for {job_id} in the inbox",
                                             arrived, timeout)
        return result

    def delivered(self, sid: str, inbox: list[dict[str, Any]]) -> None:
        """The relay's log of the subscription agrees with the inbox, which keeps only what
        verifies: every event arrived, in order, and the inbox refused no attempt (a 400 there
        is a signature that did not verify). A repeat under the same webhook-id is allowed:
        delivery is at least once."""
        unique = list({e["webhook_id"]: e for e in inbox}.values())
        types = [e["event"]["type"] for e in unique]
        if not in_flow_order(types):
            raise SmokeFailure(f"events out of order or unexpected: {types}")
        if unique[0]["event"]["data"]["previous_status"] is not None:
            raise SmokeFailure(f"first event has a previous status: {unique[0]}")
        log = http("GET", f"{API}/v1/subscriptions/{sid}/deliveries", token=self.token)["data"]
        if [d["id"] for d in log] != [e["webhook_id"] for e in unique]:
            raise SmokeFailure(f"deliveries {log} differ from what the inbox verified {inbox}")
        codes = [[a["status_code"] for a in d["attempts"]] for d in log]
        if any(d["status"] != "succeeded" or c[-1] != 200 or set(c) - {200, None}
               for d, c in zip(log, codes, strict=True)):
            raise SmokeFailure(f"a delivery was refused or did not succeed: {log}")
        how = ("at the first attempt" if codes == [[200]] * len(log)
               else f"after attempts {codes}")
        print(f"   {sid}: {', '.join(types)}: each verified by the inbox, accepted {how}",
              flush=True)

    def job(self, job_id: str, timeline: list[tuple[str, float]]) -> str:
        """A simulated job and a subscription of the inbox to it; the subscription id."""
        http("POST", f"{SIMULATOR}/_sim/jobs", {
            "job_id": job_id, "timeline": [{"status": s, "after": a} for s, a in timeline]})
        sub = http("POST", f"{API}/v1/subscriptions", {"job_id": job_id, "url": INBOX_IN_STACK},
                   token=self.token)
        return str(sub["id"])

    def healthy(self, service: str) -> int:
        rows = [json.loads(line) for line in
                self.compose("ps", "--format", "json", service, capture=True).splitlines()
                if line.strip()]
        return sum(1 for row in rows if row.get("Health") == "healthy")

    # ------------------------------------------------------------------ steps

    def prepare(self) -> None:
        busy = [f"{port} ({name})" for port, name in PORTS.items() if port_in_use(port)]
        if busy:
            raise SmokeFailure(f"host ports in use: {', '.join(busy)}; the README's curl lines "
                               "need them: stop what listens there")
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                                 "--exclude-standard"], cwd=ROOT, check=True,
                                stdout=subprocess.PIPE).stdout.decode()
        for name in filter(None, listed.split("\0")):
            source = ROOT / name
            if source.is_file():  # a file deleted but not yet committed is skipped
                (self.workdir / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, self.workdir / name)
        shutil.copy(self.workdir / ".env.example", self.workdir / ".env")  # the README's step
        env = dict(line.split("=", 1) for line in (self.workdir / ".env").read_text().splitlines()
                   if line and not line.startswith("#"))
        self.token = env["RELAY_API_TOKENS"].split(",")[0]

    def build(self) -> None:
        self.compose("build")

    def without_simulator(self) -> None:
        """Plain `up` with the shipped .env: its VARG_API_URL is the dev profile's simulator,
        which is not running; /readyz must say so rather than ready."""
        self.compose("up", "-d", profile=False)

        def named() -> str:
            try:
                http("GET", f"{API}/readyz")
            except urllib.error.HTTPError as exc:
                reason = str(json.loads(exc.read()).get("reason", ""))
                return reason if reason.startswith("upstream: unreachable (simulator:8001") else ""
            return ""

        print(f"   /readyz: {until('/readyz naming the missing simulator', named, 60)}",
              flush=True)
        self.compose("down", "-v", profile=False)

    def up(self) -> None:
        self.compose("up", "-d", "--wait", "--wait-timeout", "180")
        for service in ("redis", "api", "worker", "simulator", "inbox"):
            if self.healthy(service) != 1:
                raise SmokeFailure(f"{service} is not healthy after up --wait")

    def readme(self) -> None:
        commands = readme_commands(README.read_text())
        if len(commands) != 3 or not all(c.startswith("curl ") for c in commands):
            raise SmokeFailure(f"expected three curl lines in the README block: {commands}")
        outputs = []
        for command in commands[:2]:
            print(f"$ {command}", flush=True)
            outputs.append(json.loads(sh(command)))
            print(f"  {json.dumps(outputs[-1])[:200]}", flush=True)
        if outputs[0].get("job_id") != "job_demo1" or "id" not in outputs[1]:
            raise SmokeFailure(f"the README's curl lines did not create a job and a "
                               f"subscription: {outputs}")
        print(f"$ {commands[2]}   (until job.completed is there)", flush=True)

        def shown() -> list[dict[str, Any]]:
            entries = json.loads(sh(commands[2]))["data"]
            mine = [e for e in entries if e["event"]["data"]["job_id"] == "job_demo1"]
            return mine if mine[-1:] and mine[-1]["event"]["type"] == "job.completed" else []

        self.delivered(outputs[1]["id"], until("job_demo1's webhooks", shown, 90))

    def restart_redis(self) -> None:
        first = self.subscription_ids()
        before = {sid: self.stored(sid) for sid in first}
        sid = self.job("job_during_restart", [("queued", 0), ("processing", 5), ("completed", 12)])
        until("the second job's first webhook", lambda: self.inbox("job_during_restart"), 30)
        self.compose("restart", "redis")
        self.compose("up", "-d", "--wait", "--wait-timeout", "120")
        inbox = self.completed("job_during_restart")
        after = {sid: self.stored(sid) for sid in first}
        if after != before:
            raise SmokeFailure(f"Redis lost or changed data across its restart:\n"
                               f"before {before}\nafter {after}")
        self.delivered(sid, inbox)
        print(f"   {len(before)} earlier subscription(s) and their delivery logs unchanged",
              flush=True)

    def subscription_ids(self) -> list[str]:
        page = http("GET", f"{API}/v1/subscriptions?limit=100", token=self.token)
        return [str(s["id"]) for s in page["data"]]

    def stored(self, sid: str) -> Any:
        return (http("GET", f"{API}/v1/subscriptions/{sid}", token=self.token),
                http("GET", f"{API}/v1/subscriptions/{sid}/deliveries", token=self.token))

    def scale(self) -> None:
        self.compose("up", "-d", "--wait", "--wait-timeout", "120", "--scale", "worker=3")
        if self.healthy("worker") != 3:
            raise SmokeFailure("three workers are not all healthy")
        sid = self.job("job_scaled", [("queued", 0), ("processing", 1), ("completed", 3)])
        self.delivered(sid, self.completed("job_scaled"))

    def down(self) -> None:
        self.compose("down", "-v", "--remove-orphans")
        left = [kind for kind in ("ps -a", "network ls", "volume ls")
                if docker_lines(*kind.split(), "--filter",
                                f"label=com.docker.compose.project={PROJECT}", "-q")]
        if left:
            raise SmokeFailure(f"left behind after down -v: {left}")

    def report_failure(self) -> None:
        print("\n== containers and their last log lines", flush=True)
        subprocess.run([*COMPOSE, *DEV, "ps", "-a"], cwd=self.workdir, check=False)
        subprocess.run([*COMPOSE, *DEV, "logs", "--no-color", "--tail", "40"], cwd=self.workdir,
                       check=False)


def sh(command: str) -> str:
    done = subprocess.run(["bash", "-c", command], text=True, stdout=subprocess.PIPE,
                          check=False)
    if done.returncode != 0:
        raise SmokeFailure(f"`{command}` exited {done.returncode}")
    return done.stdout


def docker_lines(*args: str) -> list[str]:
    done = subprocess.run(["docker", *args], text=True, stdout=subprocess.PIPE, check=True)
    return done.stdout.split()


def port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="varg-relay-smoke-"))
    smoke = Smoke(workdir)
    started = time.monotonic()
    ok = False
    try:
        smoke.step("copy the project, cp .env.example .env", smoke.prepare)
        smoke.step("build the image", smoke.build)
        smoke.step("docker compose up -d, no dev profile: /readyz names the simulator",
                   smoke.without_simulator)
        smoke.step("docker compose --profile dev up -d --wait", smoke.up)
        smoke.step("the README's curl lines: a job, a subscription, the inbox", smoke.readme)
        smoke.step("restart Redis while a job runs", smoke.restart_redis)
        smoke.step("--scale worker=3", smoke.scale)
        smoke.step("docker compose down -v", smoke.down)
        ok = True
    except (SmokeFailure, OSError, ValueError, KeyError, subprocess.CalledProcessError) as exc:
        print(f"\ncompose smoke FAILED: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        if (workdir / ".env").exists():
            smoke.report_failure()
    finally:
        if not ok and (workdir / ".env").exists():
            subprocess.run([*COMPOSE, *DEV, "down", "-v", "--remove-orphans"], cwd=workdir,
                           check=False)
        shutil.rmtree(workdir, ignore_errors=True)
    setup = float(os.environ.get("SMOKE_SETUP_SECONDS", "0"))
    print("\ncompose smoke timings:")
    print(f"  {setup:6.1f} s  engine, Compose v2 and base images (scripts/container-engine)")
    for name, seconds in smoke.timings:
        print(f"  {seconds:6.1f} s  {name}")
    print(f"  {setup + time.monotonic() - started:6.1f} s  in all", flush=True)
    # The closing line in the form CI runners read as a test summary.
    print(f"compose-smoke: {len(smoke.timings)} passed, {0 if ok else 1} failed", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
