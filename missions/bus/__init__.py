"""The durable event bus: the event record and telemetry samples relayed to NATS JetStream as CloudEvents."""
