"""The CLI's pure parts: JSON from the API -> what the terminal shows."""

from __future__ import annotations

from typing import Any

from rich.console import Console, RenderableType

from services.client.render import (
    OrderProgress,
    ProcessState,
    StatusReport,
    checks_text,
    clock,
    elapsed,
    flatten_event,
    order_view,
    orders_table,
    progress_view,
    quotes_table,
    status_view,
    venue_name,
    with_sniper_terms,
)

ORDER_ID = "5b4e2f8e-0000-4000-8000-000000000001"
QUOTES = [
    {"venue": "RAYDIUM", "amountOut": "1499.5", "fee": "0.025", "priceImpact": "0.0021"},
    {"venue": "METEORA", "amountOut": "1500.1", "fee": "0.02", "priceImpact": "0.0015"},
]
PLAN = {
    "kind": "single",
    "legs": [
        {
            "venue": "METEORA",
            "tokenIn": "SOL",
            "tokenOut": "USDC",
            "amountIn": "10",
            "amountOut": "1500.1",
            "fee": "0.02",
            "share": "1",
        }
    ],
    "amountOut": "1500.1",
    "minAmountOut": "1485.099",
    "splitImprovementBps": "0",
}


def text(renderable: RenderableType, width: int = 140) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def messages() -> list[dict[str, Any]]:
    """The socket messages of an order that fills on Meteora, as /ws/{orderId} sends them."""
    base = {"orderId": ORDER_ID}
    return [
        {
            **base,
            "status": "connected",
            "message": "Connected",
            "timestamp": "2025-01-01T00:00:00Z",
        },
        {
            **base,
            "type": "OrderSubmitted",
            "sequence": 1,
            "status": "pending",
            "message": "Order received and queued",
            "timestamp": "2025-01-01T00:00:00.000000Z",
            "tokenIn": "SOL",
            "tokenOut": "USDC",
            "amount": "10",
        },
        {
            **base,
            "type": "OrderRouted",
            "sequence": 2,
            "status": "routing",
            "message": "Comparing prices on Raydium and Meteora: routing via Meteora",
            "timestamp": "2025-01-01T00:00:00.150000Z",
            "quotes": QUOTES,
            "plan": PLAN,
            "route": PLAN,
            "reason": "METEORA gives 4 bps more than RAYDIUM",
            "selectedDex": "METEORA",
        },
        {
            **base,
            "type": "OrderCompleted",
            "sequence": 3,
            "status": "completed",
            "message": "Swap completed",
            "timestamp": "2025-01-01T00:00:02.650000Z",
            "selectedDex": "METEORA",
            "amountIn": "10",
            "amountOut": "1500.1",
            "executedPrice": "150.01",
            "fee": "0.02",
            "txHash": "4" * 88,
        },
    ]


def test_venue_names_read_as_words() -> None:
    assert venue_name("RAYDIUM") == "Raydium"
    assert venue_name("METEORA+RAYDIUM") == "Meteora + Raydium"
    assert venue_name(None) == ""


def test_times_are_shown_to_the_millisecond_and_differences_in_seconds() -> None:
    assert clock("2025-01-01T12:34:56.789123Z") == "12:34:56.789"
    assert clock("not a time") == "not a time"
    assert elapsed("2025-01-01T00:00:00Z", "2025-01-01T00:00:02.5Z") == 2.5
    assert elapsed(None, "2025-01-01T00:00:00Z") is None


def test_quotes_of_both_venues_sit_side_by_side_with_the_chosen_one_marked() -> None:
    shown = text(quotes_table(QUOTES, PLAN))
    header = next(line for line in shown.splitlines() if "Raydium" in line)
    assert header.index("Raydium") < header.index("Meteora ✓")
    amounts = next(line for line in shown.splitlines() if "amount out" in line)
    assert "1,499.5 USDC" in amounts
    assert "1,500.1 USDC" in amounts
    # Impact in bps, not the raw fraction; fees in the token they are paid in.
    impacts = next(line for line in shown.splitlines() if "price impact" in line)
    assert "21 bps" in impacts
    assert "15 bps" in impacts
    fees = next(line for line in shown.splitlines() if "fee" in line)
    assert "0.025 SOL" in fees


