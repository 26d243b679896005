"""systemd's notify protocol, for `Type=notify` units: READY=1 once every listener is open,
STOPPING=1 when the drain begins, STATUS= lines with the connection counts, and WATCHDOG=1 at
half of WatchdogSec from the event loop itself, so that a stuck loop misses its pings and
systemd restarts it. Each is a datagram on the Unix socket $NOTIFY_SOCKET ('@' for the
abstract namespace); that is the whole protocol (sd_notify(3)), a few lines, so no library.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from typing import Final

__all__ = ["Notifier"]

_log = logging.getLogger("aioecho.main")

STATUS_EVERY: Final = 10.0  # seconds between STATUS= lines when there is no watchdog
MIN_PING: Final = 0.05  # seconds between watchdog pings, at least


class Notifier:
    """Sends to systemd's notify socket; a send that fails is one warning, then silence."""

    def __init__(self, address: str, watchdog_usec: int | None = None) -> None:
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._failed = False
        # seconds per ping: half the period, and never a busy loop (WATCHDOG_USEC=1)
        self.watchdog = max(MIN_PING, watchdog_usec / 1e6 / 2) if watchdog_usec else None

    @classmethod
    def from_environment(cls) -> Notifier | None:
        """The notifier systemd asked for, or None. NOTIFY_SOCKET leaves the environment: the
        processes this one starts (--workers) are not the service's main process."""
        address = os.environ.pop("NOTIFY_SOCKET", None)
        if not address:
            return None
        usec: int | None = None
        watchdog_pid = os.environ.pop("WATCHDOG_PID", None)
        text = os.environ.pop("WATCHDOG_USEC", None)
        if text and (watchdog_pid is None or watchdog_pid == str(os.getpid())):
            try:
                usec = int(text)
            except ValueError:
                _log.warning("WATCHDOG_USEC=%r is not a number: no watchdog pings", text)
        return cls(address, usec if usec and usec > 0 else None)

    def send(self, *fields: str) -> None:
        """One datagram: 'READY=1', 'STATUS=...' and so on, a line each."""
        try:
            self._sock.sendto("\n".join(fields).encode(), self._address)
        except OSError as err:
            if not self._failed:
                _log.warning("cannot notify systemd at %s: %s", self._address, err.strerror)
            self._failed = True

    async def keep_alive(self, status: Callable[[], str]) -> None:
        """WATCHDOG=1 (with STATUS=) every half watchdog period, or STATUS= every STATUS_EVERY
        seconds without one: from the event loop, so a blocked loop sends nothing."""
        every = self.watchdog or STATUS_EVERY
        while True:
            fields = [f"STATUS={status()}"]
            if self.watchdog:
                fields.append("WATCHDOG=1")
            self.send(*fields)
            await asyncio.sleep(every)

    def close(self) -> None:
        self._sock.close()
