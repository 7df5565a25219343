"""Django's PostgreSQL backend with a pool that checks idle connections without a round trip (``base``)."""
