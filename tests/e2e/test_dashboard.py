"""The dashboard in a real browser (Debian's Chromium driven by Playwright) on the real processes.

One system (authentication on, the market process and the trigger engine running) and one test
that walks a newcomer's visit: the first minute without a key, the `#key=` link `oee up` prints,
the market list and the live chart, an order submitted on the page, a token launch with two
snipers (one filled on the new pool's chart, one failed by its rug check), an API error shown.
One test rather than several because a system takes ~20 s to start on 2 cores.

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
import psycopg
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from services.api.auth.principal import ADMIN
from services.api.auth.store import create_key
from tests.e2e.system import System
from tests.fixtures.settings import unique

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
async def system(start_system: Any) -> System:
    """The real processes with authentication on, and the market process moving prices."""
    started: System = await start_system(
        processes=("chain", "projector", "router", "api", "market", "triggers"),
        own_database=True,  # the market tables then hold this system's market only
        auth="enabled",
        chain_events_topic=unique("chain.events"),  # this system's launches only
        triggers_metrics_port=0,
        market_ticks_topic=unique("market.ticks"),
        market_trades_topic=unique("market.trades"),
        market_commands_topic=unique("market.commands"),
    )
    return started


def _metric(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name}{labels} not in /metrics"
    return float(match.group(1))


async def first_minute(page: Page, base_url: str, refused: list[str]) -> None:
    """No key, an API that needs one: guidance, not a 401 or a reconnecting badge."""
    await page.goto(f"{base_url}/")
    await expect(page.locator("#feed-state")).to_have_attribute("data-state", "signin")
    await expect(page.locator("#signin")).to_be_visible()
    await expect(page.locator("#signin")).to_contain_text("oee keys create")
    body = await page.locator("body").inner_text()
    assert "401" not in body, body
    assert "reconnecting" not in body, body
    assert refused == []  # nothing was even tried without a key


async def sign_in_by_link(page: Page, base_url: str, key: str) -> None:
    """The link `oee up` prints: the key in the fragment, stored, then gone from the address."""
    await page.goto(f"{base_url}/#key={key}")
    await page.reload()  # a change of fragment alone does not load the page again
    await expect(page.locator("#feed-state")).to_have_attribute("data-state", "live")
    await expect(page.locator("#signin")).to_be_hidden()
    assert "key=" not in page.url
    assert await page.evaluate("localStorage.getItem('oee.apiKey')") == key


async def markets_and_live_chart(page: Page) -> None:
    """The market list with the best venue; the chart's candles, then ticks and candles live."""
    sol = page.locator('#markets tr[data-pair="SOL-USDC"]')
    await expect(sol.locator(".best-sell")).to_have_text(re.compile("Raydium|Meteora"))
    await expect(sol.locator(".mid.raydium")).to_have_text(re.compile(r"\d"))
    chart = page.locator("#chart")
    await expect(chart.locator("canvas").first).to_be_visible()
    await expect(chart).not_to_have_attribute("data-candles", "0", timeout=30_000)
    await expect(chart).to_have_attribute("data-ticks", re.compile(r"^([3-9]|\d\d+)$"))
    sequence = await chart.get_attribute("data-sequence")
    candle = await chart.get_attribute("data-last-candle")
    await expect(chart).not_to_have_attribute("data-sequence", sequence or "")
    await expect(chart).not_to_have_attribute("data-last-candle", candle or "")
    assert int(await chart.get_attribute("data-sequence") or 0) > int(sequence or 0)


async def order_completes_in_the_table_and_timeline(
    page: Page, system: System, problems: list[str], tmp_path: Path
) -> str:
    """An order submitted on the page, followed live to completed; its id."""
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
    return order_id


