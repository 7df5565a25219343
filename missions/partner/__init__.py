"""Partner API: OAuth2 clients and secrets, the DRF API, signed webhooks and their WSGI fast path."""
