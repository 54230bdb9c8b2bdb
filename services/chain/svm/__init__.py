"""An in-process Solana VM (LiteSVM) hosting the real Raydium CPMM and Meteora DLMM programs."""