async def fills_and_open_orders_on_the_chart(
    page: Page, system: System, key: str, problems: list[str], tmp_path: Path
) -> None:
    """The engine's fill marked on the candles; an open limit's price as a line, its distance."""
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=system.base_url, headers=headers) as client:
        resting = await client.post(
            "/api/orders/execute",
            json={
                "tokenIn": "SOL",
                "tokenOut": "USDC",
                "amount": "1",
                "orderType": "limit",
                "limitPrice": "155",  # ~3 % above: on the chart, and not crossed in a minute
            },
        )
        assert resting.status_code == 202, resting.text
    chart = page.locator("#chart")
    order_row = page.locator(f'#conditional tr[data-order-id="{resting.json()["orderId"]}"]')
    await expect(order_row.locator(".distance")).to_have_text(re.compile(r"limit \+\d"))
    await expect(chart).to_have_attribute("data-lines", "1")
    try:
        await expect(chart).to_have_attribute("data-markers", re.compile("^[1-9]"), timeout=60_000)
    except AssertionError:
        await page.screenshot(path=str(tmp_path / "chart-failed.png"), full_page=True)
        raise AssertionError(f"no fill marked; {problems}\n{system.logs()}") from None


def sniper(amount: str, **checks: Any) -> dict[str, Any]:
    return {"orderType": "sniper", "tokenIn": "SOL", "tokenOut": "MEME", "amount": amount,
            "maxPrice": "0.01", "checks": checks}  # fmt: skip


async def a_launch_and_its_snipers(
    page: Page, system: System, key: str, admin_key: str, problems: list[str], tmp_path: Path
) -> None:
    """Two snipers armed before a launch: listed armed with their max price and checks; the
    launch shown (authorities, LP, liquidity, then open); one fails its liquidity check with
    its code and what it saw, the other fills and its fill is on the new pool's chart."""
    trader = {"Authorization": f"Bearer {key}"}
    admin = {"Authorization": f"Bearer {admin_key}"}
    async with httpx.AsyncClient(base_url=system.base_url, timeout=30) as client:
        buyer = await client.post(
            "/api/orders/execute", headers=trader, json=sniper("0.1", lpBurned=True)
        )
        careful = await client.post(
            "/api/orders/execute", headers=trader, json=sniper("0.1", minLiquidity="500")
        )
        assert buyer.status_code == careful.status_code == 202, (buyer.text, careful.text)
        buyer_row = page.locator(f'#snipers tr[data-order-id="{buyer.json()["orderId"]}"]')
        careful_row = page.locator(f'#snipers tr[data-order-id="{careful.json()["orderId"]}"]')
        await expect(buyer_row.locator(".status")).to_have_text("armed", timeout=20_000)
        await expect(buyer_row.locator(".max-price")).to_have_text("0.01 SOL")
        await expect(buyer_row.locator(".checks")).to_have_text(
            "mint renounced, freeze renounced, LP burned"
        )
        await expect(careful_row.locator(".checks")).to_contain_text("liquidity ≥ 500 SOL")

        launched = await client.post(
            "/api/markets/launches",
            headers=admin,
            json={"symbol": "MEME", "quote": "SOL", "liquidity": "200", "openIn": "4s"},
        )
        assert launched.status_code == 201, launched.text
    launch = page.locator('#launches tr[data-symbol="MEME"]')
    await expect(launch).to_contain_text("MEME-SOL")
    await expect(launch.locator(".liquidity")).to_have_text("200 SOL")
    await expect(launch.locator(".mint")).to_have_text("renounced")
    await expect(launch.locator(".freeze")).to_have_text("renounced")
    await expect(launch.locator(".lp")).to_have_text("burned")
    await launch.click()
    await expect(page.locator("#chart-pair")).to_have_text("MEME-SOL")
    await expect(page.locator("#chart-status")).to_contain_text("No trades yet on MEME-SOL")

    await expect(careful_row.locator(".status")).to_have_text("failed RUG_CHECK_LIQUIDITY")
    await expect(careful_row.locator(".detail")).to_contain_text(
        "RUG_CHECK_LIQUIDITY: wanted >= 500, saw 200"
    )
    try:
        await expect(buyer_row.locator(".status")).to_have_text("filled", timeout=60_000)
    except AssertionError:
        await page.screenshot(path=str(tmp_path / "snipe-failed.png"), full_page=True)
        raise AssertionError(f"sniper never filled; {problems}\n{system.logs()}") from None
    await expect(buyer_row.locator(".detail")).to_contain_text("bought ")
    await expect(launch).to_have_attribute("data-state", "open", timeout=10_000)
    await expect(launch.locator(".state")).to_contain_text("open since slot")
    await expect(page.locator("#chart")).to_have_attribute("data-snipe-fills", "1")


