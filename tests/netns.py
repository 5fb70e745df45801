"""Linux network namespaces standing in for separate hosts (needs root and iproute2's ``ip``).

- :class:`NodeAddresses`: one host address per RabbitMQ node (10.x.y.1, .2, ... on ``lo``), so that each
  node of a private cluster listens on an address of its own that namespaces reach.
- :class:`Namespace`: ``ip netns add`` plus a veth pair to the host (10.a.b.1 on the host side, 10.a.b.2
  inside, default route through the host). :meth:`Namespace.partition` cuts it from one address both ways
  with blackhole routes (inside) and a blackhole rule (on the host), as a network partition does: packets
  vanish, nothing is refused; :meth:`Namespace.heal` undoes it. (No iptables on this machine.)

Names carry a random tag, so parallel runs do not collide; everything is removed on exit, whatever happened.
"""

from __future__ import annotations

import random
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from typing import Self

__all__ = ["Namespace", "NodeAddresses", "netns_available"]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return done


def netns_available() -> str | None:
    """``None`` when namespaces can be made here, else why not."""
    if shutil.which("ip") is None:
        return "iproute2's ip is not installed"
    probe = f"rbprobe{secrets.token_hex(3)}"
    done = _ip("netns", "add", probe, check=False)
    if done.returncode != 0:
        return f"cannot create a network namespace: {done.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def _subnet() -> tuple[int, int]:
    return random.randint(200, 250), random.randint(0, 255)


class NodeAddresses:
    """``count`` host addresses (``/32`` on ``lo``: this kernel has no dummy interfaces) for private nodes to
    listen on; a namespace reaches them through its veth pair (the host accepts packets for any of its own
    addresses on any interface)."""

    def __init__(self, count: int) -> None:
        a, b = _subnet()
        self.addresses = [f"10.{a}.{b}.{i}" for i in range(1, count + 1)]
        self._added: list[str] = []

    def __enter__(self) -> Self:
        try:
            for address in self.addresses:
                _ip("addr", "add", f"{address}/32", "dev", "lo")
                self._added.append(address)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        while self._added:
            _ip("addr", "del", f"{self._added.pop()}/32", "dev", "lo", check=False)


class Namespace:
    """One network namespace joined to the host by a veth pair; ``command()`` runs a program inside."""

    def __init__(self, label: str) -> None:
        tag = secrets.token_hex(3)
        self.name = f"rbns-{label}-{tag}"
        self.host_link = f"rbh{tag}"
        self.inner_link = f"rbn{tag}"
        a, b = _subnet()
        self.host_address = f"10.{a}.{b}.1"
        self.address = f"10.{a}.{b}.2"
        self._cut: list[str] = []

    def __enter__(self) -> Self:
        try:
            _ip("netns", "add", self.name)
            _ip("link", "add", self.host_link, "type", "veth", "peer", "name", self.inner_link)
            _ip("link", "set", self.inner_link, "netns", self.name)
            _ip("addr", "add", f"{self.host_address}/30", "dev", self.host_link)
            _ip("link", "set", self.host_link, "up")
            inside = ("netns", "exec", self.name, "ip")
            _ip(*inside, "addr", "add", f"{self.address}/30", "dev", self.inner_link)
            _ip(*inside, "link", "set", self.inner_link, "up")
            _ip(*inside, "link", "set", "lo", "up")
            _ip(*inside, "route", "add", "default", "via", self.host_address)
        except BaseException:
            self.__exit__()
            raise
        return self

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def partition(self, address: str) -> None:
        """Drop every packet between this namespace and ``address``, both ways (until :meth:`heal`)."""
        _ip("netns", "exec", self.name, "ip", "route", "add", "blackhole", f"{address}/32")
        _ip("rule", "add", "from", address, "to", f"{self.address}/32", "blackhole")
        self._cut.append(address)

    def heal(self) -> None:
        """Undo every :meth:`partition`."""
        while self._cut:
            address = self._cut.pop()
            _ip("netns", "exec", self.name, "ip", "route", "del", "blackhole", f"{address}/32", check=False)
            _ip("rule", "del", "from", address, "to", f"{self.address}/32", "blackhole", check=False)

    def __exit__(self, *exc: object) -> None:
        self.heal()
        _ip("link", "del", self.host_link, check=False)  # deletes its peer too
        _ip("netns", "del", self.name, check=False)
