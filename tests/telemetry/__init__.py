"""Tests of relaybus.telemetry."""