async def served_at_both_addresses_and_shows_api_errors(page: Page, base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        for path in ("/", "/ui"):
            response = await client.get(path)
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/html")
            assert "/ui/app.js" in response.text
        assert (
            (await client.get("/ui/app.js")).headers["content-type"].startswith("text/javascript")
        )
        library = await client.get("/ui/vendor/lightweight-charts.standalone.production.js")
        assert library.headers["content-type"].startswith("text/javascript")
        assert "Apache License" in (await client.get("/ui/vendor/LICENSE")).text
        for path in ("/ui/../main.py", "/ui/secret.txt", "/ui/vendor/app.js", "/ui/vendor/x"):
            assert (await client.get(path)).status_code == 404, path

    await page.goto(f"{base_url}/ui")
    await expect(page.locator("#feed-state")).to_have_attribute("data-state", "live")
    await page.fill("input[name=amount]", "-5")
    await page.click("#order-form button[type=submit]")
    await expect(page.locator("#submit-result.error")).to_contain_text("400")


async def test_a_newcomer_signs_in_by_link_watches_the_market_and_trades(
    system: System, browser: Browser, tmp_path: Path
) -> None:
    assert system.settings.database_url
    with psycopg.connect(system.settings.database_url, autocommit=True) as conn:
        _, key = create_key(conn, "dashboard-test")
        _, admin_key = create_key(conn, "dashboard-launcher", (ADMIN,))
    context = await browser.new_context(viewport={"width": 1400, "height": 1400})
    problems: list[str] = []
    refused: list[str] = []
    context.on(
        "response",
        lambda response: refused.append(response.url) if response.status == 401 else None,
    )
    missing: list[str] = []  # a launched pair's chart must not ask what the API does not know
    context.on(
        "response",
        lambda response: missing.append(response.url) if response.status == 404 else None,
    )
    page = await context.new_page()
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}") if message.type == "error" else None
        ),
    )

    await first_minute(page, system.base_url, refused)
    await sign_in_by_link(page, system.base_url, key)
    await markets_and_live_chart(page)
    await order_completes_in_the_table_and_timeline(page, system, problems, tmp_path)
    await fills_and_open_orders_on_the_chart(page, system, key, problems, tmp_path)
    await a_launch_and_its_snipers(page, system, key, admin_key, problems, tmp_path)

    shot = tmp_path / "dashboard.png"
    await page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"{system.base_url}/metrics")).text
    assert _metric(metrics, "oee_websocket_clients", '{endpoint="firehose"}') >= 1
    assert _metric(metrics, "oee_stage_latency_seconds_count", '{stage="accept"}') >= 1
    assert not problems, (problems, missing)

    await served_at_both_addresses_and_shows_api_errors(page, system.base_url)
    assert refused == []
    # The 400 itself is logged by Chromium as a failed resource; nothing else may be.
    assert all("400" in p for p in problems), problems

    # A key the API refuses: told so, and the feed stops instead of reconnecting forever.
    await page.fill("#api-key", "oee_not-a-key")
    await page.dispatch_event("#api-key", "change")
    await expect(page.locator("#signin-reason")).to_contain_text("refused the key")
    await expect(page.locator("#feed-state")).to_have_attribute("data-state", "signin")
    await context.close()
