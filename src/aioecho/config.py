"""Declared settings of the server and the client, with their units and defaults.

Pure: imports neither asyncio, socket nor ssl. The CLI maps its arguments onto these in one
place each (cli.server_config, cli.client_config); the library takes them directly.
"""

from __future__ import annotations

import dataclasses
import string
from dataclasses import dataclass
from typing import Final

from .addresses import host_port
from .errors import ConfigError

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_MAX_BUFFER",
    "DEFAULT_PORT",
    "BenchConfig",
    "CheckConfig",
    "ClientConfig",
    "FaultConfig",
    "PingConfig",
    "ProxyConfig",
    "ServerConfig",
    "format_size",
    "parse_count",
    "parse_mode",
    "parse_percent",
    "parse_port",
    "parse_probability",
    "parse_rate",
    "parse_seconds",
    "parse_size",
    "parse_start_time",
    "parse_target",
]

DEFAULT_HOST: Final = "localhost"
DEFAULT_PORT: Final = 10000
# bytes: a connection stops reading from its peer once this much echo waits to be sent.
DEFAULT_MAX_BUFFER: Final = 256 * 1024
MAX_MAX_BUFFER: Final = 1024**3  # libuv takes the write-buffer limits as C ints
MAX_DRAIN_DELAY: Final = 3600.0  # seconds
MAX_BACKLOG: Final = 65535  # listen()'s backlog; the kernel caps it at somaxconn anyway
MIN_STATS_INTERVAL: Final = 0.1  # seconds: more often floods the log
MAX_FD: Final = 65535

_SIZE_UNITS: Final = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
}


def parse_port(text: str) -> int:
    """A TCP/UDP port number, 0 (any free port) to 65535."""
    try:
        port = int(text, 10)
    except ValueError:
        raise ConfigError(f"invalid port {text!r}: not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"invalid port {port}: must be 0 to 65535")
    return port


def _check_port(port: int) -> None:
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port}: must be 0 to 65535")


_TIME_UNITS: Final = {"": 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "m": 60.0, "h": 3600.0}


def parse_seconds(text: str) -> float:
    """A non-negative, finite duration: seconds ('5', '0.25') or with a unit ('100ms', '2m')."""
    stripped = text.strip()
    number = stripped.rstrip("hmsu").strip()
    unit = stripped[len(number) :].strip()
    try:
        value = float(number) * _TIME_UNITS[unit]
    except (ValueError, KeyError):
        raise ConfigError(f"invalid duration {text!r}: not a number of seconds") from None
    if not 0 <= value < float("inf"):
        raise ConfigError(f"invalid duration {text!r}: must be zero or more seconds")
    return value


def parse_probability(text: str) -> float:
    """A probability or share, 0 to 1 ('0.3')."""
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"invalid probability {text!r}: not a number") from None
    if not 0 <= value <= 1:
        raise ConfigError(f"invalid probability {text!r}: must be 0 to 1")
    return value


def parse_size(text: str) -> int:
    """A byte count with an optional unit: '64', '1KiB', '10KB', '1MiB' (KB=1000, KiB=1024)."""
    stripped = text.strip()
    digits = stripped.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ").strip()
    unit = stripped[len(digits) :].strip().lower() if digits else stripped.lower()
    if not digits or unit not in _SIZE_UNITS:
        raise ConfigError(f"invalid size {text!r}: use a number with an optional unit, e.g. 1KiB")
    try:
        number = float(digits) if "." in digits else int(digits, 10)
    except ValueError:
        raise ConfigError(f"invalid size {text!r}: not a number") from None
    exact = number * _SIZE_UNITS[unit]
    if not exact >= 0 or exact == float("inf"):
        raise ConfigError(f"invalid size {text!r}: must be zero or more bytes")
    if exact != int(exact):
        raise ConfigError(f"invalid size {text!r}: not a whole number of bytes")
    return int(exact)


