"""The server's settings: where and how it listens, what it allows its peers, and its faults.

Pure: imports neither asyncio, socket nor ssl. server/options.py maps the command line onto
these; the library takes them directly."""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Final

from ..addresses import DEFAULT_HOST, DEFAULT_PORT
from ..errors import ConfigError
from ..units import check_port, format_size

# bytes: a connection stops reading from its peer once this much echo waits to be sent.
DEFAULT_MAX_BUFFER: Final = 256 * 1024
MAX_MAX_BUFFER: Final = 1024**3  # libuv takes the write-buffer limits as C ints
MAX_DRAIN_DELAY: Final = 3600.0  # seconds
MAX_BACKLOG: Final = 65535  # listen()'s backlog; the kernel caps it at somaxconn anyway
MIN_STATS_INTERVAL: Final = 0.1  # seconds: more often floods the log
MAX_FD: Final = 65535


@dataclass(frozen=True, kw_only=True)
class FaultConfig:
    """Misbehaviour on demand, per connection (TCP, TLS, Unix) or per datagram (UDP)."""

    delay: float = 0.0  # seconds each chunk's echo is held back (order kept)
    jitter: float = 0.0  # plus a uniform random part in [0, jitter]
    bandwidth: int = 0  # bytes per second per connection; 0: unlimited
    slice: int = 0  # the echo goes out in writes of at most this many bytes; 0: as read
    slice_delay: float = 0.0  # seconds between two slices
    slice_variation: int = 0  # each slice this many bytes more or less, at random
    reset_after: int | None = None  # reset (RST) once this many bytes were echoed
    close_after: int | None = None  # close cleanly (FIN) there
    stall_after: int | None = None  # stop reading and echoing there, holding the connection
    slow_close: float = 0.0  # seconds between the peer's EOF (and the echo sent) and ours
    share: float = 1.0  # the share of connections the faults apply to
    drop: float = 0.0  # UDP: probability that a datagram is dropped
    duplicate: float = 0.0  # UDP: ... echoed twice
    corrupt: float = 0.0  # UDP: ... echoed with one random byte flipped
    seed: int | None = None  # makes every random choice repeatable; None: a random seed
    # streams, set by the proxy's API (its toxics), not by a flag:
    garble: float = 0.0  # probability that a chunk passes with one byte flipped (corrupt)
    swallow: bool = False  # what arrives is read and dropped (timeout, blackhole)
    reset_on_data: float | None = None  # the first data that comes is dropped, and the
    # connection reset this many seconds later (reset_peer)

    def __post_init__(self) -> None:
        for flag, value in (
            ("--delay", self.delay),
            ("--jitter", self.jitter),
            ("--slice-delay", self.slice_delay),
            ("--slow-close", self.slow_close),
        ):
            if not 0 <= value <= 3600:
                raise ConfigError(f"{flag} must be 0 to 3600 seconds")
        for flag, share in (
            ("--fault-share", self.share),
            ("--drop", self.drop),
            ("--duplicate", self.duplicate),
            ("--corrupt", self.corrupt),
        ):
            if not 0 <= share <= 1:
                raise ConfigError(f"{flag} must be 0 to 1")
        if self.bandwidth < 0 or self.slice < 0:
            raise ConfigError("--bandwidth and --slice must be 0 or more")
        if not 0 <= self.slice_variation < max(1, self.slice):
            raise ConfigError("a slice's variation must be 0 or more, and less than the slice")
        if self.reset_on_data is not None and not 0 <= self.reset_on_data <= 3600:
            raise ConfigError("a reset's delay must be 0 to 3600 seconds")
        if not 0 <= self.garble <= 1:
            raise ConfigError("a corruption's probability must be 0 to 1")
        for flag, count in (
            ("--reset-after", self.reset_after),
            ("--close-after", self.close_after),
            ("--stall-after", self.stall_after),
        ):
            if count is not None and count < 1:
                raise ConfigError(f"{flag} must be at least 1 byte")
        cut = [c for c in (self.reset_after, self.close_after, self.stall_after) if c is not None]
        if len(cut) > 1:
            raise ConfigError("choose one of --reset-after, --close-after and --stall-after")

    @property
    def stream(self) -> bool:
        """Any fault for stream connections."""
        return bool(
            self.delay
            or self.jitter
            or self.bandwidth
            or self.slice
            or self.reset_after
            or self.close_after
            or self.stall_after
            or self.slow_close
            or self.garble
            or self.swallow
            or self.reset_on_data is not None
        )

    @property
    def datagram(self) -> bool:
        """Any fault for UDP."""
        return bool(self.delay or self.jitter or self.drop or self.duplicate or self.corrupt)

    def describe(self, seed: int) -> str:
        """'delay 100ms, jitter 20ms, seed 42': the faults in force, for the start-up line."""
        parts = []
        for name, seconds in (
            ("delay", self.delay),
            ("jitter", self.jitter),
            ("slice-delay", self.slice_delay),
            ("slow-close", self.slow_close),
        ):
            if seconds:
                parts.append(f"{name} {seconds * 1000:g}ms")
        if self.bandwidth:
            parts.append(f"bandwidth {format_size(self.bandwidth)}/s")
        if self.slice:
            parts.append(f"slice {format_size(self.slice)}")
        for name, count in (
            ("reset-after", self.reset_after),
            ("close-after", self.close_after),
            ("stall-after", self.stall_after),
        ):
            if count is not None:
                parts.append(f"{name} {format_size(count)}")
        for name, share in (
            ("drop", self.drop),
            ("duplicate", self.duplicate),
            ("corrupt", self.corrupt),
        ):
            if share:
                parts.append(f"{name} {share:g}")
        if self.share < 1:
            parts.append(f"on {self.share:g} of connections")
        return ", ".join([*parts, f"seed {seed}"])


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """What `aioecho server` listens on and how it treats its peers."""

    hosts: tuple[str, ...] = (DEFAULT_HOST,)  # each name binds every address it resolves to
    port: int = DEFAULT_PORT  # 0 picks one free port, shared by every listener (TCP and UDP)
    unix: str | None = None  # a Unix socket path, instead of hosts and port
    unix_mode: int = 0o600  # permissions of the Unix socket file
    tcp: bool = True  # serve TCP (TLS when tls_cert is set)
    udp: bool = False  # serve UDP (RFC 862)
    udp_rate: float = 200.0  # datagrams a second echoed per source address (burst the same)
    tls_cert: str | None = None  # PEM certificate chain: serve TLS over TCP
    tls_key: str | None = None  # PEM private key for tls_cert
    tls_client_ca: str | None = None  # require client certificates signed by these (mTLS)
    alpn: tuple[str, ...] = ()  # ALPN protocols offered, in order of preference
    tls_handshake_timeout: float = 10.0  # seconds a peer gets to finish the TLS handshake
    max_buffer: int = DEFAULT_MAX_BUFFER  # bytes of pending echo before reading pauses
    drain_timeout: float = 5.0  # seconds open connections get to finish on shutdown
    # seconds between a stop signal and the drain: /readyz says 503 at once, new connections
    # are still served meanwhile (a balancer's next health check takes the server out first)
    drain_delay: float = 0.0
    max_connections: int = 10_000  # more are accepted and closed at once
    idle_timeout: float = 300.0  # seconds with nothing sent or received; 0: never
    backlog: int = 1024  # the listen() queue length (the kernel may cap it: somaxconn)
    stats_interval: float = 0.0  # seconds between statistics lines; 0: only at shutdown
    trace: bool = False  # log every protocol event (trace.py's protocol classes)
    faults: FaultConfig = FaultConfig()  # misbehaviour on demand (faults.py)
    fds: tuple[int, ...] = ()  # inherited listening sockets to serve instead of opening any
    banner: str | None = None  # a line sent on connect: {hostname} {pid} {worker} {port}
    reflect: bool = False  # answer AIOECHO-REFLECT with what the server saw (reflect.py)
    proxy_protocol: bool = False  # every connection starts with a PROXY protocol header
    metrics: tuple[str, int] | None = None  # where to serve /metrics, /healthz and /readyz

    def __post_init__(self) -> None:
        if not self.hosts:
            raise ConfigError("--host: at least one host is needed")
        check_port(self.port)
        if not (self.tcp or self.udp):
            raise ConfigError("nothing to serve: choose --tcp, --udp or both")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("TLS needs both --tls-cert and --tls-key")
        if (self.tls_client_ca is not None or self.alpn) and self.tls_cert is None:
            raise ConfigError("--tls-client-ca and --alpn go with --tls-cert and --tls-key")
        if self.tls_cert is not None and not self.tcp:
            raise ConfigError("TLS is served over TCP only: add --tcp or drop --tls-cert")
        if self.trace and (self.faults.stream or self.faults.datagram):
            raise ConfigError("--trace does not go with fault options")
        if not self.tls_handshake_timeout > 0:
            raise ConfigError("--tls-handshake-timeout must be more than 0 seconds")
        if self.unix is not None and self.udp:
            raise ConfigError("--unix serves a stream socket: it does not go with --udp")
        if not 0 <= self.unix_mode <= 0o777:
            raise ConfigError("--unix-mode must be an octal mode from 000 to 777")
        if not self.udp_rate > 0:
            raise ConfigError("--udp-rate must be more than 0 datagrams a second")
        if not 1 <= self.max_buffer <= MAX_MAX_BUFFER:
            raise ConfigError(f"--max-buffer must be 1 byte to {format_size(MAX_MAX_BUFFER)}")
        if self.drain_timeout < 0:
            raise ConfigError("--drain-timeout must be zero or more seconds")
        if not 0 <= self.drain_delay <= MAX_DRAIN_DELAY:
            raise ConfigError(f"--drain-delay must be 0 to {MAX_DRAIN_DELAY:g} seconds")
        if self.max_connections < 1:
            raise ConfigError("--max-connections must be at least 1")
        if self.idle_timeout < 0:
            raise ConfigError("--idle-timeout must be zero or more seconds")
        if self.stats_interval and not MIN_STATS_INTERVAL <= self.stats_interval <= 86400:
            raise ConfigError(
                f"--stats-interval must be 0 (only at shutdown) or {MIN_STATS_INTERVAL:g} to "
                "86400 seconds"
            )
        if not 1 <= self.backlog <= MAX_BACKLOG:
            raise ConfigError(f"--backlog must be 1 to {MAX_BACKLOG}")
        if self.proxy_protocol and not self.tcp:
            raise ConfigError("--proxy-protocol is for stream connections: add --tcp")
        if any(not 3 <= fd <= MAX_FD for fd in self.fds):
            raise ConfigError(
                f"--fd must be 3 to {MAX_FD} (0-2 are standard input, output and error)"
            )
        if len(set(self.fds)) != len(self.fds):
            repeated = next(fd for fd in self.fds if self.fds.count(fd) > 1)
            raise ConfigError(f"--fd {repeated} is given twice")
        if self.banner is not None and (self.trace or self.faults.stream):
            raise ConfigError("--banner does not go with --trace or the stream fault options")
        if self.banner is not None:
            check_banner(self.banner)
        if self.reflect and (self.trace or self.faults.datagram):
            raise ConfigError("--reflect does not go with --trace or the UDP fault options")


BANNER_FIELDS: Final = ("hostname", "pid", "worker", "port")
MAX_BANNER: Final = 4096  # bytes of --banner once its fields are filled in


def check_banner(template: str) -> None:
    """--banner: literal text and the fields {hostname} {pid} {worker} {port}, nothing else (no
    format spec, conversion, attribute or index: a user's string never reaches str.format with
    more than names), at most MAX_BANNER bytes with the longest values filled in."""
    hint = "the fields are {hostname}, {pid}, {worker}, {port} (double a brace to send one)"
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as err:
        raise ConfigError(f"--banner: {err}: {hint}") from None
    longest = {"hostname": 255, "pid": 10, "worker": 4, "port": 5}
    size = 0
    for literal, field, spec, conversion in parts:
        size += len(literal.encode())
        if field is None:
            continue
        if field not in BANNER_FIELDS or spec or conversion:
            shown = (
                "{"
                + field
                + (f"!{conversion}" if conversion else "")
                + (f":{spec}" if spec else "")
                + "}"
            )
            raise ConfigError(f"--banner: {shown} is not a field: {hint}")
        size += longest[field]
    if size > MAX_BANNER:
        raise ConfigError(f"--banner must be at most {MAX_BANNER} bytes, fields filled in")
