"""One way to say each thing on the command line, in every program (issue 22): the letters, the
report options, --version, -q/-v, --timeout, the units, the error prefix, Ctrl-C, and the
options the proxy shares with the server."""

from __future__ import annotations

import argparse
import collections
import json
import signal
import subprocess
from pathlib import Path

import pytest

from aioecho.cli import PROGRAMS, build_parser
from aioecho.units import parse_byte_rate, parse_rate, parse_seconds
from aioecho.version import __version__
from support import WAIT, ServerProcess, aioecho_command, run_cli


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def test_no_letter_means_two_things() -> None:
    meanings = collections.defaultdict(set)
    for parser in subparsers().values():
        for action in parser._actions:
            longs = [o for o in action.option_strings if o.startswith("--")]
            for short in (o for o in action.option_strings if not o.startswith("--")):
                meanings[short].add(longs[0] if longs else action.dest)
    assert {k: v for k, v in meanings.items() if len(v) > 1} == {}
    assert meanings["-c"] == {"--count"}  # ping's, as ping(8)
    assert meanings["-s"] == {"--size"}
    assert run_cli("bench", "-c", "5").returncode == 2


@pytest.mark.parametrize("program", ["", *PROGRAMS])
def test_version_on_every_program(program: str) -> None:
    for flag in ("--version", "-V"):
        result = run_cli(*([program] if program else []), flag)
        assert result.returncode == 0, result.stderr
        assert result.stdout.decode().strip() == f"aioecho {__version__}"


def test_report_options_are_spelled_alike() -> None:
    """--FORMAT is a flag (standard output), --FORMAT-file takes the file, in every program."""
    found = {}
    for name, parser in subparsers().items():
        for action in parser._actions:
            for option in action.option_strings:
                if option in ("--json", "--csv", "--junit", "--html"):
                    assert action.nargs == 0, (name, option)  # a flag: it takes no FILE
                    found.setdefault(option, set()).add(name)
                if option.endswith("-file"):
                    assert action.metavar == "FILE", (name, option)
    assert found == {
        "--json": {"bench", "ping", "check"},
        "--csv": {"ping"},
        "--junit": {"check"},
        "--html": {"check"},
    }
    for name, parser in subparsers().items():
        options = {o for a in parser._actions for o in a.option_strings}
        for option in ("--json", "--csv", "--junit", "--html"):
            if option in options:
                assert f"{option}-file" in options, (name, option)


def test_every_json_report_is_written_to_its_file(tmp_path: Path) -> None:
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0") as server:
        server.start()
        target = ("--host", "127.0.0.1", "--port", str(server.port))
        runs = {
            "bench": ("--requests", "20", "--warmup", "0", "--connections", "1"),
            "ping": ("-c", "2", "-i", "0.01"),
            "check": ("--only", "basic"),
        }
        for program, args in runs.items():
            path = tmp_path / f"{program}.json"
            result = run_cli(program, *target, *args, "--json-file", str(path))
            assert result.returncode == 0, result.stderr
            assert not result.stdout.lstrip().startswith(b"{"), program  # the text, still
            lines = path.read_text().strip().splitlines()
            document = json.loads(lines[-1] if program == "ping" else "\n".join(lines))
            assert isinstance(document, dict), program
            shown = run_cli(program, *target, *args, "--json")
            assert shown.returncode == 0, shown.stderr
            json.loads(shown.stdout.decode().strip().splitlines()[-1] if program == "ping"
                       else shown.stdout)  # fmt: skip
        assert server.stop() == 0


def test_two_reports_cannot_share_standard_output() -> None:
    for program, a, b in (("ping", "--json", "--csv"), ("check", "--json", "--html")):
        result = run_cli(program, a, b)
        assert result.returncode == 2
        assert result.stderr.decode().splitlines() == [
            f"aioecho {program}: error: {a} and {b} cannot both print on standard output"
        ]


