"""What `aioecho bench` sends, how, and for how long.

Pure: imports neither asyncio, socket nor ssl."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Final

from ..client.config import ClientConfig
from ..errors import ConfigError

# Bounds of the bench's counts: each is far past what one machine can use, and each refuses a
# typo that would otherwise exhaust memory or descriptors.
MAX_BENCH_CONNECTIONS: Final = 50_000
MAX_PIPELINE: Final = 10_000
MAX_REQUEST_SIZE: Final = 64 * 1024**2
MAX_RATE: Final = 10_000_000.0
MAX_IN_FLIGHT_BYTES: Final = 1024**3


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """What `aioecho bench` sends, how, and for how long."""

    target: ClientConfig = ClientConfig()  # where, and over what (TCP, TLS, Unix)
    connections: int = 10
    pipeline: int = 1  # closed loop: requests in flight per connection
    rate: float = 0.0  # open loop: requests a second in total, at scheduled times; 0: closed
    size: int = 1024  # bytes per request
    duration: float = 10.0  # seconds measured, after the warm-up
    requests: int = 0  # stop after this many measured requests instead; 0: by duration
    warmup: float = 1.0  # seconds run but not measured
    workers: int = 1  # processes sharing the load
    start_at: float | None = None  # wall-clock time (epoch seconds) to start at: several machines
    new_connection: bool = False  # every request on a connection of its own
    tls_resume: bool = False  # --new-connection --tls: offer the last TLS session to the next

    def __post_init__(self) -> None:
        if self.target.udp:
            raise ConfigError("the bench runs over TCP, TLS or Unix sockets, not UDP")
        if self.tls_resume and not (self.target.tls and self.new_connection):
            raise ConfigError(
                "--tls-resume resumes TLS sessions on new connections: "
                "it goes with --tls and --new-connection"
            )
        for flag, value in (
            ("--connections", self.connections),
            ("--pipeline", self.pipeline),
            ("--workers", self.workers),
            ("--size", self.size),
        ):
            if value < 1:
                raise ConfigError(f"{flag} must be at least 1")
        bounds: tuple[tuple[str, float, float, str], ...] = (
            ("--connections", self.connections, MAX_BENCH_CONNECTIONS, "50000"),
            ("--pipeline", self.pipeline, MAX_PIPELINE, "10000"),
            ("--size", self.size, MAX_REQUEST_SIZE, "64MiB"),
            ("--rate", self.rate, MAX_RATE, "10000000 requests/s"),
        )
        for flag, amount, most, shown in bounds:
            if amount > most:
                raise ConfigError(f"{flag} {amount:.15g}: at most {shown}")
        if self.connections < self.workers:
            raise ConfigError("--connections must be at least --workers")
        in_flight = self.connections * self.pipeline * self.size
        if self.closed_loop and in_flight > MAX_IN_FLIGHT_BYTES:
            raise ConfigError(
                f"--connections x --pipeline x --size is {in_flight} bytes in flight: "
                f"at most {MAX_IN_FLIGHT_BYTES // 1024**2} MiB"
            )
        for flag, amount in (
            ("--rate", self.rate),
            ("--warmup", self.warmup),
            ("--requests", self.requests),
        ):
            if amount < 0:
                raise ConfigError(f"{flag} must be zero or more")
        if not self.duration > 0:
            raise ConfigError("--duration must be more than 0 seconds")
        if self.new_connection and self.pipeline > 1:
            raise ConfigError("--new-connection sends one request per connection: no --pipeline")

    @property
    def closed_loop(self) -> bool:
        return self.rate == 0

    def share(self, worker: int) -> BenchConfig:
        """This worker's part of the load: connections, rate and requests split evenly."""
        n = self.workers

        def split(total: int) -> int:
            return total // n + (1 if worker < total % n else 0)

        return dataclasses.replace(
            self,
            connections=split(self.connections),
            rate=self.rate / n,
            requests=split(self.requests) if self.requests else 0,
            workers=1,
        )