def format_size(size: int) -> str:
    """The shortest exact form parse_size reads back: 262144 -> '256KiB', 1000 -> '1000'."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


@dataclass(frozen=True, kw_only=True)
class FaultConfig:
    """Misbehaviour on demand, per connection (TCP, TLS, Unix) or per datagram (UDP)."""

    delay: float = 0.0  # seconds each chunk's echo is held back (order kept)
    jitter: float = 0.0  # plus a uniform random part in [0, jitter]
    bandwidth: int = 0  # bytes per second per connection; 0: unlimited
    slice: int = 0  # the echo goes out in writes of at most this many bytes; 0: as read
    slice_delay: float = 0.0  # seconds between two slices
    reset_after: int | None = None  # reset (RST) once this many bytes were echoed
    close_after: int | None = None  # close cleanly (FIN) there
    stall_after: int | None = None  # stop reading and echoing there, holding the connection
    slow_close: float = 0.0  # seconds between the peer's EOF (and the echo sent) and ours
    share: float = 1.0  # the share of connections the faults apply to
    drop: float = 0.0  # UDP: probability that a datagram is dropped
    duplicate: float = 0.0  # UDP: ... echoed twice
    corrupt: float = 0.0  # UDP: ... echoed with one random byte flipped
    seed: int | None = None  # makes every random choice repeatable; None: a random seed

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
    proxy_protocol: bool = False  # every connection starts with a PROXY protocol header
    metrics: tuple[str, int] | None = None  # where to serve /metrics, /healthz and /readyz

    def __post_init__(self) -> None:
        if not self.hosts:
            raise ConfigError("--host: at least one host is needed")
        _check_port(self.port)
        if not (self.tcp or self.udp):
            raise ConfigError("nothing to serve: choose --tcp, --udp or both")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("TLS needs both --tls-cert and --tls-key")
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


@dataclass(frozen=True, kw_only=True)
class ClientConfig:
    """Where `aioecho client` connects and how long it waits."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    unix: str | None = None  # a Unix socket path, instead of host and port
    tls: bool = False  # speak TLS, verifying the server unless insecure
    cafile: str | None = None  # PEM CA certificates to verify the server with
    insecure: bool = False  # TLS without any verification
    udp: bool = False  # each message is one datagram
    retries: int = 3  # UDP: sends of a datagram after the first before giving up
    timeout: float = 10.0  # seconds: bounds the connect and any silence while echo is owed

    def __post_init__(self) -> None:
        _check_port(self.port)
        if not self.timeout > 0:
            raise ConfigError("--timeout must be more than 0 seconds")
        if self.udp and (self.tls or self.unix is not None):
            raise ConfigError("--udp does not go with --tls or --unix")
        if (self.cafile is not None or self.insecure) and not self.tls:
            raise ConfigError("--cafile and --insecure need --tls")
        if self.retries < 0:
            raise ConfigError("--retries must be zero or more")

    @property
    def where(self) -> str:
        """'localhost port 10000' or the Unix socket path, for messages."""
        return self.unix if self.unix is not None else host_port(self.host, self.port, self.udp)


def parse_count(text: str, minimum: int = 1) -> int:
    """A whole number, `minimum` (1) or more."""
    try:
        count = int(text, 10)
    except ValueError:
        raise ConfigError(f"invalid number {text!r}: not a whole number") from None
    if count < minimum:
        raise ConfigError(f"invalid number {count}: must be {minimum} or more")
    return count


def parse_mode(text: str) -> int:
    """A file mode in chmod's octal form: '600', '0660'."""
    try:
        mode = int(text, 8)
    except ValueError:
        raise ConfigError(f"invalid mode {text!r}: use octal digits, e.g. 600") from None
    if not 0 <= mode <= 0o777:
        raise ConfigError(f"invalid mode {text!r}: must be 000 to 777")
    return mode


def parse_percent(text: str) -> float:
    """A percentage, 0 to 100 ('5', '0.5', '5%')."""
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise ConfigError(f"invalid percentage {text!r}: not a number") from None
    if not 0 <= value <= 100:
        raise ConfigError(f"invalid percentage {text!r}: must be 0 to 100")
    return value


def parse_rate(text: str) -> float:
    """A positive rate per second."""
    try:
        rate = float(text)
    except ValueError:
        raise ConfigError(f"invalid rate {text!r}: not a number") from None
    if not 0 < rate < float("inf"):
        raise ConfigError(f"invalid rate {text!r}: must be more than 0")
    return rate


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


