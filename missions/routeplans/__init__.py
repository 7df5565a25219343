"""Signed route plans: carriers' plan-signing keys, verification of submitted plans, the en-route gate's data.

docs/decisions/0024-signed-route-plans.md.
"""