def test_help_says_what_q_v_and_timeout_do_in_each_program() -> None:
    helps = {}
    for name, parser in subparsers().items():
        for action in parser._actions:
            for option in ("--quiet", "--verbose", "--timeout"):
                if option in action.option_strings:
                    helps[(name, option)] = action.help or ""
    for name in ("client", "bench", "ping", "check"):
        assert "listening" not in helps[(name, "--quiet")], name
    for option in ("--quiet", "--timeout"):
        texts = [helps[(name, option)] for name in ("client", "bench", "ping", "check")]
        assert len(set(texts)) == 4, (option, texts)  # each its own
    assert "ping -q" in helps[("ping", "--quiet")]


def test_q_and_v_change_what_ping_and_check_print() -> None:
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0") as server:
        server.start()
        target = ("--host", "127.0.0.1", "--port", str(server.port))
        ping = {v: run_cli("ping", *target, "-c", "2", "-i", "0.01", *v).stdout.decode()
                for v in ((), ("-q",), ("-v",))}  # fmt: skip
        assert "seq=1" in ping[()] and "seq=1" not in ping[("-q",)]
        assert "ping statistics" in ping[("-q",)]
        stamped = [line for line in ping[("-v",)].splitlines() if "seq=" in line]
        assert len(stamped) == 2 and all(line.startswith("[") for line in stamped), stamped
        check = {v: run_cli("check", *target, "--only", "basic", *v).stdout.decode()
                 for v in ((), ("-q",), ("-v",))}  # fmt: skip
        assert "basic " in check[()] and "basic " not in check[("-q",)]
        assert check[("-q",)].splitlines()[-1].startswith("1 OK in ")
        assert len(check[("-v",)].splitlines()) == len(check[()].splitlines()) + 1
        assert "=" in check[("-v",)].splitlines()[2]  # the figures, under the case
        assert server.stop() == 0


def test_one_parser_for_durations_rates_and_sizes() -> None:
    assert parse_seconds("1m30s") == 90.0
    assert parse_seconds("1h 15m") == 4500.0
    assert parse_seconds("250ms") == 0.25
    assert parse_seconds("1e-3") == 0.001
    assert parse_rate("10k") == 10_000.0
    assert parse_rate("1e4") == 10_000.0
    assert parse_rate("2.5M/s") == 2_500_000.0
    assert parse_byte_rate("1MiB/s") == 1024**2
    assert parse_byte_rate("64KiB") == 64 * 1024
    for bad in ("1m30", "30s1m", "1s1s", "inf", "-1"):
        with pytest.raises(ValueError):
            parse_seconds(bad)
    for bad in ("1e", "k", "0", "inf", "1x"):
        with pytest.raises(ValueError):
            parse_rate(bad)


def test_the_start_up_line_reads_back() -> None:
    """--bandwidth is shown as it may be given: the line's form is accepted."""
    with ServerProcess("--host", "127.0.0.1", "--port", "0", "--bandwidth", "1MiB/s",
                       "--drain-timeout", "1m30s") as server:  # fmt: skip
        server.start()
        line = server.wait_for_line(r"^main: faults: ")
        assert "bandwidth 1MiB/s" in line
        assert server.stop() == 0
    result = run_cli("bench", "--rate", "10k", "--duration", "0")  # parsed, then refused
    assert result.stderr.decode().splitlines() == [
        "aioecho bench: error: --duration must be more than 0 seconds"
    ]


def test_errors_name_their_program_whatever_found_them() -> None:
    argument = run_cli("proxy", "--to", "x")  # argparse's
    config = run_cli("proxy", "--to", "127.0.0.1:1", "--idle-timeout", "-1")  # the config's
    for result in (argument, config):
        assert result.returncode == 2
        assert result.stderr.decode().startswith("aioecho proxy: error: "), result.stderr


