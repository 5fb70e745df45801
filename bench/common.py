"""What every benchmark shares: statistics, child processes, RSS, the broker URL and unique names.

Benchmarks run their clients and servers as separate processes (one process each side, like a deployment),
started with an argument list (never a shell string), and every child is killed at the end whatever happened.
A child says it is ready by printing one line ``READY <json>`` on stdout; its results come back as one line
``RESULT <json>``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
READY = "READY"
LLM_FLOOR = "no bus, aiohttp alone (the machine's floor)"
"""The LLM-bound client with no broker in the way (``bench.llm_floor``)."""
RESULT = "RESULT"
MiB = 1024 * 1024


def amqp_url() -> str:
    """The broker for benchmarks: ``RELAYBUS_BENCH_AMQP_URL``, else the local RabbitMQ on 127.0.0.1."""
    url = os.environ.get("RELAYBUS_BENCH_AMQP_URL", DEFAULT_AMQP_URL)
    if "127.0.0.1" not in url and "localhost" not in url:
        raise SystemExit(f"benchmarks run only against a broker on 127.0.0.1, not {url.split('@')[-1]!r}")
    return url


def unique(prefix: str) -> str:
    """A name no other run (or helper sharing the broker) uses: ``prefix-<12 hex>``."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# -- statistics ---------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


