"""Private RabbitMQ nodes on this machine, for tests that break a broker (kill it, partition it, alarm it).

The shared broker at 127.0.0.1:5672 is never touched: every node started here has

- its own ``RABBITMQ_CONFIG_FILE`` (its own AMQP listener, on 127.0.0.1 unless told otherwise; no
  management listener; ``guest`` allowed from any address, so that network namespaces can log in) and its own
  ``RABBITMQ_CONF_ENV_FILE``, so the system's rabbitmq.conf / rabbitmq-env.conf (which pin 5672 and
  ``rabbit@localhost``) are never read;
- its own ``RABBITMQ_NODENAME`` (``<prefix><n>@localhost``), ``RABBITMQ_DIST_PORT``, and data / log / pid
  directories under one base directory owned by user ``rabbitmq``;
- its own Erlang cookie (``$HOME/.erlang.cookie`` under that base directory, shared by the nodes of one
  :class:`PrivateCluster` so that they can cluster, and unknown to the shared node).

The server runs as user ``rabbitmq`` (as the system runs it), which needs root; without root or RabbitMQ the
caller gets :class:`NodeUnavailable` with the reason. Ports are picked free at random in 20000-45000, so
parallel test runs do not collide.

    with PrivateNode.create("rbsec") as node:      # one node, started; stopped and removed on exit
        url = node.url
        node.ctl("set_vm_memory_high_watermark", "0.0001")

    with PrivateCluster.create(3) as cluster:     # three nodes, clustered
        cluster.nodes[0].kill()                   # SIGKILL
        cluster.nodes[0].start()                  # rejoins the cluster from its data directory

``private_node`` / ``private_cluster`` in tests/conftest.py wrap these as fixtures.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

__all__ = ["NodeUnavailable", "PrivateCluster", "PrivateNode", "free_port", "rabbitmq_available"]

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
CTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
USER = "rabbitmq"
START_TIMEOUT = 120.0
"""Seconds a node may take to answer after start (a loaded 2-core machine takes 10-40 s)."""


class NodeUnavailable(RuntimeError):
    """A private node cannot be started here (no RabbitMQ, not root) or did not come up."""


def rabbitmq_available() -> str | None:
    """``None`` when private nodes can be started here, else why not."""
    if not SERVER.exists() or not CTL.exists():
        return f"RabbitMQ is not installed ({SERVER} missing)"
    if os.geteuid() != 0:
        return "private RabbitMQ nodes run as user rabbitmq, which needs root"
    try:
        import pwd

        pwd.getpwnam(USER)
    except KeyError:
        return f"no user {USER!r}"
    return None


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(taken: set[int]) -> int:
    """A TCP port free on 127.0.0.1, in 20000-45000 (so that rabbitmqctl's port + 10000 stays valid)."""
    for _ in range(500):
        port = random.randint(20000, 45000)
        if port not in taken and _port_free(port):
            taken.add(port)
            return port
    raise NodeUnavailable("no free TCP port found in 20000-45000")


def _chown_tree(path: Path) -> None:
    for root, dirs, files in os.walk(path):
        for name in (root, *(os.path.join(root, d) for d in dirs), *(os.path.join(root, f) for f in files)):
            shutil.chown(name, USER, USER)


class _Started:
    """``with`` starts it and removes it after, whatever happened (a failed start removes it too)."""

    def start(self, timeout: float = START_TIMEOUT) -> None:
        raise NotImplementedError

    def remove(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


@dataclass
class PrivateNode(_Started):
    """One RabbitMQ node of our own: ``start``, ``stop`` (graceful), ``kill`` (SIGKILL), ``restart``."""

    name: str
    """Node name, e.g. ``rbwt1@localhost``."""
    amqp_port: int
    dist_port: int
    home: Path
    """Base directory (owned by ``rabbitmq``): ``.erlang.cookie`` and this node's ``<short name>/`` dir."""
    listen: Sequence[str] = ("127.0.0.1",)
    """Addresses the AMQP listener binds (add a veth address for network-namespace tests)."""
    config: str = ""
    """Extra rabbitmq.conf lines (e.g. ``consumer_timeout = 60000``)."""
    _started: bool = field(default=False, repr=False)

    @classmethod
    def create(
        cls, prefix: str = "rbwt", *, listen: Sequence[str] = ("127.0.0.1",), config: str = ""
    ) -> PrivateNode:
        """A node (not started yet: use as ``with``, or call :meth:`start`) in a fresh base directory."""
        home = _new_home()
        taken: set[int] = set()
        suffix = secrets.token_hex(3)
        return cls(f"{prefix}{suffix}@localhost", free_port(taken), free_port(taken), home, listen, config)

    @property
    def short(self) -> str:
        """The name before ``@``."""
        return self.name.split("@", 1)[0]

    @property
    def dir(self) -> Path:
        """This node's directory: ``rabbitmq.conf``, ``mnesia/``, ``log/``, ``pid``."""
        return self.home / self.short

    @property
    def pid_file(self) -> Path:
        """Where the node writes its OS pid."""
        return self.dir / "pid"

    @property
    def url(self) -> str:
        """``amqp://guest:guest@127.0.0.1:<port>/``."""
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    def url_at(self, host: str) -> str:
        """The URL through another of :attr:`listen`'s addresses."""
        return f"amqp://guest:guest@{host}:{self.amqp_port}/"

    def _write_files(self) -> None:
        for sub in ("mnesia", "log"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        lines = [f"listeners.tcp.{i} = {host}:{self.amqp_port}" for i, host in enumerate(self.listen, 1)]
        lines += ["loopback_users = none", "log.console = false", "log.file.level = info", self.config]
        (self.dir / "rabbitmq.conf").write_text("\n".join(lines) + "\n")
        (self.dir / "rabbitmq-env.conf").write_text("# private test node: no system settings\n")
        (self.dir / "enabled_plugins").write_text("[].\n")
        _chown_tree(self.home)

    def env(self) -> dict[str, str]:
        """The environment the server and rabbitmqctl see for this node."""
        return {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_ENABLED_PLUGINS": "",
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def _as_rabbitmq(self, *argv: str) -> list[str]:
        return ["setpriv", f"--reuid={USER}", f"--regid={USER}", "--init-groups", "--", *argv]

    def ctl(self, *args: str, timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``rabbitmqctl -n <node> ARGS`` (as ``rabbitmq``, with this node's cookie); output as text."""
        done = subprocess.run(
            self._as_rabbitmq(str(CTL), "-n", self.name, *args),
            env=self.env(),
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise NodeUnavailable(
                f"rabbitmqctl -n {self.name} {' '.join(args)} exited {done.returncode}: "
                f"{(done.stdout + done.stderr).strip()[-800:]}"
            )
        return done

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the node (detached) and wait until it answers on AMQP; a second start after a stop or kill
        reuses its data directory (a cluster member rejoins)."""
        starting = self.start_async()
        try:
            _, err = starting.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            starting.kill()
            err = "rabbitmq-server -detached did not return within 60 s"
        if starting.returncode != 0:
            raise NodeUnavailable(f"{self.name} did not start: {err.strip()[-800:]}")
        self.wait_ready(timeout)
        self.heal()

    def heal(self) -> None:
        """Restart RabbitMQ 3.10.8's at-least-once dead-letter supervisor if a restart lost it (as .ci/run
        does for the shared node; rabbitmq-server#16652); harmless when it runs."""
        self.ctl("eval", "supervisor:restart_child(rabbit_sup, rabbit_fifo_dlx_sup).", check=False)

    def start_async(self) -> subprocess.Popen[str]:
        """Start the node detached without waiting (see :meth:`wait_ready`), to start several at once."""
        why = rabbitmq_available()
        if why:
            raise NodeUnavailable(why)
        self._write_files()
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()
        self._started = True
        return subprocess.Popen(
            self._as_rabbitmq(str(SERVER), "-detached"),
            env=self.env(),
            cwd=self.home,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def launch(self, tries: int = 3, within: float = 30.0) -> None:
        """Start the node detached and wait only until its OS process runs (its pid file), so that several
        nodes boot at once; a start that leaves no process (seen when nodes start at the same moment) is
        tried again."""
        for _ in range(tries):
            self.start_async().communicate(timeout=60)
            deadline = time.monotonic() + within
            while time.monotonic() < deadline:
                if self.running():
                    return
                time.sleep(0.2)
        raise NodeUnavailable(f"{self.name} did not start in {tries} tries; {self.log_tail()}")

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until the rabbit application runs (``await_startup``) and the AMQP port accepts."""
        deadline = time.monotonic() + timeout
        while self.pid() is None:
            if time.monotonic() > deadline:
                raise NodeUnavailable(
                    f"{self.name} wrote no pid file within {timeout:g} s; {self.log_tail()}"
                )
            time.sleep(0.2)
        left = max(1.0, deadline - time.monotonic())
        self.ctl("await_startup", "--timeout", str(int(left)), timeout=left + 15)
        host = self.listen[0]
        while True:
            try:
                with socket.create_connection((host, self.amqp_port), timeout=2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise NodeUnavailable(f"{self.name} does not accept on {host}:{self.amqp_port}") from None
                time.sleep(0.2)

    def pid(self) -> int | None:
        """The node's OS pid from its pid file, or ``None`` (not written yet, or no longer running)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def _await_pid_file(self, timeout: float = 20.0) -> None:
        """A node removed while still booting writes its pid file late: wait for it, so it is not left
        running (a pid file already there, even stale, ends the wait at once)."""
        deadline = time.monotonic() + timeout
        while not self.pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)

    def running(self) -> bool:
        """Whether the node's OS process is alive."""
        return self.pid() is not None

    def stop(self, timeout: float = 60.0) -> None:
        """Stop gracefully (``rabbitmqctl stop <pid file>``, which waits for the process); SIGKILL if that
        fails. Does nothing when the node is not running."""
        if not self.running():
            return
        try:
            self.ctl("stop", str(self.pid_file), timeout=timeout)
        except (NodeUnavailable, subprocess.TimeoutExpired):
            self.kill()

    def kill(self) -> None:
        """SIGKILL the node (as a crash would) and wait until it is gone."""
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while self.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        """Stop (gracefully) if running, then start again from the same data directory."""
        self.stop()
        self.start(timeout)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the node's log files, for failure messages."""
        texts = []
        for path in sorted((self.dir / "log").glob("*.log")):
            with contextlib.suppress(OSError):
                texts.append(
                    f"{path.name}: " + " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
                )
        return "; ".join(texts) or "no log"

    def remove(self) -> None:
        """Stop (or kill) the node and delete its base directory."""
        if self._started:
            self._await_pid_file()
            self.stop()
            self.kill()
        shutil.rmtree(self.home, ignore_errors=True)


def _new_home() -> Path:
    home = Path(tempfile.mkdtemp(prefix="relaybus-rmq-"))
    home.chmod(0o755)
    cookie = home / ".erlang.cookie"
    cookie.write_text(secrets.token_hex(16).upper())
    cookie.chmod(0o400)
    shutil.chown(home, USER, USER)
    shutil.chown(cookie, USER, USER)
    return home


@dataclass
class PrivateCluster(_Started):
    """Several :class:`PrivateNode` sharing one cookie, joined into one RabbitMQ cluster."""

    nodes: list[PrivateNode]

    @classmethod
    def create(
        cls, size: int = 3, prefix: str = "rbwt", *, addresses: Sequence[str] = (), config: str = ""
    ) -> PrivateCluster:
        """``size`` nodes (not started: use as ``with``, or call :meth:`start`) in one base directory, each
        listening on 127.0.0.1 and, if given, on its own one of ``addresses`` (for network namespaces)."""
        home = _new_home()
        taken: set[int] = set()
        run = secrets.token_hex(2)
        nodes = []
        for i in range(1, size + 1):
            listen = ("127.0.0.1", addresses[i - 1]) if addresses else ("127.0.0.1",)
            name = f"{prefix}{run}n{i}@localhost"
            nodes.append(PrivateNode(name, free_port(taken), free_port(taken), home, listen, config))
        return cls(nodes)

    @property
    def urls(self) -> list[str]:
        """Each node's AMQP URL, in order."""
        return [node.url for node in self.nodes]

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start every node (at once), then join nodes 2.. to node 1 (``stop_app``, ``join_cluster``,
        ``start_app``)."""
        for node in self.nodes:
            node.launch()
        for node in self.nodes:
            node.wait_ready(timeout)
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.name, timeout=120)
            node.ctl("start_app", timeout=timeout)
            node.wait_ready(timeout)

    def running_nodes(self) -> list[str]:
        """Node names the cluster reports as running (``cluster_status``, asked of the first running node)."""
        for node in self.nodes:
            if node.running():
                done = node.ctl("cluster_status", "--formatter", "json", check=False)
                if done.returncode == 0:
                    return sorted(json.loads(done.stdout)["running_nodes"])
        return []

    def queue(self, name: str, vhost: str = "/") -> dict[str, Any]:
        """A quorum queue as the cluster reports it: ``leader``, ``members``, ``online`` (node names), and
        ``messages``; ``{}`` when no running node knows it."""
        for node in self.nodes:
            if not node.running():
                continue
            done = node.ctl(
                "list_queues", "-p", vhost, "name", "leader", "members", "online", "messages",
                "--formatter", "json", check=False,
            )  # fmt: skip
            if done.returncode == 0:
                for row in json.loads(done.stdout):
                    if row.get("name") == name:
                        return dict(row)
                return {}
        return {}

    def node_named(self, name: str) -> PrivateNode:
        """The node called ``name`` (e.g. a queue's leader)."""
        return next(node for node in self.nodes if node.name == name)

    def ensure_running(self, timeout: float = START_TIMEOUT) -> None:
        """Start every node that is down (a node killed by a test rejoins from its data directory)."""
        for node in self.nodes:
            if not node.running():
                node.start(timeout)

    def remove(self) -> None:
        """Stop every node (kill what does not stop) and delete the base directory."""
        for node in self.nodes:
            with contextlib.suppress(Exception):
                if node._started:
                    node._await_pid_file()
                    node.stop(timeout=30)
            node.kill()
        if self.nodes:
            shutil.rmtree(self.nodes[0].home, ignore_errors=True)
