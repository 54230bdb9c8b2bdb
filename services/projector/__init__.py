"""Projector: consumes the order event log and keeps the PostgreSQL read models."""
