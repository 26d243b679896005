"""Fuzzing the command line: whatever the arguments, the parser and the config mapping end in
a usage error or a config, never in another exception (hypothesis)."""

from __future__ import annotations

import contextlib
import io

from hypothesis import given, settings
from hypothesis import strategies as st

from aioecho.cli import build_parser
from aioecho.client.options import client_config
from aioecho.errors import ConfigError
from aioecho.server.options import server_config

OPTIONS = [
    "--host", "--port", "--unix", "--unix-mode", "--tcp", "--udp", "--udp-rate", "--tls-cert",
    "--tls-key", "--drain-timeout", "--max-buffer", "--max-connections", "--idle-timeout",
    "--backlog", "--stats-interval", "--loop", "-v", "-q", "--timeout", "--tls", "--cafile",
    "--insecure", "--retries", "--tls-handshake-timeout", "-",
]  # fmt: skip
VALUES = st.one_of(
    st.sampled_from(["0", "1", "-1", "65536", "1KiB", "1.5", "nan", "inf", "600", "999", "x", ""]),
    st.text(max_size=8),
)


@settings(max_examples=300, deadline=None)
@given(
    command=st.sampled_from(["server", "client"]),
    words=st.lists(st.one_of(st.sampled_from(OPTIONS), VALUES), max_size=8),
)
def test_arguments_never_crash(command: str, words: list[str]) -> None:
    parser = build_parser()
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            args = parser.parse_args([command, *words])
        except SystemExit as exit:
            assert exit.code in (0, 2)
            return
    with contextlib.suppress(ConfigError):  # main() turns this into a usage error (exit 2)
        (server_config if command == "server" else client_config)(args)
