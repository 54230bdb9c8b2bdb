"""Pricing from on-chain state: pure code that decodes accounts and quotes as the programs do."""
