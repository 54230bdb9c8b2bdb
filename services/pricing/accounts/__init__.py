"""Pure decoders of the CPMM, DLMM and SPL accounts the pricing core quotes from (no I/O)."""
