"""Who may trade, who may see what, and how much.

`principal` (pure: keys, scopes, credentials) -> `store` (PostgreSQL: hashed keys) and
`tokens` (signed JWTs) -> `authenticator` (one request's credential -> a principal) ->
`services/api/deps.py` (FastAPI dependencies) -> the routes. `ratelimit` is pure;
`mode` guards the disabled mode at start; `cli` is `oee keys`.
"""
