"""What the proxy's API speaks: proxies and toxics as Toxiproxy's HTTP API shapes them (field
names, defaults, error texts and status codes), checked, and turned into the faults the
Shaper applies (one fault engine: the flags fill a FaultConfig, the toxics do too).

Pure: imports neither asyncio, socket nor ssl. Toxiproxy's own texts are quoted where a client
may read them ("proxy not found", "toxic already exists", ...).
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from ..server.config import FaultConfig

__all__ = [
    "TOXIC_TYPES",
    "ApiError",
    "Match",
    "ProxySpec",
    "Toxic",
    "check_fits",
    "datagram_shaping",
    "decides",
    "endings",
    "join_address",
    "parse_proxy",
    "parse_toxic",
    "shaping",
    "split_address",
]

STREAMS: Final = ("upstream", "downstream")
MAX_MS: Final = 3_600_000  # an hour: every time a toxic takes, in milliseconds
MAX_BYTES: Final = 2**53  # limit_data, sizes
MAX_RATE: Final = 10**9  # bandwidth, KB/s
MAX_NAME: Final = 200  # characters of a proxy's or a toxic's name

# Each type's attributes and their defaults (Toxiproxy's README; the last three are ours).
TOXIC_TYPES: Final[Mapping[str, Mapping[str, int | float]]] = {
    "latency": {"latency": 0, "jitter": 0},  # ms, each chunk held latency +/- jitter
    "bandwidth": {"rate": 0},  # KB/s (1,000 bytes)
    "slow_close": {"delay": 0},  # ms between the EOF and passing it on
    "timeout": {"timeout": 0},  # ms: nothing passes, then closed; 0: held until removed
    "reset_peer": {"timeout": 0},  # ms from the first data (dropped) to a reset (RST)
    "slicer": {"average_size": 0, "size_variation": 0, "delay": 0},  # bytes, bytes, us
    "limit_data": {"bytes": 0},  # closed once so many bytes have passed
    "corrupt": {"probability": 0.0},  # each chunk, one byte flipped
    "limit_time": {"time": 0},  # ms after which the connection is closed (FIN)
    "blackhole": {},  # read and dropped, never answered, never closed
    "drop": {"probability": 0.0},  # UDP: each datagram dropped
    "duplicate": {"probability": 0.0},  # UDP: each datagram sent twice
}
# What each kind of proxy takes (a datagram has no byte stream to slice, limit or close).
PROTOCOL_TOXICS: Final[Mapping[str, frozenset[str]]] = {
    "tcp": frozenset(TOXIC_TYPES) - {"drop", "duplicate"},
    "udp": frozenset({"latency", "corrupt", "timeout", "blackhole", "drop", "duplicate"}),
}
_FLOATS: Final = {"probability"}
_LIMITS: Final[Mapping[str, int | float]] = {
    "latency": MAX_MS,
    "jitter": MAX_MS,
    "delay": MAX_MS,
    "timeout": MAX_MS,
    "time": MAX_MS,
    "rate": MAX_RATE,
    "bytes": MAX_BYTES,
    "average_size": MAX_BYTES,
    "size_variation": MAX_BYTES,
    "probability": 1.0,
}


class ApiError(Exception):
    """A request the API refuses: Toxiproxy's status code and text ({"error", "status"})."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "status": self.status}


def bad_body(reason: str) -> ApiError:
    return ApiError(400, f"bad request body: {reason}")


@dataclass(frozen=True)
class Match:
    """Which connections a toxic may touch (ours): those from a source network, and/or every
    Nth connection of the proxy (numbered from 1); and at most `times` of them (the first
    ones it applies to: "fail the next attempt only")."""

    source: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    every: int = 1
    times: int | None = None

    def admits(self, number: int, client_ip: str) -> bool:
        if number % self.every:
            return False
        if self.source is None:
            return True
        try:
            return ipaddress.ip_address(client_ip.split("%", 1)[0]) in self.source
        except ValueError:  # a Unix socket's peer, or none
            return False

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if self.source is not None:
            found["source"] = str(self.source)
        if self.every != 1:
            found["every"] = self.every
        if self.times is not None:
            found["times"] = self.times
        return found


