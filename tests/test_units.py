"""Pure units: parsers, payload previews, the sent-bytes window, the flood counter."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aioecho.addresses import peer_name
from aioecho.bench.config import BenchConfig
from aioecho.client.config import ClientConfig
from aioecho.client.protocol import SentWindow
from aioecho.errors import ConfigError, ListenError, describe_os_error
from aioecho.logs import FloodCounter, preview
from aioecho.server.config import ServerConfig
from aioecho.units import format_size, parse_port, parse_seconds, parse_size


def test_preview_short_payload_is_repr() -> None:
    assert preview(b"This is the message. ") == "b'This is the message. '"


def test_preview_cuts_after_64_bytes() -> None:
    assert preview(b"x" * 65) == f"b'{'x' * 64}'... (65 bytes)"
    assert preview(b"x" * 64) == f"b'{'x' * 64}'"


def test_peer_name_like_the_seed() -> None:
    assert peer_name("EchoServer", ("::1", 63347, 0, 0)) == "EchoServer_::1_63347"
    assert peer_name("EchoServer", ("127.0.0.1", 5)) == "EchoServer_127.0.0.1_5"


@pytest.mark.parametrize("text", ["0", "1", "10000", "65535"])
def test_parse_port_accepts(text: str) -> None:
    assert parse_port(text) == int(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("65536", "invalid port 65536: must be 0 to 65535"),
        ("-1", "invalid port -1: must be 0 to 65535"),
        ("http", "invalid port 'http': not a number"),
        ("", "invalid port '': not a number"),
    ],
)
def test_parse_port_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_port(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("64", 64),
        ("1KiB", 1024),
        ("10KB", 10_000),
        ("1MiB", 1 << 20),
        ("2 kib", 2048),
        ("1.5KiB", 1536),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "KiB", "1XB", "-1", "1.2.3MiB", "nan", "1.5", "inf"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)


@given(st.text(max_size=20))
def test_parsers_raise_only_value_error(text: str) -> None:
    for parse in (parse_port, parse_size, parse_seconds):
        with contextlib.suppress(ValueError):
            parse(text)


@pytest.mark.parametrize("text", ["-1", "inf", "nan", "soon"])
def test_parse_seconds_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_seconds(text)


def test_config_errors_name_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"^--max-buffer must be 1 byte to 1GiB$"):
        ServerConfig(max_buffer=0)
    with pytest.raises(ConfigError, match="at least one host"):
        ServerConfig(hosts=())
    with pytest.raises(ConfigError, match=r"^--port 70000: must be 0 to 65535$"):
        ClientConfig(port=70000)
    with pytest.raises(ValueError):  # a ConfigError is a ValueError too, for library callers
        BenchConfig(duration=0)


def test_listen_error_reads_as_one_line() -> None:
    err = ListenError("127.0.0.1 port 10000", OSError(98, "Address already in use"))
    assert str(err) == "cannot listen on 127.0.0.1 port 10000: address already in use"
    assert describe_os_error(ConnectionResetError(104, "x")) == "connection reset by peer"


@given(st.binary(max_size=2000), st.lists(st.integers(1, 300), max_size=30))
def test_sent_window_matches_any_rechunking(data: bytes, cuts: list[int]) -> None:
    window = SentWindow()
    window.push(data[: len(data) // 2])
    window.push(data[len(data) // 2 :])
    pos = 0
    for cut in [*cuts, len(data)]:
        piece = data[pos : pos + cut]
        assert window.match(piece) is None
        pos += len(piece)
    assert window.size == 0
    assert window.matched == len(data)


def test_sent_window_reports_first_wrong_byte() -> None:
    window = SentWindow()
    window.push(b"abcdef")
    assert window.match(b"ab") is None
    assert window.match(b"cdXf") == 4


def test_sent_window_reports_extra_bytes() -> None:
    window = SentWindow()
    window.push(b"ab")
    assert window.match(b"abc") == 2


def test_flood_counter_reports_a_flood_in_one_line() -> None:
    async def flood() -> tuple[list[int], int]:
        reports: list[int] = []
        second = asyncio.get_running_loop().create_future()

        def report(count: int) -> None:
            reports.append(count)
            if len(reports) == 2:
                second.set_result(None)

        counter = FloodCounter(report, interval=0.01)
        for _ in range(1000):
            counter.add()
        counter.flush()  # shutdown: reported at once, and the timer then finds nothing new
        for _ in range(3):
            counter.add()
        await second  # the timer's report of the later three
        return reports, counter.total

    assert asyncio.run(flood()) == ([1000, 3], 1003)


@pytest.mark.parametrize("size", [0, 1, 1000, 1024, 262144, 3 << 30, 1536])
def test_format_size_reads_back(size: int) -> None:
    assert parse_size(format_size(size)) == size
