"""Order execution engine: api -> log -> router -> log -> projector -> PostgreSQL -> api."""
