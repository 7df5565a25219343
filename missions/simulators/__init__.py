"""Simulators of an autonomous carrier's API and of a fleet.

They stand outside the product and use only its public entry points.
"""
