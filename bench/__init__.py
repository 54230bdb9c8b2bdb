"""Benchmarks of the engine, each run as a module from the repository root: `python -m bench.load`.

The scripts (`load`, `sockets`, `replay`, `routing`) share the modules beside them; the
tests import two of them too: `bench.launcher` (the engine as real processes) and
`bench.polling` (waiting for a condition). Nothing here imports `tests`.
"""