def test_progress_folds_socket_messages_into_steps_quotes_route_and_fill() -> None:
    progress = OrderProgress(ORDER_ID)
    for message in messages():
        progress.apply(message)
    assert [step[0] for step in progress.steps] == ["pending", "routing", "completed"]
    assert progress.finished
    assert progress.status == "completed"
    shown = text(progress_view(progress))
    assert "Meteora ✓" in shown
    assert "why: METEORA gives 4 bps more than RAYDIUM" in shown
    assert (
        "Filled on Meteora: 10 SOL in, 1,500.1 USDC out at 150.01 USDC/SOL, fee 0.02 SOL" in shown
    )
    assert "submit → completed in 2.650 s" in shown


def test_an_error_message_ends_the_progress_with_its_reason() -> None:
    progress = OrderProgress(ORDER_ID)
    progress.apply(
        {"orderId": ORDER_ID, "status": "error", "error": "ORDER_NOT_FOUND", "message": "nope"}
    )
    assert progress.finished
    assert progress.error == "ORDER_NOT_FOUND: nope"
    assert "ORDER_NOT_FOUND: nope" in text(progress_view(progress))


def test_a_failed_order_shows_its_code_and_attempts() -> None:
    progress = OrderProgress(ORDER_ID)
    progress.apply(
        {
            "type": "OrderFailed",
            "sequence": 5,
            "status": "failed",
            "timestamp": "2025-01-01T00:00:09Z",
            "code": "SLIPPAGE_EXCEEDED",
            "error": "got 1400 < 1485",
            "attempts": 3,
        }
    )
    assert "Failed SLIPPAGE_EXCEEDED: got 1400 < 1485 after 3 attempt(s)" in text(
        progress_view(progress)
    )


def test_stored_events_render_like_the_live_messages() -> None:
    stored = [
        {
            "type": m["type"],
            "sequence": m["sequence"],
            "status": m["status"],
            "occurredAt": m["timestamp"],
            "payload": {
                k: v
                for k, v in m.items()
                if k not in {"type", "sequence", "status", "timestamp", "message", "orderId"}
            },
        }
        for m in messages()
        if "sequence" in m
    ]
    assert flatten_event(stored[1])["quotes"] == QUOTES
    order = {
        "id": ORDER_ID,
        "tokenIn": "SOL",
        "tokenOut": "USDC",
        "amount": "10",
        "slippage": "0.01",
        "status": "completed",
        "selectedDex": "METEORA",
        "amountOut": "1500.1",
        "attempts": 1,
        "error": None,
    }
    shown = text(order_view(order, stored))
    assert ORDER_ID in shown
    assert "SOL → USDC" in shown
    assert "Meteora ✓" in shown
    assert "Filled on Meteora" in shown
    assert "error" not in shown.split("Order ")[0]  # unset fields are left out


def test_the_order_list_shows_rows_and_how_to_get_the_next_page() -> None:
    page = {
        "orders": [
            {
                "id": ORDER_ID,
                "tokenIn": "SOL",
                "tokenOut": "USDC",
                "amount": "10",
                "status": "failed",
                "selectedDex": None,
                "amountOut": None,
                "createdAt": "2025-01-01T00:00:00.123456Z",
            }
        ],
        "total": 41,
        "nextCursor": "abc",
    }
    shown = text(orders_table(page))
    assert ORDER_ID in shown
    assert "failed" in shown
    assert "2025-01-01 00:00:00.123" in shown
    assert "1 of 41 order(s); next page: --cursor abc" in shown


def test_status_shows_processes_lag_dead_letters_and_orders_by_status() -> None:
    report = StatusReport(
        processes=(
            ProcessState("api", "up", "kafka up, postgres up"),
            ProcessState("router", "unknown", "no answer"),
        ),
        lag={"oee-router": 0, "oee-projector": 7, "oee-other": None},
        dead_letters=2,
        orders_by_status={"completed": 5, "failed": 1},
        problems=("something odd",),
    )
    shown = text(status_view(report))
    assert "oee-projector" in shown
    assert " 7" in shown
    assert "dead letters" in shown
    assert " 2" in shown
    assert "retrying" in shown  # every status, zero or not
    assert "! something odd" in shown
    assert report.as_json()["consumerLag"] == {
        "oee-router": 0,
        "oee-projector": 7,
        "oee-other": None,
    }
    assert report.as_json()["ordersByStatus"]["completed"] == 5