@dataclass(frozen=True)
class Toxic:
    """One toxic, as the API shows it."""

    type: str
    name: str
    stream: str = "downstream"
    toxicity: float = 1.0
    attributes: Mapping[str, int | float] = field(default_factory=dict)
    match: Match | None = None

    @property
    def upstream(self) -> bool:
        return self.stream == "upstream"

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": dict(self.attributes),
        }
        if self.match is not None:
            found["match"] = self.match.to_json()
        return found


def parse_toxic(body: Any, current: Toxic | None = None) -> Toxic:
    """A toxic from a request's JSON: a new one (current None: Toxiproxy's defaults apply), or
    the update of current (its attributes and toxicity change, the rest stays)."""
    if not isinstance(body, dict):
        raise bad_body("a JSON object is needed")
    if current is not None:
        attributes = _attributes(current.type, body.get("attributes", {}), current.attributes)
        toxicity = _toxicity(body.get("toxicity", current.toxicity))
        match = _match(body["match"]) if "match" in body else current.match
        return replace(current, attributes=attributes, toxicity=toxicity, match=match)
    kind = body.get("type")
    stream = body.get("stream", "downstream")
    if stream not in STREAMS:
        raise ApiError(400, "stream was invalid, can be either upstream or downstream")
    if not isinstance(kind, str) or kind not in TOXIC_TYPES:
        raise ApiError(400, "invalid toxic type")
    name = body.get("name") or f"{kind}_{stream}"
    if not isinstance(name, str) or len(name) > MAX_NAME:
        raise bad_body(f"name must be a string of at most {MAX_NAME} characters")
    return Toxic(
        type=kind,
        name=name,
        stream=stream,
        toxicity=_toxicity(body.get("toxicity", 1.0)),
        attributes=_attributes(kind, body.get("attributes", {}), TOXIC_TYPES[kind]),
        match=_match(body["match"]) if body.get("match") is not None else None,
    )


