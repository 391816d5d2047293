"""The dashboard (/ui) in a real headless Chromium, driven by Playwright, against the relay API
served by uvicorn (with its lifespan), the in-process worker, the simulator and the verifying
receiver.

Chromium is Debian's (`apt-get install -y chromium`, /usr/bin/chromium; `scripts/test` installs
it when it can); no browser is downloaded. A missing Chromium fails these tests: it never skips
them. With RELAY_SCREENSHOTS=<dir> (`scripts/screenshots`), the screenshots test writes the
README's PNGs there; otherwise into a temporary directory. It also prints the jobs page's weight
and time to first render.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq.worker import Worker
from playwright.async_api import Browser, Page, async_playwright, expect

from config import Settings
from relay.app import create_app
from tests.conftest import OTHER_TOKEN, TOKEN, Receiver, ServerThread, eventually, sim_job

CHROMIUM = Path(os.environ.get("RELAY_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
WAIT_MS = 20_000  # how long an expectation may wait for the page to catch up
DESKTOP = {"width": 1100, "height": 760}
NARROW = {"width": 360, "height": 740}

Json = dict[str, Any]


@pytest.fixture
async def relay(settings: Settings, worker: Worker) -> AsyncIterator[str]:
    """The relay API on a real port (the browser needs one), its worker running."""
    with ServerThread(create_app(settings), lifespan="on") as server:
        yield server.url


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"the browser tests need Chromium at {CHROMIUM}: apt-get install -y chromium")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                    args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


def shots_dir(tmp_path: Path) -> Path:
    target = Path(os.environ.get("RELAY_SCREENSHOTS") or tmp_path / "screenshots")
    target.mkdir(parents=True, exist_ok=True)
    return target


async def subscribe(relay: str, token: str, job_id: str, url: str, **extra: Any) -> Json:
    async with httpx.AsyncClient(base_url=relay,
                                 headers={"authorization": f"Bearer {token}"}) as client:
        response = await client.post("/v1/subscriptions", json={"job_id": job_id, "url": url,
                                                                **extra})
    assert response.status_code == 201, response.text
    body: Json = response.json()
    return body


def api_get(relay: str, path: str, token: str = TOKEN) -> Json:
    response = httpx.get(relay + path, headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body


async def sign_in(browser: Browser, relay: str, token: str = TOKEN,
                  viewport: dict[str, int] = DESKTOP) -> Page:
    context = await browser.new_context(viewport=viewport)  # type: ignore[arg-type]
    page = await context.new_page()
    await page.goto(f"{relay}/ui/")
    await expect(page.locator("h1")).to_have_text("Sign in")
    await page.fill("#token", token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("h1")).to_have_text("Jobs", timeout=WAIT_MS)
    return page


async def open_hash(page: Page, relay: str, fragment: str) -> None:
    await page.goto(f"{relay}/ui/{fragment}")
    await expect(page.locator("main h1")).to_be_visible(timeout=WAIT_MS)


# --- signing in, and a job that changes while the page is open -----------------------------


async def test_sign_in_and_watch_a_new_job_complete_without_reloading(
    browser: Browser, relay: str, simulator: str, receiver: Receiver
) -> None:
    page = await (await browser.new_context(viewport=DESKTOP)).new_page()  # type: ignore[arg-type]
    await page.goto(f"{relay}/ui")
    await expect(page).to_have_title(re.compile("^Sign in"))
    await page.fill("#token", "not_a_token")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("not accepted")
    await page.fill("#token", TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("h1")).to_have_text("Jobs")
    await expect(page).to_have_title(re.compile("^Jobs"))
    for role in ("banner", "navigation", "main"):
        await expect(page.get_by_role(role)).to_have_count(1)
    assert await page.evaluate("sessionStorage.getItem('varg-relay-token')") == TOKEN
    await page.evaluate("window.sameDocument = true")  # gone if the page reloads

    sim_job(simulator, "job_live", [("queued", 0), ("processing", 0.8), ("completed", 2.0)])
    await subscribe(relay, TOKEN, "job_live", receiver.url("/live"))
    row = page.locator('tr[data-job="job_live"]')
    await expect(row).to_contain_text("completed", timeout=WAIT_MS)
    await expect(row.locator(".badge")).to_have_text("completed")
    assert await page.evaluate("window.sameDocument") is True

    await page.get_by_role("link", name="job_live").click()
    await expect(page.locator("h1")).to_contain_text("job_live")
    timeline = page.locator("ol.timeline > li[data-status]")
    await expect(timeline.last).to_contain_text("completed", timeout=WAIT_MS)
    await expect(timeline.last).to_contain_text("job.completed")

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.locator("h1")).to_have_text("Sign in")
    assert await page.evaluate("sessionStorage.getItem('varg-relay-token')") is None


# --- a subscription's deliveries, and redelivering one ---------------------------------------


async def test_redeliver_shows_the_new_attempt(
    browser: Browser, relay: str, simulator: str, receiver: Receiver
) -> None:
    sim_job(simulator, "job_again", [("completed", 0)])
    sub = await subscribe(relay, TOKEN, "job_again", receiver.url("/again"))
    await eventually(lambda: receiver.types("/again") == ["job.completed"])
    page = await sign_in(browser, relay)

    await page.get_by_role("link", name="job_again").click()
    await page.locator(f'table a[href="#/subscriptions/{sub["id"]}"]').click()
    await expect(page.locator("h1")).to_contain_text(sub["id"])
    delivery = page.locator("[data-delivery]")
    await expect(delivery).to_have_count(1)
    attempts = delivery.locator("tr[data-attempt]")
    await expect(attempts).to_have_count(1, timeout=WAIT_MS)
    await expect(attempts.first).to_contain_text("200")

    await page.get_by_role("button", name=re.compile("^Redeliver job.completed")).click()
    await expect(attempts).to_have_count(2, timeout=WAIT_MS)
    await expect(attempts.last).to_contain_text("200")
    await eventually(lambda: len(receiver.events("/again")) == 2)
    assert receiver.rejected == []


# --- tenants -------------------------------------------------------------------------------


async def test_a_second_token_sees_none_of_the_first_tokens_jobs(
    browser: Browser, relay: str, simulator: str, receiver: Receiver
) -> None:
    sim_job(simulator, "job_alice", [("completed", 0)])
    sim_job(simulator, "job_bob", [("completed", 0)])
    alice_sub = await subscribe(relay, TOKEN, "job_alice", receiver.url("/alice"))
    await subscribe(relay, OTHER_TOKEN, "job_bob", receiver.url("/bob"))

    alice = await sign_in(browser, relay, TOKEN)
    await expect(alice.locator('tr[data-job="job_alice"]')).to_be_visible()
    await expect(alice.locator('tr[data-job="job_bob"]')).to_have_count(0)

    bob = await sign_in(browser, relay, OTHER_TOKEN)  # a context of its own: its own session
    await expect(bob.locator('tr[data-job="job_bob"]')).to_be_visible()
    await expect(bob.locator("tbody tr")).to_have_count(1)
    await expect(bob.locator('tr[data-job="job_alice"]')).to_have_count(0)
    for fragment in ("#/jobs/job_alice", f"#/subscriptions/{alice_sub['id']}"):
        await open_hash(bob, relay, fragment)
        await expect(bob.get_by_role("alert")).to_contain_text("Not found")
    await open_hash(bob, relay, "#/jobs?q=job_alice")
    await expect(bob.locator(".empty")).to_contain_text("No job matches")


# --- 360 px and the keyboard ---------------------------------------------------------------


NARROW_CHECK = """() => {
  const root = document.documentElement;
  const controls = [...document.querySelectorAll('a[href], button, input, select')]
    .filter((el) => el.offsetParent !== null && !el.classList.contains('skip'));
  const outside = controls.filter((el) => {
    const box = el.getBoundingClientRect();
    return box.left < 0 || box.right > root.clientWidth + 0.5;
  }).map((el) => el.outerHTML.slice(0, 80));
  const unlabelled = [...document.querySelectorAll('.badge')]
    .filter((el) => !el.textContent.trim()).length;
  return {scroll: root.scrollWidth, width: root.clientWidth, outside, unlabelled,
          controls: controls.length};
}"""


async def test_every_page_fits_360_px_and_works_by_keyboard(
    browser: Browser, relay: str, simulator: str, receiver: Receiver
) -> None:
    job_id = "job_with_a_rather_long_identifier_that_must_wrap_somewhere_0123456789"
    sim_job(simulator, job_id, [("queued", 0), ("completed", 0.3)])
    receiver.plan["/narrow"] = [500] * 8  # the first event fails for good; the page shows it
    sub = await subscribe(relay, TOKEN, job_id, receiver.url("/narrow"),
                          metadata={"order": 42, "note": "x" * 120})
    await eventually(lambda: api_get(relay, "/v1/deliveries?status=failed")["data"],
                     timeout=WAIT_MS / 1000)
    page = await sign_in(browser, relay, viewport=NARROW)
    for fragment in ("#/jobs", f"#/jobs/{job_id}", f"#/subscriptions/{sub['id']}", "#/failed",
                     "#/upstream"):
        await open_hash(page, relay, fragment)
        await expect(page.locator("main table, main .cards, main .timeline").first) \
            .to_be_visible(timeout=WAIT_MS)
        found = await page.evaluate(NARROW_CHECK)
        assert found["scroll"] <= found["width"] == NARROW["width"], (fragment, found)
        assert found["outside"] == [] and found["unlabelled"] == 0, (fragment, found)
        assert found["controls"] > 3, fragment

    await open_hash(page, relay, "#/failed")
    await page.get_by_role("button", name=re.compile("^Redeliver all failed since")).click()
    await expect(page.locator(".result")).to_contain_text(
        re.compile(r"Queued [12] deliver(y|ies) on 1 subscription\."), timeout=WAIT_MS)

    # Keyboard alone: Tab reaches the menu, the filters and each job; Enter opens one.
    await open_hash(page, relay, "#/jobs")
    await page.reload()  # focus starts at the top of the page
    await expect(page.locator(f'tr[data-job="{job_id}"]')).to_be_visible(timeout=WAIT_MS)
    reached: list[str] = []
    while job_id not in reached and len(reached) < 20:
        await page.keyboard.press("Tab")
        reached.append(await page.evaluate(
            "(document.activeElement.id || document.activeElement.textContent || '').trim()"))
    for control in ("skip", "Jobs", "Failed deliveries", "Upstream health", "signout",
                    "status", "q", "Search", job_id):
        assert control in reached, (control, reached)
    await page.keyboard.press("Enter")
    await expect(page.locator("h1")).to_contain_text(job_id)
    assert await page.evaluate("document.activeElement.tagName") == "H1"  # focus follows


# --- screenshots for the README, and the jobs page's weight ----------------------------------


SCREENSHOT_JOBS = [
    ("job_8kx2_img", "fal:flux-schnell", [("queued", 0), ("processing", 0.4), ("completed", 1.2)]),
    ("job_c41d_video", "fal:kling-video", [("queued", 0), ("processing", 0.5), ("completed", 900)]),
    ("job_77aa_tts", "elevenlabs:tts", [("queued", 0), ("processing", 0.3), ("failed", 1.0)]),
    ("job_e90f_img", "fal:flux-pro", [("queued", 0), ("processing", 2), ("completed", 4)]),
    ("job_3b5c_music", "suno:v4", [("queued", 0), ("processing", 900)]),
    ("job_51f0_img", "fal:recraft-v3", [("queued", 0), ("cancelled", 0.8)]),
]
WEIGHT = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const resources = performance.getEntriesByType('resource');
  const api = resources.filter((r) => r.name.includes('/v1/'));
  const assets = resources.filter((r) => !r.name.includes('/v1/'));
  const sum = (list, key) => list.reduce((n, r) => n + r[key], 0);
  const paint = performance.getEntriesByName('first-contentful-paint')[0];
  return {
    assets_transferred: nav.transferSize + sum(assets, 'transferSize'),
    assets_decoded: nav.decodedBodySize + sum(assets, 'decodedBodySize'),
    api_transferred: sum(api, 'transferSize'),
    requests: 1 + resources.length,
    first_contentful_paint_ms: paint ? Math.round(paint.startTime) : null,
    jobs_rendered_ms: Math.round(performance.getEntriesByName('first-render')[0].startTime),
  };
}"""


