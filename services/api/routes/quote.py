"""`/api/quote`: what an order would get now, with the route plan, placing nothing."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from services.api.deps import Authenticated, QuoterDep, SettingsDep
from services.api.errors import ApiError
from services.api.messages import camelize
from services.api.models import ErrorBody, QuoteOut
from services.api.validation import Rejection, validate_order
from services.pricing.routing import NoRouteError
from services.venues.pool import InsufficientLiquidityError, Venue

router = APIRouter(prefix="/api", tags=["quotes"])


def _venues(dexes: str | None, exclude: str | None) -> set[Venue]:
    def parse(value: str | None, default: set[Venue]) -> set[Venue]:
        if not value:
            return default
        try:
            return {Venue(part.strip().upper()) for part in value.split(",") if part.strip()}
        except ValueError:
            raise ApiError.bad_request(
                "INVALID_DEX",
                "ERR_030",
                f"unknown venue in {value!r}; use {', '.join(v.value for v in Venue)}",
                "dexes",
            ) from None

    allowed = parse(dexes, set(Venue)) - parse(exclude, set())
    if not allowed:
        raise ApiError.bad_request("INVALID_DEX", "ERR_030", "no venue left to quote", "dexes")
    return allowed


@router.get(
    "/quote",
    response_model=QuoteOut,
    responses={
        400: {"model": ErrorBody},
        401: {"model": ErrorBody},
        422: {"model": ErrorBody},
        503: {"model": ErrorBody},
    },
)
async def get_quote(
    request: Request,
    settings: SettingsDep,
    quoter: QuoterDep,
    _caller: Authenticated,  # any valid key: quotes cost the chain's pools a read
    dexes: Annotated[str | None, Query(description="Only these venues, comma-separated")] = None,
    exclude_dexes: Annotated[str | None, Query(alias="excludeDexes")] = None,
) -> dict[str, Any]:
    """Quote a market order the way the router would route it now."""
    fields = ("tokenIn", "tokenOut", "amount", "slippage")
    params = {k: v for k, v in request.query_params.items() if k in fields}
    valid = validate_order(
        params, default_slippage=settings.default_slippage, max_amount=settings.max_order_amount
    )
    if isinstance(valid, Rejection):
        raise ApiError.rejected(valid)
    try:
        venues = _venues(dexes, exclude_dexes)
        quote = await quoter.quote(
            valid.token_in, valid.token_out, valid.amount, valid.slippage, venues
        )
    except NoRouteError as exc:
        raise ApiError(422, {"error": "NO_ROUTE", "message": str(exc)}) from None
    except InsufficientLiquidityError as exc:
        raise ApiError(422, {"error": "INSUFFICIENT_LIQUIDITY", "message": str(exc)}) from None
    plan = quote.plan
    return {
        "token_in": valid.token_in,
        "token_out": valid.token_out,
        "amount": valid.amount,
        "slippage": valid.slippage,
        "amount_out": plan.amount_out,
        "min_amount_out": plan.min_amount_out,
        "price_impact": plan.price_impact,
        "market_slot": plan.market_slot,
        "quoted_at": plan.quoted_at,
        "reason": quote.reason,
        "route": camelize(plan.model_dump(mode="json")),
        "quotes": camelize([q.model_dump(mode="json") for q in quote.quotes]),
    }