def _toxicity(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise bad_body("toxicity must be a number from 0 to 1")
    return float(value)


def _attributes(kind: str, given: Any, base: Mapping[str, int | float]) -> dict[str, int | float]:
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise bad_body("attributes must be a JSON object")
    found = dict(base)
    for name, value in given.items():
        if name not in TOXIC_TYPES[kind]:
            continue  # as Toxiproxy: a field the type does not have is ignored
        number = _number(name, value)
        found[name] = number
    if (
        kind == "slicer"
        and found["size_variation"]
        and (found["size_variation"] >= found["average_size"])
    ):
        raise bad_body("size_variation must be less than average_size")
    return found


def _number(name: str, value: Any) -> int | float:
    limit = _LIMITS[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad_body(f"{name} must be a number")
    # the range first: NaN and infinity fail it (int() of them would raise), and a JSON integer
    # of a thousand digits compares without becoming a float
    if not 0 <= value <= limit:
        raise bad_body(f"{name} must be 0 to {limit:g}")
    if name in _FLOATS:
        return float(value)
    if value != int(value):
        raise bad_body(f"{name} must be a whole number")
    return int(value)


def _match(value: Any) -> Match:
    if not isinstance(value, dict):
        raise bad_body("match must be a JSON object")
    source = None
    if value.get("source") is not None:
        try:
            source = ipaddress.ip_network(str(value["source"]), strict=False)
        except ValueError:
            raise bad_body("match.source must be an address or a network (CIDR)") from None
    every = value.get("every", 1)
    if isinstance(every, bool) or not isinstance(every, int) or not 1 <= every <= 10**9:
        raise bad_body("match.every must be a whole number from 1")
    times = value.get("times")
    if times is not None and (
        isinstance(times, bool) or not isinstance(times, int) or not 0 <= times <= 10**9
    ):
        raise bad_body("match.times must be a whole number from 0")
    unknown = set(value) - {"source", "every", "times"}
    if unknown:
        raise bad_body(f"match has no {sorted(unknown)[0]!r}: source, every, times")
    return Match(source=source, every=every, times=times)


@dataclass(frozen=True)
class ProxySpec:
    """A proxy as a request or the config file gives it."""

    name: str
    listen: str
    upstream: str
    enabled: bool = True
    toxics: tuple[Toxic, ...] = ()
    protocol: str = "tcp"  # or "udp" (ours)
    refuse_when_down: bool = False  # no listener while the upstream is down (ours, TCP)


def parse_proxy(body: Any, current: ProxySpec | None = None) -> ProxySpec:
    """A proxy from a request's JSON (or a config file's entry); with current, an update:
    fields not given keep their values."""
    if not isinstance(body, dict):
        raise bad_body("a JSON object is needed")
    if current is None:
        for required in ("name", "upstream"):
            if not body.get(required):
                raise ApiError(400, f"missing required field: {required}")
    base = current or ProxySpec(name="", listen="127.0.0.1:0", upstream="")
    name = body.get("name", base.name) if current is None else base.name
    listen = body.get("listen") or base.listen
    upstream = body.get("upstream") or base.upstream
    enabled = body.get("enabled", base.enabled)
    protocol = body.get("protocol", base.protocol) if current is None else base.protocol
    if protocol not in PROTOCOL_TOXICS:
        raise bad_body("protocol must be tcp or udp")
    refuse = body.get("refuse_when_down", base.refuse_when_down)
    if not isinstance(refuse, bool) or (refuse and protocol != "tcp"):
        raise bad_body("refuse_when_down is true or false, for TCP proxies")
    for label, text in (("name", name), ("listen", listen), ("upstream", upstream)):
        if not isinstance(text, str) or len(text) > MAX_NAME:
            raise bad_body(f"{label} must be a string of at most {MAX_NAME} characters")
    if not isinstance(enabled, bool):
        raise bad_body("enabled must be true or false")
    split_address(listen, "listen")
    split_address(upstream, "upstream")
    toxics: tuple[Toxic, ...] = base.toxics
    if current is None and body.get("toxics") is not None:
        if not isinstance(body["toxics"], list):
            raise bad_body("toxics must be a list")
        toxics = tuple(parse_toxic(item) for item in body["toxics"])
        names = [toxic.name for toxic in toxics]
        if len(set(names)) != len(names):
            raise ApiError(409, "toxic already exists")
        for toxic in toxics:
            check_fits(toxic, protocol)
    return ProxySpec(
        name=name,
        listen=listen,
        upstream=upstream,
        enabled=enabled,
        toxics=toxics,
        protocol=protocol,
        refuse_when_down=refuse if current is None else base.refuse_when_down,
    )


def check_fits(toxic: Toxic, protocol: str) -> None:
    """400 for a toxic its proxy's protocol has no use for (drop on TCP, slicer on UDP)."""
    if toxic.type not in PROTOCOL_TOXICS[protocol]:
        raise bad_body(f"a {toxic.type} toxic is not for {protocol.upper()} proxies")


def split_address(text: str, label: str) -> tuple[str, int]:
    """'host:port', '[v6]:port' or ':port' (every address) -> (host, port)."""
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise bad_body(f"{label} must be HOST:PORT, not {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if label == "upstream" and (not host or int(port) == 0):
        raise bad_body(f"upstream needs a host and a port from 1 to 65535, not {text!r}")
    return host, int(port)


def join_address(host: str, port: int) -> str:
    """'127.0.0.1:8474', '[::1]:8474': as Toxiproxy writes an address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def decides(seed: int, number: int, toxic: Toxic) -> bool:
    """Whether the toxic applies to the proxy's connection number `number`: its toxicity drawn
    from the seed, the connection's number and the toxic's name, so the same run decides the
    same way; toxicity 0 never applies, 1 always."""
    if toxic.toxicity >= 1:
        return True
    return random.Random(f"{seed}/{number}/{toxic.name}").random() < toxic.toxicity


def shaping(toxics: Iterable[tuple[Toxic, int]]) -> FaultConfig | None:
    """The faults of one direction of one connection, from the toxics that apply to it, each
    with the bytes the direction had carried when it began to apply (limit_data counts from
    there); None if none shapes the data."""
    delay = jitter = slow_close = slice_delay = garble = 0.0
    bandwidth = piece = variation = 0
    close_after: int | None = None
    reset_on_data: float | None = None
    swallow = False
    shaped = False
    for toxic, base in toxics:
        a = toxic.attributes
        kind = toxic.type
        if kind == "latency":
            low, spread = _window(a)
            delay, jitter = delay + low, jitter + spread
        elif kind == "bandwidth":
            rate = int(a["rate"]) * 1000
            if not rate:  # Toxiproxy: a rate of 0 limits nothing
                continue
            bandwidth = rate if not bandwidth else min(bandwidth, rate)
        elif kind == "slow_close":
            slow_close = max(slow_close, a["delay"] / 1000)
        elif kind == "slicer":
            piece, variation = int(a["average_size"]), int(a["size_variation"])
            slice_delay = a["delay"] / 1_000_000
        elif kind == "limit_data":
            limit = base + max(1, int(a["bytes"]))
            close_after = limit if close_after is None else min(close_after, limit)
        elif kind == "corrupt":
            garble = max(garble, float(a["probability"]))
        elif kind in ("timeout", "blackhole"):
            swallow = True
        elif kind == "reset_peer":
            after = a["timeout"] / 1000
            reset_on_data = after if reset_on_data is None else min(reset_on_data, after)
        else:  # limit_time: a time, not shaping (endings())
            continue
        shaped = True
    if not shaped:
        return None
    return FaultConfig(
        delay=min(delay, 3600.0),
        jitter=min(jitter, 3600.0),
        bandwidth=bandwidth,
        slice=piece,
        slice_variation=variation if variation < piece else 0,
        slice_delay=slice_delay,
        slow_close=slow_close,
        close_after=close_after,
        garble=garble,
        swallow=swallow,
        reset_on_data=reset_on_data,
    )


def _window(attributes: Mapping[str, int | float]) -> tuple[float, float]:
    """Toxiproxy's latency +/- jitter (ms) as the server's delay and jitter (seconds): held at
    least max(0, latency - jitter), plus a uniform part up to latency + jitter."""
    low = max(0, attributes["latency"] - attributes["jitter"])
    return low / 1000, (attributes["latency"] + attributes["jitter"] - low) / 1000


def datagram_shaping(toxics: Iterable[Toxic]) -> FaultConfig | None:
    """The faults of one direction of a UDP proxy's session, per datagram (the server's UDP
    faults: drop, duplicate, corrupt, delay); timeout and blackhole drop everything."""
    delay = jitter = 0.0
    kept = duplicate = intact = 1.0  # probabilities of the opposite, combined
    shaped = False
    for toxic in toxics:
        a = toxic.attributes
        if toxic.type == "latency":
            low, spread = _window(a)
            delay, jitter = delay + low, jitter + spread
        elif toxic.type == "drop":
            kept *= 1 - a["probability"]
        elif toxic.type == "duplicate":
            duplicate *= 1 - a["probability"]
        elif toxic.type == "corrupt":
            intact *= 1 - a["probability"]
        elif toxic.type in ("timeout", "blackhole"):
            kept = 0.0
        else:
            continue
        shaped = True
    if not shaped:
        return None
    return FaultConfig(
        delay=min(delay, 3600.0),
        jitter=min(jitter, 3600.0),
        drop=1 - kept,
        duplicate=1 - duplicate,
        corrupt=1 - intact,
    )


def endings(toxic: Toxic) -> tuple[str, float] | None:
    """How a toxic ends a connection once it applies: ('close', after seconds); reset_peer's
    clock starts with the first data, in the Shaper (FaultConfig.reset_on_data)."""
    a = toxic.attributes
    if toxic.type == "timeout" and a["timeout"]:
        return "close", a["timeout"] / 1000
    if toxic.type == "limit_time":
        return "close", a["time"] / 1000
    return None
