"""Which tokens were launched and where they stand: a pure fold of `chain.events`.

Every reader that needs launches (the API's market list, the sniper's arming, replay) folds the
same records with `fold_chain`, so they agree. A record already folded (same type and pool, or
the same token's authorities at an older slot) changes nothing: re-reading the topic from the
start gives the same state, which is what makes the topic replayable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from types import MappingProxyType

from schemas.chain import ChainEvent, PoolCreated, PoolOpened, TokenAuthorities
from schemas.events import LaunchTarget
from services.domain.launch import LaunchFacts
from services.domain.tokens import Token, TokenRegistry


@dataclass(frozen=True, slots=True)
class LaunchedToken:
    """A launched token and its pool, as the chain's events describe them."""

    symbol: str
    quote: str
    mint: str
    decimals: int
    venue: str
    pool: str | None  # None until its PoolCreated is folded
    open_time: int | None
    opened_slot: int | None  # the first slot at or after the open time, once PoolOpened
    mint_authority: str | None
    freeze_authority: str | None
    authorities_slot: int
    lp_supply: int | None  # 0: burned; None: no LP token (DLMM) or not known yet
    quote_liquidity: Decimal

    @property
    def pair(self) -> str:
        return f"{self.symbol}-{self.quote}"

    def target(self) -> LaunchTarget | None:
        """The launch as the order log names it (a sniper's trigger), once the pool exists."""
        if self.pool is None or self.open_time is None:
            return None
        return LaunchTarget(
            symbol=self.symbol,
            mint=self.mint,
            decimals=self.decimals,
            quote=self.quote,
            venue="RAYDIUM" if self.venue == "RAYDIUM" else "METEORA",
            pool=self.pool,
            open_time=self.open_time,
        )

    def facts(self) -> LaunchFacts | None:
        """What the rug checks read, once the pool exists."""
        if self.pool is None or self.open_time is None:
            return None
        return LaunchFacts(
            mint_authority=self.mint_authority,
            freeze_authority=self.freeze_authority,
            lp_supply=self.lp_supply,
            quote_liquidity=self.quote_liquidity,
            open_time=self.open_time,
        )


Launches = Mapping[str, LaunchedToken]  # by symbol
NO_LAUNCHES: Launches = MappingProxyType({})


def fold_chain(launches: Launches, event: ChainEvent) -> Launches:
    """The launches after one chain event (idempotent: a repeated event changes nothing)."""
    known = launches.get(event.symbol)
    if isinstance(event, TokenAuthorities):
        if known is not None and known.authorities_slot > event.slot:
            return launches  # an older view of the authorities
        token = (
            replace(
                known,
                mint_authority=event.mint_authority,
                freeze_authority=event.freeze_authority,
                authorities_slot=event.slot,
            )
            if known is not None
            else LaunchedToken(
                symbol=event.symbol,
                quote="",
                mint=event.mint,
                decimals=event.decimals,
                venue="",
                pool=None,
                open_time=None,
                opened_slot=None,
                mint_authority=event.mint_authority,
                freeze_authority=event.freeze_authority,
                authorities_slot=event.slot,
                lp_supply=None,
                quote_liquidity=Decimal(0),
            )
        )
    elif isinstance(event, PoolCreated):
        if known is not None and known.pool == event.pool:
            return launches
        token = LaunchedToken(
            symbol=event.symbol,
            quote=event.quote,
            mint=event.mint,
            decimals=event.decimals,
            venue=event.venue,
            pool=event.pool,
            open_time=event.open_time,
            opened_slot=None,
            mint_authority=known.mint_authority if known else None,
            freeze_authority=known.freeze_authority if known else None,
            authorities_slot=known.authorities_slot if known else -1,
            lp_supply=event.lp_supply,
            quote_liquidity=event.quote_liquidity,
        )
    else:
        assert isinstance(event, PoolOpened)
        if known is None or known.pool != event.pool or known.opened_slot is not None:
            return launches
        token = replace(known, opened_slot=event.slot)
    return MappingProxyType({**launches, event.symbol: token})


def fold_all(events: Iterable[ChainEvent], launches: Launches = NO_LAUNCHES) -> Launches:
    """Fold every event in order."""
    for event in events:
        launches = fold_chain(launches, event)
    return launches


def tradeable_tokens(launches: Launches) -> list[Token]:
    """The launched tokens whose pool exists, in symbol order: what a process learns from the
    fold (`TokenRegistry.learn`). A token with only its authorities known has no market yet."""
    return [
        Token(t.symbol, t.decimals, t.mint)
        for _, t in sorted(launches.items())
        if t.pool is not None
    ]


def learn_launched(tokens: TokenRegistry, launches: Launches) -> list[LaunchedToken]:
    """Teach `tokens` every tradeable launched token; the launches it did not know before.

    A launch under a symbol another mint already holds is left out (`conflicting_launches`
    names them): anyone can launch any symbol, and one such launch must not stop a process."""
    learnt = []
    for token in tradeable_tokens(launches):
        if tokens.conflicts(token):
            continue
        if tokens.learn(token):
            learnt.append(launches[token.symbol])
    return learnt


def conflicting_launches(tokens: TokenRegistry, launches: Launches) -> list[LaunchedToken]:
    """Launched tokens whose symbol `tokens` knows as another mint (never tradeable here)."""
    return [launches[t.symbol] for t in tradeable_tokens(launches) if tokens.conflicts(t)]
