"""Hypothesis strategies for the Solana VM property tests: pool reserves, swap sizes, clocks."""

from __future__ import annotations

from hypothesis import strategies as st

# CPMM reserves in base units: from a thin pool to a deep one, below u64 with room for swaps.
cpmm_reserves = st.integers(min_value=10**4, max_value=10**17)
cpmm_decimals = st.sampled_from([5, 6, 9])
# Swap sizes spread over orders of magnitude: 10^k plus noise, k uniform.
swap_sizes = st.builds(
    lambda k, noise: max(1, 10**k + noise * 10 ** max(k - 1, 0)),
    st.integers(min_value=0, max_value=13),
    st.integers(min_value=-9, max_value=9),
)
directions = st.booleans()
# Seconds since the DLMM pair's last update: inside the filter period, the decay window, after.
dlmm_elapsed = st.sampled_from([0, 1, 29, 299, 300, 600, 1199, 1200, 5_000, 86_400])
