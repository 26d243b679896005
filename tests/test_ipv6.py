"""IPv4 and IPv6 together: several hosts on one port, dual-stack '::', the address reached."""

from __future__ import annotations

from support import ServerProcess, run_cli


def test_dual_stack_wildcard_serves_both_families() -> None:
    with ServerProcess("--host", "::", "--port", "0") as server:
        server.start()
        assert server.addresses == [("::", server.port)]
        for host in ("127.0.0.1", "::1"):
            result = run_cli("client", "--host", host, "--port", str(server.port))
            assert result.returncode == 0, result.stderr
        server.wait_for_line(r"^EchoServer_::ffff:127\.0\.0\.1_\d+: connection accepted$")
        server.wait_for_line(r"^EchoServer_::1_\d+: connection accepted$")
        assert server.stop() == 0


def test_both_wildcards_on_one_port() -> None:
    with ServerProcess("--host", "0.0.0.0", "--host", "::", "--port", "0") as server:
        server.start(listeners=2)
        assert [host for host, _ in server.addresses] == ["0.0.0.0", "::"]
        assert len({port for _, port in server.addresses}) == 1
        assert server.stop() == 0


def test_client_says_which_address_it_reached() -> None:
    with ServerProcess("--host", "::1", "--host", "127.0.0.1", "--port", "0") as server:
        server.start(listeners=2)
        result = run_cli("client", "--host", "::1", "--port", str(server.port))
        assert f"EchoClient: connecting to ::1 port {server.port}" in result.stderr.decode()
        result = run_cli("client", "--host", "localhost", "--port", str(server.port))
        assert f"EchoClient: connecting to 127.0.0.1 port {server.port}" in result.stderr.decode()
        assert server.stop() == 0
