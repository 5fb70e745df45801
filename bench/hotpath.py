"""Profile the relaybus round trip with py-spy: where the worker and the orchestrator spend their CPU.

    python -m bench.hotpath [--n 20000] [--window 1000] [--seconds 10] [--out DIR]

Starts ``relaybus worker bench.agents:NoopAgent`` and an orchestrator client sending ``n`` no-op tasks with
``window`` in flight, lets them reach a steady state, then samples both processes with ``py-spy record`` for
``--seconds`` (idle time not counted, so shares are of CPU time). Writes the collapsed stacks (``*.txt``,
for flame-graph tools) and prints, per process, the functions with the most CPU of their own and the
relaybus lines with the most CPU below them.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import re
import subprocess
import tempfile
import time
from pathlib import Path

from bench import broker
from bench.common import BIN, Children, unique
from bench.run import raw_server, relaybus_worker

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def record(pid: int, seconds: float, rate: int, path: Path) -> subprocess.Popen[bytes]:
    argv = [
        str(BIN / "py-spy"),
        "record",
        "--pid",
        str(pid),
        "--rate",
        str(rate),
        "--duration",
        str(round(seconds)),
    ]
    argv += ["--format", "raw", "--output", str(path)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _short_file(path: str) -> str:
    for marker in ("site-packages/", "src/", "lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def summarize(path: Path, top: int = 25) -> str:
    """Self and inclusive CPU shares from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for raw in path.read_text().splitlines():
        stack, _, count_text = raw.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = []
        for frame in stack.split(";"):
            match = _FRAME.match(frame.strip())
            if match is None:
                frames.append(frame.strip())
                continue
            where = _short_file(match["file"])
            frames.append(
                f"{match['func']} ({where}:{match['line']})"
                if match["line"]
                else f"{match['func']} ({where})"
            )
        own[_function_of(frames[-1])] += count
        seen = set()
        for frame in frames:
            if "relaybus/" in frame and frame not in seen:
                seen.add(frame)
                inclusive[frame] += count
    if not total:
        return f"{path.name}: no samples (was the process busy?)\n"
    lines = [f"{path.name}: {total} samples of CPU", "", "  own CPU, by function:"]
    lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines += ["", "  CPU at and below relaybus lines (inclusive):"]
    lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines) + "\n"


def _function_of(frame: str) -> str:
    # "func (file:line)" -> "func (file)": own time is summed over the lines of a function
    return re.sub(r":\d+\)$", ")", frame)


def profile(
    out: Path, n: int, window: int, seconds: float, rate: int, *, raw: bool, llm_latency: float | None = None
) -> list[Path]:
    """Run one round-trip load (relaybus, or the raw aio-pika baseline with ``raw``) and sample both sides.

    With ``llm_latency`` each task is one call to a fake LLM server with that latency (``LlmAgent``, or the
    raw server's aiohttp call).
    """
    prefix = ("raw-" if raw else "") + ("llm-" if llm_latency is not None else "")
    queue = unique("bench.raw") if raw else f"relaybus.agent.{unique('bench-noop')}"
    points = json.dumps([[n, window]])
    try:
        with Children(out) as children:
            llm_url = None
            if llm_latency is not None:
                fake = children.python("fake-llm", "bench.llm_server", f"--latency={llm_latency}")
                (llm_url,) = fake.wait_line("READY", 30)["urls"]
            if raw:
                server = raw_server(children, queue, window, llm_url)
                client = children.python(
                    f"{prefix}client", "bench.raw_amqp", "client", "--queue", queue, "--points", points
                )
            else:
                agent = queue.removeprefix("relaybus.agent.")
                if llm_url is None:
                    server = relaybus_worker(children, agent, "NoopAgent", window, {})
                else:
                    env = {
                        "RELAYBUS_LLM_PROVIDER": "openai",
                        "RELAYBUS_LLM_MODEL": "fake",
                        "OPENAI_BASE_URL": llm_url,
                        "RELAYBUS_MAX_CONCURRENCY": str(window),
                    }
                    server = relaybus_worker(children, agent, "LlmAgent", window, env)
                client = children.python(
                    "client", "bench.relaybus_side", "client", "--agent", agent, "--points", points
                )
            time.sleep(3.0)  # imports, connection, warm-up: profile the steady state only
            paths = [out / f"{prefix}worker.txt", out / f"{prefix}client.txt"]
            recorders = [
                record(server.pid, seconds, rate, paths[0]),
                record(client.pid, seconds, rate, paths[1]),
            ]
            for recorder in recorders:
                _, err = recorder.communicate(timeout=seconds + 60)
                if recorder.returncode != 0:
                    raise SystemExit(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
            client.wait_line("RESULT", 300)
    finally:
        asyncio.run(broker.delete_queues([queue]))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.hotpath")
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--window", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--baseline", action="store_true", help="also profile the raw aio-pika baseline")
    parser.add_argument("--llm-latency", type=float, help="tasks make one fake LLM call of this latency")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="relaybus-hotpath-"))
    out.mkdir(parents=True, exist_ok=True)
    paths = profile(
        out, args.n, args.window, args.seconds, args.rate, raw=False, llm_latency=args.llm_latency
    )
    if args.baseline:
        paths += profile(
            out, args.n, args.window, args.seconds, args.rate, raw=True, llm_latency=args.llm_latency
        )
    for path in paths:
        print(summarize(path))
    print(f"collapsed stacks in {out}")


if __name__ == "__main__":
    main()