# Bounds of ping's counts, for the same reasons as the bench's.
MAX_PING_COUNT: Final = 1_000_000_000
MIN_PING_INTERVAL: Final = 0.001  # seconds
MAX_PING_SIZE: Final = 16 * 1024**2  # stream; UDP: MAX_UDP_PAYLOAD
MAX_UDP_PAYLOAD: Final = 65507  # 65535 less the IPv4 and UDP headers
MAX_UDP6_PAYLOAD: Final = 65527  # IPv6: 65535 less the UDP header (the IP header is apart)
PING_HEADER: Final = 16  # a probe's sequence number and send time
MAX_PING_IN_FLIGHT: Final = 256 * 1024**2  # bytes of probes awaiting their answer, at most


@dataclass(frozen=True, kw_only=True)
class PingConfig:
    """What `aioecho ping` probes, how often, and what counts as failure."""

    target: ClientConfig = ClientConfig(
        timeout=2.0
    )  # where; timeout: a probe's wait for its answer
    count: int = 0  # probes; 0: until interrupted
    interval: float = 1.0  # seconds between probes' scheduled times
    size: int = 64  # bytes per probe
    new_connection: bool = False  # a connection per probe, with its phases timed
    output: str = "text"  # text, json (lines) or csv
    max_loss: float = 0.0  # percent of probes that may be lost for exit status 0
    quiet: bool = False  # text output: the summary only (ping -q)

    def __post_init__(self) -> None:
        if not 0 <= self.count <= MAX_PING_COUNT:
            raise ConfigError(f"--count must be 0 (until interrupted) to {MAX_PING_COUNT}")
        if not MIN_PING_INTERVAL <= self.interval <= 3600:
            raise ConfigError(f"--interval must be {MIN_PING_INTERVAL:g} to 3600 seconds")
        most = MAX_PING_SIZE
        if self.target.udp:  # an IPv6 header has no options to leave room for: 20 bytes more
            most = MAX_UDP6_PAYLOAD if ":" in self.target.host else MAX_UDP_PAYLOAD
        if not PING_HEADER <= self.size <= most:
            shown = f"{most} bytes" if self.target.udp else format_size(most)
            raise ConfigError(f"--size must be {PING_HEADER} bytes to {shown}")
        in_flight = self.size * max(1.0, self.target.timeout / self.interval)
        if in_flight > MAX_PING_IN_FLIGHT:
            raise ConfigError(
                f"--size x (--timeout / --interval) is {in_flight:.0f} bytes of probes in "
                f"flight: at most {format_size(MAX_PING_IN_FLIGHT)}"
            )
        if self.new_connection and self.target.udp:
            raise ConfigError("--new-connection does not go with --udp (UDP has no connection)")
        if self.output not in ("text", "json", "csv"):
            raise ConfigError("output must be text, json or csv")
        if not 0 <= self.max_loss <= 100:
            raise ConfigError("--max-loss must be 0 to 100 (percent)")


@dataclass(frozen=True, kw_only=True)
class ProxyConfig:
    """`aioecho proxy`: listen as a server does, forward each connection upstream."""

    listen: ServerConfig = ServerConfig()  # where and how to listen; its faults apply
    upstream_host: str = "127.0.0.1"
    upstream_port: int = 0
    faults_upstream: bool = False  # apply the faults to the client's data as well
    connect_timeout: float = 10.0  # seconds to reach the upstream

    def __post_init__(self) -> None:
        if not 1 <= self.upstream_port <= 65535:
            raise ConfigError("--to needs HOST:PORT with a port from 1 to 65535")
        if self.listen.udp:
            raise ConfigError("the proxy forwards TCP (and TLS, Unix) connections, not UDP")
        if self.listen.trace:
            raise ConfigError("--trace is for the echo server, not the proxy")


# Bounds of `aioecho check`'s sizes and times.
MAX_CHECK_LARGE: Final = 4 * 1024**3  # bytes of the `large` case
MAX_CHECK_CAP: Final = 16 * 1024**3  # bytes the `backpressure` case may push unread
MAX_CHECK_IDLE: Final = 24 * 3600.0  # seconds: `idle` and --idle-probe
MIN_CHECK_BUDGET: Final = 10.0  # seconds


