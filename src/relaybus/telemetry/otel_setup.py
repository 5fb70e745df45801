"""The CLI's OpenTelemetry SDK set-up from the standard ``OTEL_*`` variables (the library never sets it up).

Tracing is set up only when the environment asks for it: ``OTEL_TRACES_EXPORTER`` names exporters
(``otlp``, ``console``; ``none`` for none), or an OTLP endpoint is set (``OTEL_EXPORTER_OTLP_ENDPOINT`` /
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, the exporter then defaulting to ``otlp``); ``OTEL_SDK_DISABLED=true``
turns it off. The OTLP exporter (HTTP/protobuf) reads its own ``OTEL_EXPORTER_OTLP_*`` variables, the
sampler ``OTEL_TRACES_SAMPLER``; the service is ``OTEL_SERVICE_NAME`` or ``relaybus-<command>``. The
console exporter writes to stderr (stdout is the commands' output). Asked for without ``relaybus[otel]``
installed, it says so once on stderr and the command runs untraced.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import IO, Any

from relaybus.exceptions import ConfigError

__all__ = ["configure_tracing", "exporters_asked"]

_OTLP_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_KNOWN = ("otlp", "console", "none")


def exporters_asked(env: Mapping[str, str]) -> list[str]:
    """The span exporters ``env`` asks for (empty: no tracing); ConfigError for one relaybus can't make."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if not names and any(env.get(key) for key in _OTLP_ENDPOINTS):
        names = ["otlp"]
    unknown = [n for n in names if n not in _KNOWN]
    if unknown:
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER names {', '.join(unknown)}, which relaybus cannot set up; use otlp, "
            "console or none (comma-separated)"
        )
    return [n for n in names if n != "none"]


def configure_tracing(
    env: Mapping[str, str], *, service: str, stderr: IO[str] | None = None
) -> Callable[[], None] | None:
    """Set the global tracer provider up as ``env`` asks; return what flushes and shuts it down at exit,
    or None when nothing was set up."""
    out = sys.stderr if stderr is None else stderr
    names = exporters_asked(env)
    if not names:
        return None
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        print(
            "relaybus: warning: OTEL_* asks for traces but the OpenTelemetry SDK is not installed; "
            "pip install 'relaybus[otel]' (running without tracing)",
            file=out,
        )
        return None
    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or service})
    provider = TracerProvider(resource=resource)
    for name in names:
        exporter: Any
        if name == "console":
            exporter = ConsoleSpanExporter(out=out)
        else:
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            except ImportError:
                print(
                    "relaybus: warning: OTEL_TRACES_EXPORTER=otlp needs the OTLP exporter "
                    "(opentelemetry-exporter-otlp-proto-http); pip install 'relaybus[otel]' (no OTLP export)",
                    file=out,
                )
                continue
            exporter = OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider.shutdown
