"""Simulated Solana DEX venues: pure pool math behind one interface, and a seeded market."""
