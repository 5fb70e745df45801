"""The public API: every exported name imports, lazily, and the package is typed."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import relaybus
import relaybus.bus

PACKAGES = ["relaybus", "relaybus.bus", "relaybus.executor", "relaybus.agents", "relaybus.orchestrator"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_imports(package: str) -> None:
    module = importlib.import_module(package)
    missing = [name for name in module.__all__ if getattr(module, name, None) is None]
    assert not missing, f"{package}.__all__ names what it does not provide: {missing}"
    assert sorted(module.__all__) == sorted(set(module.__all__)), "duplicates in __all__"


def test_the_package_is_typed() -> None:
    assert (Path(relaybus.__file__).parent / "py.typed").is_file()


def test_importing_relaybus_loads_neither_the_http_stack_nor_yaml() -> None:
    # A worker imports relaybus; orchestrator, plan files and the executor's HTTP client load on first use.
    code = "import sys, relaybus; print(sorted(m for m in ('httpx', 'aiohttp', 'yaml') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_amqp_bus_is_exported_beside_memory_bus_and_aio_pika_loads_only_when_it_is_used() -> None:
    code = (
        "import sys, relaybus, relaybus.bus\n"
        "print('aio_pika' in sys.modules)\n"
        "from relaybus import AmqpBus\n"
        "from relaybus.bus.amqp import AmqpBus as Defined\n"
        "print('aio_pika' in sys.modules, AmqpBus is Defined is relaybus.bus.AmqpBus)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True", "True"]
    assert "AmqpBus" in relaybus.__all__
    assert "AmqpBus" in relaybus.bus.__all__


def test_every_error_is_a_relaybus_error() -> None:
    from relaybus import exceptions

    for name in exceptions.__all__:
        assert issubclass(getattr(exceptions, name), relaybus.RelaybusError), name
    assert {"ConfigError", "UsageError"} <= set(exceptions.__all__) & set(relaybus.__all__)
    # the two that replace built-ins are still caught by callers' ``except ValueError`` / ``RuntimeError``
    assert issubclass(relaybus.ConfigError, ValueError)
    assert issubclass(relaybus.UsageError, RuntimeError)
