"""Load from several machines: `aioecho bench --json` carries the whole histogram,
`aioecho bench merge` adds results up exactly, and --start-at starts runs together."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from aioecho.bench.result import BenchResult, merge
from support import ServerProcess, run_cli


def bench_json(port: int, *args: str) -> str:
    result = run_cli(
        "bench", "--host", "127.0.0.1", "--port", str(port), "--warmup", "0", "--json", *args
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.decode()


@pytest.mark.timeout(60)
def test_two_reports_merge_into_one_as_a_two_worker_run_would(tmp_path: Path) -> None:
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0") as server:
        server.start()
        a = bench_json(server.port, "--connections", "2", "--requests", "300")
        b = bench_json(server.port, "--connections", "3", "--requests", "500", "--pipeline", "1")
    (tmp_path / "a.json").write_text(a)
    (tmp_path / "b.json").write_text(b)
    merged = run_cli("bench", "merge", "--json", str(tmp_path / "a.json"), str(tmp_path / "b.json"))
    assert merged.returncode == 0, merged.stderr
    report = json.loads(merged.stdout)
    parts = [BenchResult.from_json(a), BenchResult.from_json(b)]
    assert report["result"]["requests"] == sum(p.requests for p in parts) >= 800
    assert report["config"]["connections"] == 5 and report["config"]["workers"] == 2
    # what a --workers run does with its workers' results: the same function, the same figures
    expected = merge(parts, BenchResult.from_json(merged.stdout).config).summary()
    assert report["result"] == expected
    histogram = parts[0].histogram
    histogram.merge(parts[1].histogram)
    assert report["result"]["p99_us"] == histogram.percentile(99) / 1000
    table = run_cli("bench", "merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"))
    assert table.stdout.decode().splitlines()[1].split()[0] == str(report["result"]["requests"])


def test_results_of_different_loads_do_not_merge(tmp_path: Path) -> None:
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0") as server:
        server.start()
        (tmp_path / "a.json").write_text(bench_json(server.port, "--requests", "50"))
        (tmp_path / "b.json").write_text(
            bench_json(server.port, "--requests", "50", "--size", "64")
        )
    result = run_cli("bench", "merge", str(tmp_path / "a.json"), str(tmp_path / "b.json"))
    assert result.returncode == 1
    assert result.stderr.decode().splitlines() == [
        "aioecho bench merge: error: the results measured different loads (size differs)"
    ]
    (tmp_path / "c.json").write_text('{"not": "a report"}')
    result = run_cli("bench", "merge", str(tmp_path / "a.json"), str(tmp_path / "c.json"))
    assert result.stderr.decode().splitlines() == [
        f"aioecho bench merge: error: {tmp_path / 'c.json'}: config: missing: not the output of "
        "aioecho bench --json"
    ]


@pytest.mark.timeout(60)
def test_start_at_waits_for_the_wall_clock() -> None:
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0") as server:
        server.start()
        start = time.time() + 1.5
        report = json.loads(bench_json(server.port, "--requests", "50", "--start-at", f"@{start}"))
        assert time.time() >= start
        assert report["result"]["requests"] == 50
        past = run_cli("bench", "--port", str(server.port), "--start-at", "@1000")
        assert past.returncode == 1
        assert past.stderr.decode().splitlines()[-1].endswith("s in the past")
    bad = run_cli("bench", "--start-at", "teatime")
    assert bad.returncode == 2
    assert "invalid time 'teatime': use HH:MM[:SS], an ISO 8601" in bad.stderr.decode()


def test_start_time_forms() -> None:
    from datetime import datetime, timezone

    from aioecho.errors import ConfigError
    from aioecho.units import parse_start_time

    assert parse_start_time("@1700000000.5") == 1700000000.5
    utc = datetime(2026, 11, 27, 14, 30, tzinfo=timezone.utc).timestamp()
    assert parse_start_time("2026-11-27T14:30:00Z") == utc
    assert parse_start_time("2026-11-27T15:30:00+01:00") == utc
    today = datetime.now().replace(hour=14, minute=30, second=0, microsecond=0)
    assert parse_start_time("14:30") == today.timestamp()
    with pytest.raises(ConfigError):
        parse_start_time("25:00")


def test_a_damaged_report_is_one_line(tmp_path: Path) -> None:
    damaged = {"config": {"target": {}}, "exact": {
        "histogram": {"buckets": {"99999999": 1}, "count": 1, "total": 1, "min": 1, "max": 1},
        "elapsed_s": 1, "mismatches": 0, "resets": 0, "timeouts": 0, "closed": 0, "unsent": 0,
        "closed_connections": 0}}  # fmt: skip
    (tmp_path / "d.json").write_text(json.dumps(damaged))
    result = run_cli("bench", "merge", str(tmp_path / "d.json"))
    assert result.returncode == 1
    assert result.stderr.decode().splitlines() == [
        f"aioecho bench merge: error: {tmp_path / 'd.json'}: exact.histogram.buckets: no bucket "
        "'99999999': "
        "not the output of aioecho bench --json"
    ]
    for bad in ("@nan", "@-1", "@1e30"):
        refused = run_cli("bench", "--start-at", bad)
        assert refused.returncode == 2 and "epoch seconds from 0" in refused.stderr.decode()


def _report(tmp_path: Path) -> dict[str, object]:
    """A real report, made once per test by the bench itself."""
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0") as server:
        server.start()
        report = json.loads(bench_json(server.port, "--requests", "20"))
    return report  # type: ignore[no-any-return]


@pytest.mark.timeout(120)
def test_every_damaged_field_is_one_line_naming_file_and_field(tmp_path: Path) -> None:
    """Each used to be a traceback, a MemoryError, or accepted nonsense."""
    good = _report(tmp_path)
    exact = good["exact"]
    assert isinstance(exact, dict)

    def with_exact(**changes: object) -> str:
        return json.dumps({**good, "exact": {**exact, **changes}})

    histogram = dict(exact["histogram"])
    cases = {
        "inf": with_exact(histogram={**histogram, "buckets": {"3": float("inf")}}),
        "huge": with_exact(histogram={**histogram, "total": 10**4000 // 10**100}),
        "deep": "[" * 100_000 + "]" * 100_000,
        "list": with_exact(connects=histogram, failed_connects=[]),
        "abc": with_exact(elapsed_s="abc"),
        "neg": with_exact(elapsed_s=-5),
        "zero": with_exact(elapsed_s=0),  # requests in no time: an infinite rate
        "minmax": with_exact(histogram={**histogram, "min": 10, "max": 5}),
        "count": with_exact(resets=-1),
    }
    for name, text in cases.items():
        (tmp_path / f"{name}.json").write_text(text)
    (tmp_path / "utf16.json").write_text(json.dumps(good), encoding="utf-16")
    for path in [*(tmp_path / f"{n}.json" for n in cases), tmp_path / "utf16.json",
                 Path("/dev/zero")]:  # fmt: skip
        result = run_cli("bench", "merge", str(path), timeout=60)
        lines = result.stderr.decode().splitlines()
        assert result.returncode == 1, (path, lines)
        assert len(lines) == 1 and lines[0].startswith(f"aioecho bench merge: error: {path}: "), (
            lines
        )
        assert "Traceback" not in result.stderr.decode()
    (tmp_path / "good.json").write_text(json.dumps(good))
    assert run_cli("bench", "merge", str(tmp_path / "good.json")).returncode == 0


@pytest.mark.timeout(60)
def test_a_short_run_is_timed_below_the_loops_millisecond(loop_name: str) -> None:
    # uvloop's loop.time() moves in whole milliseconds: 20 requests measured elapsed_s 0.0
    # and an rps of 2e10 (issue 26 B11)
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0") as server:
        server.start()
        for _ in range(3):
            report = json.loads(bench_json(server.port, "--requests", "5", "--loop", loop_name))
            assert report["exact"]["elapsed_s"] > 0, report["exact"]
