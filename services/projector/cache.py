"""A bounded cache of order states, so a batch need not fold each order's history again.

Both the live projector and `oee replay rebuild` keep one: re-reading and re-decoding
an order's stored events for every batch that touches it cost more than applying
the batch itself.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping

from services.domain.order import OrderState


class StateCache:
    """The states of recently seen unfinished orders, at most `capacity` of them.

    Finished orders are dropped at once: they are rarely touched again (a redelivery
    at most), and such a miss is reloaded from the rebuilt tables like any other.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._states: OrderedDict[uuid.UUID, OrderState] = OrderedDict()

    def __len__(self) -> int:
        return len(self._states)

    def lookup(
        self, order_ids: Iterable[uuid.UUID]
    ) -> tuple[dict[uuid.UUID, OrderState | None], set[uuid.UUID]]:
        """The cached states of these orders, and the ids not cached."""
        found: dict[uuid.UUID, OrderState | None] = {}
        missing: set[uuid.UUID] = set()
        for order_id in order_ids:
            state = self._states.get(order_id)
            if state is None:
                missing.add(order_id)
            else:
                found[order_id] = state
        return found, missing

    def remember(self, states: Mapping[uuid.UUID, OrderState]) -> list[OrderState]:
        """Keep these newer states; evict finished orders, then the least recently used.

        Returns the unfinished states evicted to stay within capacity.
        """
        for order_id, state in states.items():
            if state.is_final:
                self._states.pop(order_id, None)
                continue
            self._states[order_id] = state
            self._states.move_to_end(order_id)
        evicted: list[OrderState] = []
        while len(self._states) > self.capacity:
            evicted.append(self._states.popitem(last=False)[1])
        return evicted

    def states(self) -> list[OrderState]:
        """Every cached state, least recently used first."""
        return list(self._states.values())
