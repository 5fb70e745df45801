"""Server-sent events read incrementally from an HTTP body, as the WHATWG EventSource rules say."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SseDecoder", "SseEvent"]


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One event: its ``event`` name (``"message"`` when the server gave none), its ``data`` lines joined."""

    event: str
    data: str


class SseDecoder:
    """Turns body chunks, split anywhere, into :class:`SseEvent` s.

    Lines end with LF, CRLF or CR; a blank line ends an event; ``data`` lines are joined with LF; lines
    starting with ``:`` (keep-alive comments) and the ``id`` / ``retry`` fields are ignored. An event without
    data is not dispatched. :meth:`close` gives an event the body ended without its blank line (some servers
    leave it out after the last one).
    """

    __slots__ = ("_data", "_event", "_pending")

    def __init__(self) -> None:
        self._pending = b""
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """The events completed by ``chunk``."""
        buffer = self._pending + chunk if self._pending else chunk
        if b"\r" in buffer:
            held = b"\r" if buffer.endswith(b"\r") else b""  # maybe the first half of a CRLF
            if held:
                buffer = buffer[:-1]
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        else:
            held = b""
        lines = buffer.split(b"\n")
        self._pending = lines.pop() + held
        events: list[SseEvent] = []
        for line in lines:
            if line:
                self._field(line)
            else:
                event = self._dispatch()
                if event is not None:
                    events.append(event)
        return events

    def close(self) -> list[SseEvent]:
        """The last event, when the body ended before the blank line that would end it."""
        pending, self._pending = self._pending.rstrip(b"\r"), b""
        if pending:
            self._field(pending)
        event = self._dispatch()
        return [] if event is None else [event]

    def _dispatch(self) -> SseEvent | None:
        event = SseEvent(self._event or "message", "\n".join(self._data)) if self._data else None
        self._data = []
        self._event = ""
        return event

    def _field(self, line: bytes) -> None:
        if line[:1] == b":":
            return
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value.decode("utf-8", "replace"))
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