@dataclass(frozen=True, kw_only=True)
class CheckConfig:
    """`aioecho check`: which cases run against which target, and their sizes and times."""

    target: ClientConfig = ClientConfig(timeout=5.0)  # timeout: any one wait for the peer
    cases: tuple[str, ...] = ()  # in the order they run (checkreport.select_cases)
    udp: bool = False  # the UDP cases (at the target's host and port)
    idle: float = 10.0  # seconds the `idle` case stays silent
    idle_probe: float | None = None  # the longest idle period idle-probe tries, in seconds
    large: int = 64 * 1024**2  # bytes of the `large` case
    backpressure_cap: int = 256 * 1024**2  # unread bytes a server may take before FAILED
    json_path: str | None = None  # '-': standard output
    junit_path: str | None = None
    html_path: str | None = None  # a self-contained HTML page
    # seconds the whole run may take, besides the idle waits asked for (--idle, --idle-probe);
    # a case that runs out of it is cut, with what it did so far
    budget: float = 120.0
    family: int = 0  # 4 or 6: only that address family (-4, -6); 0: either
    address: str | None = None  # connect to this one of the host's addresses (--all-addresses)
    all_addresses: bool = False  # run the cases against each address the host resolves to

    def __post_init__(self) -> None:
        if self.family not in (0, 4, 6):
            raise ConfigError("family must be 4, 6 or 0 (either)")
        if (self.family or self.all_addresses) and self.target.unix is not None:
            raise ConfigError("-4, -6 and --all-addresses are for a host, not --unix")
        if not MIN_CHECK_BUDGET <= self.budget <= MAX_CHECK_IDLE:
            raise ConfigError(
                f"--budget must be {MIN_CHECK_BUDGET:g} to {MAX_CHECK_IDLE:g} seconds"
            )
        if self.udp and (self.target.tls or self.target.unix is not None):
            raise ConfigError("--udp does not go with --tls or --unix")
        if not 0 < self.idle <= MAX_CHECK_IDLE:
            raise ConfigError(f"--idle must be more than 0 and at most {MAX_CHECK_IDLE:g} seconds")
        if self.idle_probe is not None and not 1 <= self.idle_probe <= MAX_CHECK_IDLE:
            raise ConfigError(f"--idle-probe must be 1 to {MAX_CHECK_IDLE:g} seconds")
        if not 1024 <= self.large <= MAX_CHECK_LARGE:
            raise ConfigError(f"--large must be 1KiB to {format_size(MAX_CHECK_LARGE)}")
        if not 1024**2 <= self.backpressure_cap <= MAX_CHECK_CAP:
            raise ConfigError(f"--backpressure-cap must be 1MiB to {format_size(MAX_CHECK_CAP)}")
        if self.json_path == "-" and self.junit_path == "-":
            raise ConfigError("--json - and --junit - cannot both write standard output")
        if self.html_path == "-" and "-" in (self.json_path, self.junit_path):
            raise ConfigError("only one of --json, --junit and --html can write standard output")


MAX_EPOCH: Final = 32503680000.0  # the year 3000


def parse_start_time(text: str) -> float:
    """A wall-clock time as epoch seconds: 'HH:MM[:SS]' (today, local time), an ISO 8601 date
    and time ('2026-11-27T14:30:00Z', local without an offset), or '@EPOCH'."""
    import datetime
    import time

    text = text.strip()
    if text.startswith("@"):
        try:
            epoch = float(text[1:])
        except ValueError:
            raise ConfigError(f"invalid time {text!r}: @ takes epoch seconds") from None
        if not 0 <= epoch < MAX_EPOCH:  # NaN too: a time the clock functions can show
            raise ConfigError(f"invalid time {text!r}: epoch seconds from 0 to {MAX_EPOCH:.0f}")
        return epoch
    try:
        if "T" not in text and " " not in text and text.count(":") in (1, 2):
            clock = datetime.time.fromisoformat(text)
            moment = datetime.datetime.combine(datetime.date.today(), clock)
        else:
            moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"invalid time {text!r}: use HH:MM[:SS], an ISO 8601 date and time, or @EPOCH"
        ) from None
    if moment.tzinfo is None:
        return time.mktime(moment.timetuple()) + moment.microsecond / 1e6
    return moment.timestamp()


def parse_target(text: str) -> tuple[str, int]:
    """'HOST:PORT' or '[IPv6]:PORT'."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host:
        raise ConfigError(f"invalid target {text!r}: use HOST:PORT")
    return host, parse_port(port)
