"""`aioecho check`'s report and case selection, without a server."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from aioecho.check.peers import Pattern
from aioecho.check.report import (
    CaseResult,
    Report,
    Verdict,
    describe_ends,
    first_difference,
    select_cases,
    table_line,
)
from aioecho.errors import ConfigError


def report() -> Report:
    return Report(
        "127.0.0.1 port 7 (TCP)",
        [
            CaseResult("basic", Verdict.OK, "46 bytes", 0.001),
            CaseResult("half-close", Verdict.NON_STRICT, "a reset instead of EOF", 0.2),
            CaseResult("large", Verdict.FAILED, "differs at byte 5", 0.5, {"bytes": 9}),
            CaseResult("idle", Verdict.SKIPPED, "not today", 0.0),
        ],
        1.25,
    )


def test_table_lines_line_up() -> None:
    lines = [table_line(r) for r in report().results]
    assert lines[0] == "basic           OK          46 bytes"
    assert lines[2] == "large           FAILED      differs at byte 5"
    assert [line[28:] for line in lines] == [r.detail for r in report().results]
    assert report().summary_line() == "1 OK, 1 NON-STRICT, 1 FAILED, 1 SKIPPED in 1.2s"


def test_json_carries_every_figure() -> None:
    document = json.loads(report().to_json())
    assert document["failed"] is True
    assert document["counts"] == {"OK": 1, "NON-STRICT": 1, "FAILED": 1, "SKIPPED": 1}
    assert document["cases"][2] == {
        "case": "large", "verdict": "FAILED", "detail": "differs at byte 5", "seconds": 0.5,
        "bytes": 9,
    }  # fmt: skip


def test_junit_failed_is_a_failure_skipped_is_skipped_non_strict_passes() -> None:
    suite = ET.fromstring(report().to_junit())
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "1", "1")
    cases = {case.get("name"): case for case in suite}
    failure = cases["large"].find("failure")
    assert failure is not None and failure.get("message") == "differs at byte 5"
    assert cases["idle"].find("skipped") is not None
    assert [child.tag for child in cases["half-close"]] == ["system-out"]
    assert cases["half-close"][0].text == "NON-STRICT: a reset instead of EOF"


def test_case_selection_keeps_the_running_order() -> None:
    assert select_cases(True, False, ["idle", "basic"], [], False) == ["basic", "idle"]
    assert select_cases(False, True, [], ["udp-burst"], False) == ["udp-basic", "udp-sizes"]
    assert "idle-probe" in select_cases(True, False, [], [], True)
    assert "idle-probe" not in select_cases(True, False, [], [], False)
    with pytest.raises(ConfigError, match="needs --udp"):
        select_cases(True, False, ["udp-burst"], [], False)


def test_first_difference_and_tallies() -> None:
    assert first_difference(b"abcdef", b"abXdef") == 2
    assert first_difference(b"abc", b"ab") is None
    assert describe_ends(["reset", "silent", "reset"]) == "2 reset, 1 silent"


def test_pattern_numbers_its_blocks_and_slices_across_them() -> None:
    pattern = Pattern(1)
    whole = pattern.slice(0, 3 * 65536)
    assert whole[65536:65544] == (1).to_bytes(8, "big")
    assert pattern.slice(65530, 20) == whole[65530:65550]
    assert Pattern(1).slice(0, 100) == whole[:100] != Pattern(2).slice(0, 100)