def test_status_says_what_it_could_not_read() -> None:
    shown = text(
        status_view(StatusReport((ProcessState("api", "down", "refused"),), None, None, None))
    )
    assert "(Kafka not readable)" in shown
    assert "(API not readable)" in shown


SNIPER_ID = "4f6b2a40-0000-4000-8000-000000000018"
SNIPER_TERMS = {
    "maxPrice": "0.0004",
    "checks": {
        "mintRenounced": True,
        "freezeRenounced": True,
        "lpBurned": True,
        "minLiquidity": "50",
    },
    "onlyAtLaunch": False,
    "autoSell": {"takeProfitPct": "100", "stopLossPct": "30"},
    "priority": "normal",
}


def sniper_row(**changes: Any) -> dict[str, Any]:
    return {
        "id": SNIPER_ID,
        "orderType": "sniper",
        "tokenIn": "SOL",
        "tokenOut": "MEME",
        "amount": "2",
        "slippage": "0.15",
        "status": "open",
        "attempts": 0,
        "createdAt": "2025-01-01T00:00:00Z",
    } | changes


def submitted(**payload: Any) -> dict[str, Any]:
    return {
        "type": "OrderSubmitted",
        "sequence": 0,
        "status": "open",
        "occurredAt": "2025-01-01T00:00:00Z",
        "payload": {"tokenIn": "SOL", "tokenOut": "MEME", "amount": "2", **payload},
    }


def test_an_armed_sniper_is_listed_with_its_token_and_max_price() -> None:
    rows = [sniper_row(**SNIPER_TERMS), {**sniper_row(), "id": ORDER_ID, "orderType": "limit",
                                        "tokenOut": "USDC", "limitPrice": "150"}]  # fmt: skip
    shown = text(orders_table({"orders": rows, "total": 2}), width=200)
    assert "sniper MEME, max price 0.0004 SOL/MEME" in shown
    assert "limit 150 " in shown
    assert "open" in shown


def test_a_sniper_row_without_its_terms_takes_them_from_its_submission() -> None:
    """A read model before migration 0011 has no maxPrice column: the submission has it."""
    filled = with_sniper_terms(sniper_row(), [submitted(**SNIPER_TERMS)])
    assert filled["maxPrice"] == "0.0004"
    assert filled["checks"]["minLiquidity"] == "50"
    row_has_it = sniper_row(maxPrice="0.0005")
    assert with_sniper_terms(row_has_it, [submitted(**SNIPER_TERMS)])["maxPrice"] == "0.0005"
    market = {"id": ORDER_ID, "orderType": "market"}
    assert with_sniper_terms(market, [submitted(maxPrice="1")]) == market


def test_a_sniper_shows_its_checks_and_auto_sell() -> None:
    shown = text(order_view(sniper_row(), [submitted(**SNIPER_TERMS)]), width=200)
    assert "sniper MEME, max price 0.0004 SOL/MEME" in shown
    assert "mint renounced, freeze renounced, LP burned, liquidity ≥ 50 SOL" in shown
    assert "take profit +100 %, stop loss -30 %" in shown
    assert checks_text({"mintRenounced": False, "freezeRenounced": False}) == "none"


def test_a_failed_sniper_shows_the_rug_check_code_and_what_the_chain_showed() -> None:
    error = (
        "rug check failed (RUG_CHECK_MINT_AUTHORITY: wanted renounced, saw DM6Wmo; "
        "RUG_CHECK_LIQUIDITY: wanted >= 50, saw 20)"
    )
    failed = {
        "type": "OrderFailed",
        "sequence": 1,
        "status": "failed",
        "occurredAt": "2025-01-01T00:00:05Z",
        "payload": {"code": "RUG_CHECK_MINT_AUTHORITY", "error": error, "attempts": 0},
    }
    row = sniper_row(status="failed", errorCode="RUG_CHECK_MINT_AUTHORITY", error=error)
    shown = text(order_view(row, [submitted(**SNIPER_TERMS), failed]), width=240)
    assert f"RUG_CHECK_MINT_AUTHORITY: {error}" in shown
    assert "saw DM6Wmo" in shown
    assert "RUG_CHECK_LIQUIDITY: wanted >= 50, saw 20" in shown
