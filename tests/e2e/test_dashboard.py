"""The dashboard in a real browser (Debian's Chromium driven by Playwright) on the real processes.

Playwright cannot download its own browser here, so it drives /usr/bin/chromium;
`make install` installs that package when it is missing, and so does this module
as a last resort (it is skipped only when Chromium is absent and cannot be
installed). The screenshot goes to pytest's tmp dir, never into the repository.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from services.common.settings import Settings
from tests.e2e.system import System

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LIFECYCLE = ["pending", "routing", "building", "submitted", "completed"]


def _install_chromium() -> str | None:
    """Install Debian's chromium if it is missing; the reason it is still missing, or None."""
    if CHROMIUM.exists():
        return None
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return f"{CHROMIUM} is absent and apt-get (as root) is not available to install it"
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        try:
            subprocess.run(command, check=True, capture_output=True, timeout=900)
        except (subprocess.SubprocessError, OSError) as exc:
            return f"{CHROMIUM} is absent and `{' '.join(command)}` failed: {exc}"
    return None if CHROMIUM.exists() else f"{CHROMIUM} is absent after installing chromium"


@pytest.fixture(scope="module")
def chromium_path() -> str:
    missing = _install_chromium()
    if missing:
        pytest.skip(missing)
    return str(CHROMIUM)


@pytest.fixture
async def browser(chromium_path: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium_path, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def system(start_system: Any, monkeypatch: pytest.MonkeyPatch) -> System:
    """The real processes, with authentication off (the page then needs no key)."""
    overrides: dict[str, Any] = {}
    if "auth" in Settings.model_fields:
        # The children read the environment; the parent's settings must agree with them.
        monkeypatch.setenv("OEE_AUTH", "disabled")
        overrides["auth"] = "disabled"
    started: System = await start_system(**overrides)
    return started


def _metric(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name}{labels} not in /metrics"
    return float(match.group(1))


async def _open(browser: Browser, url: str, problems: list[str]) -> Page:
    page = await browser.new_page(viewport={"width": 1400, "height": 1100})
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}") if message.type == "error" else None
        ),
    )
    await page.goto(url)
    return page


async def test_an_order_submitted_on_the_page_completes_in_the_table_and_timeline(
    system: System, browser: Browser, tmp_path: Path
) -> None:
    problems: list[str] = []
    page = await _open(browser, f"{system.base_url}/", problems)
    # Live before submitting, so the table learns of the order from the firehose.
    await expect(page.locator("#feed-state")).to_have_attribute("data-state", "live")

    await page.fill("input[name=amount]", "2")
    await page.fill("input[name=slippage]", "0.05")
    await page.click("#order-form button[type=submit]")
    result = page.locator("#submit-result")
    await expect(result).to_contain_text("Accepted: ")
    order_id = (await result.inner_text()).removeprefix("Accepted: ").strip()

    row = page.locator(f'#orders tbody tr[data-order-id="{order_id}"]')
    try:
        await expect(row.locator(".status")).to_have_text("completed", timeout=60_000)
    except AssertionError:
        await page.screenshot(path=str(tmp_path / "dashboard-failed.png"), full_page=True)
        raise AssertionError(f"row never completed; {problems}\n{system.logs()}") from None
    await expect(row.locator(".venue")).not_to_be_empty()

    timeline = page.locator("#timeline-events")
    await expect(page.locator("#timeline-order")).to_have_text(order_id)
    await expect(timeline.locator("li")).to_have_count(len(LIFECYCLE), timeout=20_000)
    assert await timeline.locator("li").evaluate_all("els => els.map(e => e.dataset.status)") == (
        LIFECYCLE
    )
    routed = timeline.locator('li[data-type="OrderRouted"]')
    for venue in ("RAYDIUM", "METEORA"):
        quote = routed.locator(f'table.quotes tr[data-venue="{venue}"]')
        await expect(quote).to_have_count(1)
        amount_out = await quote.locator("td").nth(1).inner_text()
        assert float(amount_out.replace(",", "")) > 0, f"{venue} quote {amount_out!r}"
    await expect(routed.locator("table.quotes tr.chosen")).not_to_have_count(0)
    await expect(timeline.locator('li[data-type="OrderCompleted"]')).to_contain_text("filled on")

    # The running figures have what they need from one completed order.
    await expect(page.locator("#fig-p50")).to_have_text(re.compile(r"\d+(\.\d+)? m?s"))
    await expect(page.locator("#fig-venues")).to_contain_text("100%")
    await expect(page.locator("#fig-failures")).to_have_text("none")

    shot = tmp_path / "dashboard.png"
    await page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0

    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"{system.base_url}/metrics")).text
    assert _metric(metrics, "oee_websocket_clients", '{endpoint="firehose"}') >= 1
    assert _metric(metrics, "oee_stage_latency_seconds_count", '{stage="accept"}') >= 1
    await page.close()
    assert not problems, problems


async def test_the_page_is_served_at_both_addresses_and_shows_api_errors(
    system: System, browser: Browser
) -> None:
    async with httpx.AsyncClient(base_url=system.base_url) as client:
        for path in ("/", "/ui"):
            response = await client.get(path)
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/html")
            assert "/ui/app.js" in response.text
        assert (
            (await client.get("/ui/app.js")).headers["content-type"].startswith("text/javascript")
        )
        assert (await client.get("/ui/../main.py")).status_code == 404
        assert (await client.get("/ui/secret.txt")).status_code == 404

    problems: list[str] = []
    page = await _open(browser, f"{system.base_url}/ui", problems)
    await page.fill("input[name=amount]", "-5")
    await page.click("#order-form button[type=submit]")
    await expect(page.locator("#submit-result.error")).to_contain_text("400")
    await page.close()
    # The 400 itself is logged by Chromium as a failed resource; nothing else may be.
    assert all("400" in p for p in problems), problems
