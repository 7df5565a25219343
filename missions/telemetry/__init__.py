"""Telemetry: the normalized event, the ingest path, gaps, replay and the live map."""
