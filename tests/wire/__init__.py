"""Conformance of the wire contract (docs/wire.md) with foreign AMQP code and generated documents."""