async def test_screenshots_of_the_main_pages_and_the_jobs_page_weight(
    browser: Browser, relay: str, simulator: str, receiver: Receiver, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shots = shots_dir(tmp_path)
    # Varg answers the first two polls with 429: the upstream page charts them.
    httpx.post(f"{simulator}/_sim/faults", json={"mode": "429", "count": 2, "retry_after": 1}) \
        .raise_for_status()
    receiver.plan["/orders"] = [500] * 12  # every attempt of its events fails
    failing = None
    for job_id, model, steps in SCREENSHOT_JOBS:
        sim_job(simulator, job_id, steps, model=model)
        await subscribe(relay, TOKEN, job_id, receiver.url(f"/{job_id}"),
                        metadata={"order": 1042})
        if job_id == "job_e90f_img":
            failing = await subscribe(relay, TOKEN, job_id, receiver.url("/orders"),
                                      metadata={"order": 1043})
    assert failing is not None
    await subscribe(relay, TOKEN, "job_8kx2_img", receiver.url("/thumbnails"))

    def settled() -> bool:
        failed = api_get(relay, "/v1/deliveries?status=failed")["data"]
        jobs = {j["job_id"]: j["status"] for j in api_get(relay, "/v1/jobs")["data"]}
        return any(d["event_type"] == "job.completed" for d in failed) \
            and jobs["job_51f0_img"] == "cancelled" and jobs["job_77aa_tts"] == "failed" \
            and jobs["job_c41d_video"] == "processing"

    await eventually(settled, timeout=40)
    receiver.plan["/orders"] = []  # the receiver is back: a redelivery succeeds
    failed_count = len(api_get(relay, "/v1/deliveries?status=failed")["data"])

    # A cold load of the jobs page, signed in already (the token is in the tab's session).
    context = await browser.new_context(viewport=DESKTOP)  # type: ignore[arg-type]
    await context.add_init_script(f"sessionStorage.setItem('varg-relay-token', '{TOKEN}')")
    page = await context.new_page()
    await page.goto(f"{relay}/ui/#/jobs")
    await expect(page.locator("tbody tr")).to_have_count(len(SCREENSHOT_JOBS))
    weight = await page.evaluate(WEIGHT)
    with capsys.disabled():
        print(f"\njobs page (cold load): {json.dumps(weight)}")
    assert weight["assets_transferred"] < 30_000, weight

    await page.screenshot(path=shots / "jobs.png", full_page=True)
    await open_hash(page, relay, "#/jobs/job_e90f_img")
    await expect(page.locator("ol.timeline > li[data-status]").last).to_contain_text("completed")
    await page.screenshot(path=shots / "job-timeline.png", full_page=True)
    await open_hash(page, relay, "#/failed")
    await expect(page.locator("tbody tr")).to_have_count(failed_count)
    await page.screenshot(path=shots / "failed-deliveries.png", full_page=True)
    await open_hash(page, relay, f"#/subscriptions/{failing['id']}")
    last = page.locator("[data-delivery]").last
    await expect(last.locator("tr[data-attempt]")).to_have_count(4)
    await last.get_by_role("button", name=re.compile("^Redeliver")).click()
    await expect(last.locator("tr[data-attempt]")).to_have_count(5, timeout=WAIT_MS)
    await page.screenshot(path=shots / "deliveries.png", full_page=True)
    await open_hash(page, relay, "#/upstream")
    await expect(page.locator(".card")).to_have_count(5)
    await expect(page.locator(".card", has_text="429")).to_contain_text("2 in the last hour")
    await page.screenshot(path=shots / "upstream.png", full_page=True)

    narrow = await browser.new_context(viewport=NARROW)  # type: ignore[arg-type]
    await narrow.add_init_script(f"sessionStorage.setItem('varg-relay-token', '{TOKEN}')")
    small = await narrow.new_page()
    await small.goto(f"{relay}/ui/#/jobs?status=completed")
    await expect(small.locator("tbody tr")).to_have_count(2)
    await small.screenshot(path=shots / "jobs-360.png")
    for name in ("jobs", "job-timeline", "failed-deliveries", "deliveries", "upstream",
                 "jobs-360"):
        assert (shots / f"{name}.png").stat().st_size > 10_000, name
    assert receiver.rejected == []
