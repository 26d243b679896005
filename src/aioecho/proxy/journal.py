"""The proxy API's event journal: what happened to which connection, as NDJSON lines.

Each event is a flat JSON object with a sequence number (`seq`, from 1), an RFC 3339 time and
its `event` name; `GET /events?since=N` returns those after N, `--journal FILE` appends every
one to a file. Memory is bounded: the last MAX_EVENTS are kept (the file keeps all).

    proxy_created proxy_updated proxy_deleted proxy_enabled proxy_disabled reset
    toxic_added toxic_updated toxic_removed scenario_step
    connection_opened   proxy, connection (its number in the proxy), client
    toxic_applied       proxy, connection, toxic, type, stream
    connection_closed   proxy, connection, bytes_upstream, bytes_downstream, ended_by
                        (client, upstream, proxy, toxic), toxic (its name), reset (true: RST)
"""

from __future__ import annotations

import collections
import json
import time
from typing import IO, Any, Final

from ..logs import rfc3339

__all__ = ["MAX_EVENTS", "Journal"]

MAX_EVENTS: Final = 10_000  # events kept for GET /events (each a few hundred bytes)


class Journal:
    """Events in order, the last max_events of them kept; written to `out` as they come."""

    def __init__(self, out: IO[str] | None = None, max_events: int = MAX_EVENTS) -> None:
        self._events: collections.deque[dict[str, Any]] = collections.deque(maxlen=max_events)
        self._out = out
        self.seq = 0  # the last event's number

    def add(self, event: str, **fields: Any) -> dict[str, Any]:
        self.seq += 1
        entry = {"seq": self.seq, "time": rfc3339(time.time()), "event": event, **fields}
        self._events.append(entry)
        if self._out is not None:
            self._out.write(json.dumps(entry) + "\n")
            self._out.flush()
        return entry

    def since(self, seq: int = 0) -> list[dict[str, Any]]:
        """The events after number seq that are still kept, oldest first."""
        if not self._events or seq >= self.seq:
            return []
        first = self._events[0]["seq"]
        return list(self._events)[max(0, seq + 1 - first) :]

    def ndjson(self, seq: int = 0) -> bytes:
        return "".join(json.dumps(event) + "\n" for event in self.since(seq)).encode()
