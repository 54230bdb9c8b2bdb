"""`POST /api/markets/launches` (admin scope): launch a token and its pool on the chain;
`GET /api/launches`: the launches so far, as the API's fold of `chain.events` has them.

The same call as `oee market launch`: the request is checked first (a bad field is a 400 and
nothing is sent to the chain), then the launch lands on the chain and its `TokenAuthorities`
and `PoolCreated` events are on `chain.events` before the 201.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from services.api.deps import Administrator, Authenticated, LaunchesDep, SettingsDep
from services.api.errors import ApiError
from services.api.models import ErrorBody
from services.common.errors import DependencyUnavailable
from services.domain.launch import (
    InvalidLaunchError,
    LaunchSpec,
    LaunchVenue,
    burns_lp,
    parse_open_in,
)
from services.domain.launches import LaunchedToken
from services.pricing.ports import ChainUnreachable

router = APIRouter(tags=["markets"])


class LaunchRequest(BaseModel):
    """A launch as the admin asks for it; the defaults are the safe (renounced, burned) ones."""

    model_config = ConfigDict(extra="forbid")

    symbol: str
    quote: str = "SOL"
    liquidity: Annotated[Decimal, Field(allow_inf_nan=False)]
    venue: Literal["raydium", "meteora"] = "raydium"
    open_in: Annotated[str, Field(alias="openIn")] = "10s"
    mint_authority: Annotated[Literal["keep", "renounce"], Field(alias="mintAuthority")] = (
        "renounce"
    )
    freeze_authority: Annotated[Literal["keep", "renounce"], Field(alias="freezeAuthority")] = (
        "renounce"
    )
    lp: Literal["burn", "keep"] | None = None  # unset: burn on raydium, nothing on meteora

    def spec(self) -> LaunchSpec:
        return LaunchSpec(
            symbol=self.symbol,
            quote=self.quote,
            liquidity=self.liquidity,
            venue=LaunchVenue(self.venue),
            open_in_seconds=parse_open_in(self.open_in),
            renounce_mint_authority=self.mint_authority == "renounce",
            renounce_freeze_authority=self.freeze_authority == "renounce",
            burn_lp=burns_lp(LaunchVenue(self.venue), self.lp),
        )


@router.post(
    "/api/markets/launches",
    status_code=201,
    responses={s: {"model": ErrorBody} for s in (400, 401, 403, 503)},
)
async def launch(
    request: LaunchRequest, settings: SettingsDep, _admin: Administrator
) -> dict[str, Any]:
    try:
        spec = request.spec()
    except InvalidLaunchError as exc:
        raise ApiError.bad_request("INVALID_LAUNCH", "ERR_060", str(exc)) from None
    # Imported here, by the one admin route that sends transactions: the launch machinery
    # (solana-py's client and models, the SVM's transaction builders) was 20 MB of every
    # API process's memory, which otherwise never signs anything (bench.sockets).
    from services.chain.launch import LaunchFailedError, launch_and_publish

    try:
        launched = await launch_and_publish(settings, spec)
    except (ChainUnreachable, DependencyUnavailable) as exc:
        raise ApiError(503, {"error": "CHAIN_UNAVAILABLE", "message": str(exc)}) from None
    except LaunchFailedError as exc:
        raise ApiError(502, {"error": "LAUNCH_FAILED", "message": str(exc)}) from None
    facts = launched.facts
    return {
        "symbol": launched.symbol,
        "pair": f"{launched.symbol}-{launched.quote}",
        "mint": launched.mint,
        "decimals": launched.decimals,
        "venue": launched.venue.value,
        "pool": launched.pool,
        "lpMint": launched.lp_mint,
        "openTime": launched.open_time,
        "mintAuthority": facts.mint_authority,
        "freezeAuthority": facts.freeze_authority,
        "lpSupply": facts.lp_supply,
        "quoteLiquidity": str(facts.quote_liquidity),
        "signatures": list(launched.signatures),
    }


def launch_view(token: LaunchedToken) -> dict[str, Any]:
    """One launch as the dashboard shows it: the pool, when it opens, who holds the authorities,
    the liquidity and whether the LP was burned (null where the chain has not said yet)."""
    open_at = (
        datetime.fromtimestamp(token.open_time, UTC).isoformat().replace("+00:00", "Z")
        if token.open_time is not None
        else None
    )
    return {
        "symbol": token.symbol,
        "pair": token.pair if token.quote else None,
        "quote": token.quote or None,
        "venue": token.venue or None,
        "mint": token.mint,
        "decimals": token.decimals,
        "pool": token.pool,
        "openTime": token.open_time,
        "openAt": open_at,  # on the chain's clock (a test chain's starts in the past)
        "opened": token.opened_slot is not None,
        "openedSlot": token.opened_slot,
        "mintAuthority": token.mint_authority,
        "freezeAuthority": token.freeze_authority,
        "mintRenounced": token.mint_authority is None,
        "freezeRenounced": token.freeze_authority is None,
        "lpSupply": token.lp_supply,
        "lpBurned": None if token.lp_supply is None else token.lp_supply == 0,
        "quoteLiquidity": format(token.quote_liquidity.normalize(), "f"),
    }


@router.get("/api/launches", responses={s: {"model": ErrorBody} for s in (401, 403, 503)})
async def launches(known: LaunchesDep, _caller: Authenticated) -> dict[str, Any]:
    """Every launched token, newest open time first (a token whose pool is not created yet
    last)."""
    tokens = sorted(known.values(), key=lambda t: -(t.open_time or 0))
    return {"launches": [launch_view(token) for token in tokens]}
