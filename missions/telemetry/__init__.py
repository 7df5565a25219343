"""Telemetry: the normalized event, the ingest path, gaps, replay, the live map and the fleet simulator."""
