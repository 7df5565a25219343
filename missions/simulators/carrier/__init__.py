"""A simulated autonomous carrier implementing docs/carrier-api.yaml (``manage.py run_carrier_sim``)."""

from missions.simulators.carrier.server import CarrierSimulator
from missions.simulators.carrier.state import Faults, SimConfig, policy_parse

__all__ = ["CarrierSimulator", "Faults", "SimConfig", "policy_parse"]
