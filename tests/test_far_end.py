"""What the far end says about itself, through check's `tls` and `path` cases and the TLS
options of both ends: a certificate expired, for another name or close to its end; ALPN agreed;
mutual TLS; a path that translates addresses, adds a PROXY header or ends TLS on the way."""

from __future__ import annotations

import datetime
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trustme

from support import WAIT, ServerProcess, aioecho_command, free_port, peer, require_tool

QUICK = ("--only", "basic,tls", "--idle", "0.1")


def issue(folder: Path, *names: str, days: float = 365, ca: trustme.CA | None = None) -> Path:
    """A certificate for names (and its key, in one file), valid until `days` from now (a
    negative number: expired), by ca; the CA's own certificate is written to folder/ca.pem."""
    ca = ca or trustme.CA()
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = ca.issue_cert(
        *names,
        not_before=now - datetime.timedelta(days=400),
        not_after=now + datetime.timedelta(days=days),
    )
    path = folder / f"{names[0]}-{days:g}.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(path))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    return path


def check(*args: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        aioecho_command("check", "--json", *args), capture_output=True, timeout=120
    )
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def case(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in report["cases"] if c["case"] == name)


def serve_tls(pem: Path, *more: str) -> ServerProcess:
    return ServerProcess("-q", "--host", "127.0.0.1", "--port", "0", "--tls-cert", str(pem),
                         "--tls-key", str(pem), *more)  # fmt: skip


@pytest.mark.timeout(120)
def test_the_tls_case_fails_an_expired_certificate_naming_the_date(tmp_path: Path) -> None:
    pem = issue(tmp_path, "localhost", days=-3)
    with serve_tls(pem) as server:
        server.start()
        status, report = check("--port", str(server.port), "--tls", "--cafile",
                               str(tmp_path / "ca.pem"), *QUICK)  # fmt: skip
    tls = case(report, "tls")
    assert status == 1 and tls["verdict"] == "FAILED", tls
    expected = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=3)
    assert tls["detail"].startswith(f"the certificate expired on {expected:%Y-%m-%d}"), tls
    assert tls["detail"].endswith("(3 days ago)"), tls


@pytest.mark.timeout(120)
def test_the_tls_case_fails_a_name_mismatch_naming_the_names(tmp_path: Path) -> None:
    pem = issue(tmp_path, "a.example", "b.example")
    with serve_tls(pem) as server:
        server.start()
        _status, report = check("--port", str(server.port), "--tls", "--cafile",
                               str(tmp_path / "ca.pem"), *QUICK)  # fmt: skip
    tls = case(report, "tls")
    assert tls["verdict"] == "FAILED"
    assert tls["detail"] == (
        "name mismatch: the certificate is for DNS:a.example, DNS:b.example, not 'localhost'"
    )


@pytest.mark.timeout(120)
def test_close_to_its_end_is_non_strict_and_alpn_and_sni_are_shown(tmp_path: Path) -> None:
    pem = issue(tmp_path, "echo.test", days=5)
    with serve_tls(pem, "--alpn", "h2,http/1.1") as server:
        server.start()
        _status, report = check("--port", str(server.port), "--tls", "--cafile",
                               str(tmp_path / "ca.pem"), "--sni", "echo.test",
                               "--alpn", "http/1.1", *QUICK)  # fmt: skip
    tls = case(report, "tls")
    assert tls["verdict"] == "NON-STRICT", tls
    assert tls["alpn"] == "http/1.1" and tls["names"] == ["DNS:echo.test"]
    assert len(tls["chain"]) == 1  # trustme's leaf (its CA is not sent)
    assert tls["days_left"] in (4, 5) and "days left" in tls["detail"]
    assert "ALPN http/1.1" in tls["detail"]
    assert case(report, "basic")["verdict"] == "OK"  # --sni: verified as echo.test


@pytest.mark.timeout(120)
def test_mutual_tls_refuses_a_client_without_a_certificate_with_one_line(tmp_path: Path) -> None:
    ca = trustme.CA()
    pem = issue(tmp_path, "localhost", ca=ca)
    client_pem = tmp_path / "client.pem"
    ca.issue_cert("client@example").private_key_and_cert_chain_pem.write_to_path(str(client_pem))
    with serve_tls(pem, "--tls-client-ca", str(tmp_path / "ca.pem")) as server:
        server.start()
        base = ["--port", str(server.port), "--tls", "--cafile", str(tmp_path / "ca.pem")]
        without = subprocess.run(aioecho_command("client", *base, "hello"), capture_output=True,
                                 text=True, timeout=60)  # fmt: skip
        line = server.wait_for_line(r"TLS handshake failed")
        with_cert = subprocess.run(
            aioecho_command("client", *base, "--cert", str(client_pem), "hello"),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert without.returncode == 1
    errors = [ln for ln in without.stderr.splitlines() if "error" in ln]
    assert len(errors) == 1 and errors[0].endswith(
        "a server that requires a client certificate does this (--cert)"
    ), without.stderr
    assert "certificate" in line, line
    assert with_cert.returncode == 0, with_cert.stderr


HAPROXY = """global
    nbthread 1
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend echo
    bind 127.0.0.1:{front}{ssl}
    default_backend servers
backend servers
    server echo 127.0.0.1:{port}{option}
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("option", "terminate"), [("", False), (" send-proxy-v2", False), ("", True)]
)
def test_the_path_case_tells_what_the_balancer_did(
    tmp_path: Path, option: str, terminate: bool
) -> None:
    haproxy = require_tool("haproxy")
    flags = ["--proxy-protocol"] if option else []
    pem = issue(tmp_path, "localhost", "127.0.0.1")
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0", "--reflect", *flags) as server:
        server.start()
        front = free_port()
        config = tmp_path / "haproxy.cfg"
        ssl = f" ssl crt {pem}" if terminate else ""
        config.write_text(HAPROXY.format(front=front, port=server.port, option=option, ssl=ssl))
        tls = ["--tls", "--cafile", str(tmp_path / "ca.pem")] if terminate else []
        with peer([haproxy, "-db", "-f", str(config)], front):
            status, report = check("--host", "127.0.0.1", "--port", str(front), "--reflect",
                                   "--only", "path", *tls)  # fmt: skip
    path = case(report, "path")
    assert status == 0 and path["verdict"] == "OK", path
    assert path["proxy_header"] is bool(option)
    assert path["translated"] is not bool(option)  # the header gives the client's own address
    assert path["tls_ended_before_server"] is terminate
    if terminate:
        assert "TLS ended before the server" in path["detail"]


def test_the_path_case_is_skipped_without_a_reflector(tmp_path: Path) -> None:
    with ServerProcess("-q", "--host", "127.0.0.1", "--port", "0") as server:
        server.start()
        status, report = check("--port", str(server.port), "--reflect", "--only", "path")
    assert case(report, "path")["verdict"] == "SKIPPED"
    assert status == 0
    assert WAIT