def test_proxy_shares_the_servers_listen_options_and_refuses_the_rest(tmp_path: Path) -> None:
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0") as server:
        server.start()
        to = f"127.0.0.1:{server.port}"
        with ServerProcess("--host", "127.0.0.1", "--port", "0", "--to", to, "--metrics",
                           "127.0.0.1:0", "--log-format", "json", "--proxy-protocol",
                           program="proxy") as relay:  # fmt: skip
            relay.wait_for_line(r'"message": "listening on 127\.0\.0\.1 port \d+"')
            assert any('"metrics on http://127.0.0.1:' in line for line in relay.lines)
            assert all(line.startswith("{") for line in relay.lines), relay.lines
            assert relay.stop() == 0
        assert server.stop() == 0
    for option, value in (("--udp", None), ("--drop", "0.5"), ("--trace", None)):
        result = run_cli("proxy", "--to", "127.0.0.1:1", option, *([value] if value else []))
        assert result.returncode == 2
        assert result.stderr.decode().startswith(f"aioecho proxy: error: no {option} here: ")
    help_text = run_cli("proxy", "--help").stdout.decode()
    assert "--udp" not in help_text and "--drop" not in help_text


def test_bench_merge_is_in_the_help_and_the_completion() -> None:
    assert "aioecho bench merge FILE" in run_cli("--help").stdout.decode()
    script = run_cli("completion", "bash").stdout.decode()
    assert "(merge)" in script
    assert "_only_choices=(basic tls binary" in script.replace("___", "_")


def test_bench_prints_what_it_measured_on_ctrl_c() -> None:
    proc = subprocess.Popen(
        aioecho_command("bench", "--spawn", "--duration", "60", "--warmup", "0", "-v"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:  # -v: a progress line a second, also to a pipe
        if line.startswith("measuring: "):
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 130, err
    assert out.splitlines()[0].startswith("requests  req/s"), out
    assert int(out.splitlines()[1].split()[0]) > 0
    assert err.splitlines()[-1] == "aioecho bench: interrupted"


def test_bench_over_a_unix_socket_records_no_host_or_port(tmp_path: Path) -> None:
    path = str(tmp_path / "echo.sock")
    with ServerProcess("-q", "--unix", path) as server:
        server.start()
        result = run_cli("bench", "--unix", path, "--requests", "10", "--warmup", "0",
                         "--connections", "1", "--json")  # fmt: skip
        assert result.returncode == 0, result.stderr
        target = json.loads(result.stdout)["config"]["target"]
        assert (target["unix"], target["host"], target["port"]) == (path, None, None)
        assert (
            "1 connection," in result.stderr.decode()
            or "1 connection,"
            in run_cli(
                "bench", "--unix", path, "--requests", "10", "--warmup", "0", "--connections", "1"
            ).stderr.decode()
        )
        assert server.stop() == 0


def test_one_is_singular_and_the_top_level_help_names_every_program() -> None:
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0") as server:
        server.start()
        result = run_cli("ping", "--host", "127.0.0.1", "--port", str(server.port), "-c", "1")
        assert "1 probe sent, 1 received" in result.stdout.decode(), result.stdout
        assert server.stop() == 0
    description = run_cli("--help").stdout.decode()
    for program in ("bench", "ping", "check", "proxy", "client", "server"):
        assert program in description.split("positional arguments")[0], program


def test_a_report_file_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    """ping --json-file on a full disk was a traceback; bench --json-file into no directory
    was found out only after the whole run."""
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0") as server:
        server.start()
        target = ("--host", "127.0.0.1", "--port", str(server.port))
        full = run_cli("ping", *target, "-c", "2", "-i", "0.01", "--json-file", "/dev/full")
        assert full.returncode == 1
        assert full.stderr.decode().splitlines()[-1] == (
            "aioecho ping: error: --json-file /dev/full: no space left on device"
        )
        missing = str(tmp_path / "no" / "r.json")
        refused = run_cli("bench", *target, "--duration", "60", "--json-file", missing)
        assert refused.returncode == 2  # at once: not after a minute of load
        assert refused.stderr.decode().splitlines() == [
            f"aioecho bench: error: --json-file {missing}: no such directory "
            f"{str(tmp_path / 'no')!r}"
        ]
        assert server.stop() == 0