@dataclass(frozen=True)
class Spread:
    """Median and range of repeated measurements of one figure."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            return cls(float("nan"), float("nan"), float("nan"), 0)
        return cls(statistics.median(values), min(values), max(values), len(values))

    def fmt(self, digits: int = 0, unit: str = "") -> str:
        if self.n == 0:
            return "n/a"
        if self.n == 1:
            return f"{self.median:,.{digits}f}{unit}"
        return f"{self.median:,.{digits}f}{unit} ({self.low:,.{digits}f}-{self.high:,.{digits}f})"


def with_ratios(rows: list[dict[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """Each row (a sweep's point) gets ``vs_first``: ``row[key] / rows[0][key]`` for each of ``keys`` the
    first row has, so that a sweep reads against its own first point measured in the same run."""
    first = rows[0] if rows else {}
    for row in rows:
        row["vs_first"] = {key: row[key] / first[key] for key in keys if first.get(key)}
    return rows


@dataclass
class RunResult:
    """One timed run of ``n`` round trips: wall time and per-task latencies (seconds)."""

    n: int
    wall_s: float
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    cpu_client_s: float = float("nan")
    cpu_server_s: float = float("nan")

    @property
    def throughput(self) -> float:
        return self.n / self.wall_s if self.wall_s > 0 else 0.0

    def p(self, q: float) -> float:
        return percentile(self.latencies_s, q)

    def summary(self) -> dict[str, Any]:
        """What a client process reports: no raw latency list (it can be 5,000 long), its quantiles."""
        return {
            "n": self.n,
            "wall_s": self.wall_s,
            "throughput": self.throughput,
            "p50_ms": self.p(0.5) * 1000,
            "p99_ms": self.p(0.99) * 1000,
            "errors": self.errors,
            "cpu_client_us": self.cpu_client_s / self.n * 1e6,
            "cpu_server_us": self.cpu_server_s / self.n * 1e6,
        }


class CpuMeter:
    """CPU seconds used by this process and by the server process (``pid``) during a measured run."""

    def __init__(self, server_pid: int | None) -> None:
        self._server: Any = None
        if server_pid:
            import psutil

            self._server = psutil.Process(server_pid)

    def _now(self) -> tuple[float, float]:
        server = float("nan")
        if self._server is not None:
            times = self._server.cpu_times()
            server = times.user + times.system
        return time.process_time(), server

    @contextlib.contextmanager
    def measure(self, into: list[float]) -> Iterator[None]:
        """``into`` gets [client CPU s, server CPU s] of the block."""
        client0, server0 = self._now()
        try:
            yield
        finally:
            client1, server1 = self._now()
            into[:] = [client1 - client0, server1 - server0]


def timed(meter: CpuMeter, run: Any) -> Any:
    """Await ``run`` (a coroutine returning a RunResult) and fill in its CPU figures."""

    async def wrapper() -> RunResult:
        cpu: list[float] = []
        with meter.measure(cpu):
            result: RunResult = await run
        result.cpu_client_s, result.cpu_server_s = cpu
        return result

    return wrapper()


async def windowed_calls(
    call: Callable[[str], Awaitable[Any]], n: int, window: int, prompt: str
) -> RunResult:
    """``n`` awaited ``call(prompt)`` round trips with at most ``window`` in flight, each one timed."""
    gate = asyncio.Semaphore(window)
    latencies: list[float] = []

    async def one() -> None:
        async with gate:
            start = time.perf_counter()
            await call(prompt)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return RunResult(n, time.perf_counter() - start, latencies)


async def measure_points(
    call: Callable[[str], Awaitable[Any]], points: list[list[int]], prompt: str, server_pid: int | None
) -> None:
    """A client process's whole job: warm up, run each ``[n, window]`` point timed, report the results."""
    meter = CpuMeter(server_pid)
    await windowed_calls(call, min(50, points[0][0]), 10, prompt)  # warm-up: connections, caches
    results = []
    for n, window in points:
        results.append((await timed(meter, windowed_calls(call, n, window, prompt))).summary())
    emit_result(results)


def rpc_peer_parser(prog: str, *, llm: bool, durable_reply: bool = False) -> argparse.ArgumentParser:
    """The command line every hand-written RPC peer takes: ``serve --queue Q`` and ``client --points``."""
    parser = argparse.ArgumentParser(prog=prog)
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--queue", required=True)
    s.add_argument("--prefetch", type=int, default=1000)
    if llm:
        s.add_argument("--llm-url")
    c = sub.add_parser("client")
    c.add_argument("--queue", required=True)
    c.add_argument("--points", required=True, help="JSON list of [n, window] pairs")
    c.add_argument("--prompt", default="hello")
    c.add_argument("--server-pid", type=int, help="also report this process's CPU per task")
    if durable_reply:
        c.add_argument("--durable-reply", action="store_true", help="a durable quorum reply queue")
    return parser


def run_measured(main: Coroutine[Any, Any, Any]) -> Any:
    """Run a measured process's ``main`` on the loop the relaybus CLI would choose (``RELAYBUS_EVENT_LOOP``).

    The driver sets the variable for every child, so relaybus and its baselines run on the same loop.
    """
    from relaybus.cli._common import event_loop_factory

    with asyncio.Runner(loop_factory=event_loop_factory(os.environ)) as runner:
        return runner.run(main)


def loop_name() -> str:
    """``uvloop`` or ``asyncio``: the loop :func:`run_measured` (and the relaybus CLI) runs on here."""
    from relaybus.cli._common import event_loop_factory

    return "asyncio" if event_loop_factory(os.environ) is None else "uvloop"


def emit(kind: str, payload: Any) -> None:
    """Print one protocol line (``READY`` / ``RESULT``) for the parent process."""
    sys.stdout.write(f"{kind} {json.dumps(payload)}\n")
    sys.stdout.flush()


def emit_result(payload: Any) -> None:
    emit(RESULT, payload)


def as_dict(obj: Any) -> dict[str, Any]:
    return asdict(obj)


# -- child processes ----------------------------------------------------------------------------------------


class Child:
    """A child process started from an argument list; ``stop()`` ends it (SIGTERM, then SIGKILL).

    Its stdout is read by a thread (only to collect protocol lines: no I/O on the event loop of the parent,
    which has none); stderr goes to ``log_path``.
    """

    def __init__(
        self, name: str, argv: Sequence[str], *, env: dict[str, str] | None = None, log_dir: Path
    ) -> None:
        self.name = name
        self.argv = list(argv)
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        full_env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=ROOT,
            text=True,
            # Same process group as the driver: killing the driver's group (as the smoke test does on a
            # timeout) also ends every server it started; each child is a single process.
        )
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, name=f"bench-read-{name}", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self._lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_line(self, kind: str, timeout: float) -> Any:
        """The payload of the next unread ``kind`` line; raises if the child exits or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, line in enumerate(self._lines):
                    if line.startswith(kind + " ") or line == kind:
                        del self._lines[: i + 1]
                        rest = line[len(kind) :].strip()
                        return json.loads(rest) if rest else None
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.tail()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{self.name}: no {kind} line within {timeout:g}s: {self.tail()}")
                self._cond.wait(min(remaining, 0.2))

    def tail(self, lines: int = 15) -> str:
        self._log.flush()
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def rss_mib(self) -> float:
        """Resident set size of the process and its children, in MiB."""
        import psutil  # imported here: servers import this module, and their RSS is measured

        try:
            proc = psutil.Process(self.pid)
            total = proc.memory_info().rss
            for child in proc.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    total += child.memory_info().rss
        except psutil.Error:
            return float("nan")
        return total / MiB

    def cpu_s(self) -> float:
        import psutil

        try:
            times = psutil.Process(self.pid).cpu_times()
        except psutil.Error:
            return float("nan")
        return times.user + times.system

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; returns the exit code."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                self.proc.wait(5)
        self._reader.join(2)
        self._log.close()
        return self.proc.returncode


class Children:
    """Every child a benchmark starts; leaving the ``with`` block stops them all, whatever happened."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._children: list[Child] = []

    def start(self, name: str, argv: Sequence[str], *, env: dict[str, str] | None = None) -> Child:
        child = Child(name, argv, env=env, log_dir=self.log_dir)
        self._children.append(child)
        return child

    def python(self, name: str, module: str, *args: str, env: dict[str, str] | None = None) -> Child:
        """``python -m module args...`` with this interpreter."""
        return self.start(name, [sys.executable, "-m", module, *args], env=env)

    def run(
        self, name: str, module: str, *args: str, timeout: float, env: dict[str, str] | None = None
    ) -> Any:
        """Run ``python -m module args`` to completion and return the payload of its ``RESULT`` line."""
        child = self.python(name, module, *args, env=env)
        try:
            return child.wait_line(RESULT, timeout)
        finally:
            child.stop(grace=5)
            self._children.remove(child)

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def stop_all(self) -> None:
        while self._children:
            self._children.pop().stop(grace=10)


@contextlib.contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as t:`` ... ``t[0]`` is the elapsed seconds after the block."""
    box: list[float] = []
    start = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - start)


def self_rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / MiB


async def wait_for_stop_signal() -> None:
    """Return when the process gets SIGTERM or SIGINT (how the parent stops a server child)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
