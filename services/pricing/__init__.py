"""The pricing core: route search and quoting over pool values, shared by every process.

Pure: it imports the venues' math, the domain and the event contract, never an I/O
library (a test over the import graph keeps it so). Pools reach it through the
`VenueAdapter` port in `ports.py`; the adapters that read a chain live with the chain.
`accounts/` decodes the real programs' pool accounts and quotes as those programs do.
"""
