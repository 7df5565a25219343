"""Tendering: dispatch and waterfall, the outbound carrier client and its breaker, the dispatcher's console pages."""
