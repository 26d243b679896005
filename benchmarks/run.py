#!/usr/bin/env python3
"""Reproduce every figure of the README's performance section, in one run on this machine.

Uses the native instruments in ../shared/bench (cecho, echoload, compare.py, the bare asyncio
baseline) and `aioecho bench`. Servers are pinned to CPU 0 and the load to CPU 1 (compare.py's
rule). Writes benchmarks/results.json and benchmarks/results.md, and benchmarks/results.png
when matplotlib is installed (`.venv/bin/pip install '.[plot]'`). The instruction counts need
valgrind (Debian's package), and are left out without it.

    .venv/bin/python benchmarks/run.py                     # about 30 minutes
    .venv/bin/python benchmarks/run.py --quick             # about 8 minutes, fewer repetitions
    .venv/bin/python benchmarks/run.py --only p99          # re-measure one section, update it
    .venv/bin/python benchmarks/run.py --only instructions # the noise-free hot-path figure
    .venv/bin/python benchmarks/run.py --only relay        # the proxy against direct, HAProxy
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "bench"
sys.path.insert(0, str(SHARED))
import compare  # noqa: E402  (the shared instruments: build, start, stop, free_port, BIN)

PY = sys.executable
AIOECHO = f"{PY} -m aioecho server -q --host 127.0.0.1 --port {{port}} --max-connections 20000"
SECTIONS = [
    "requests",
    "p99",
    "bulk",
    "idle",
    "ceiling",
    "workers",
    "instructions",
    "connrate",
    "newconn",
    "tls",
    "relay",
]
SERVERS = {
    "c": f"{compare.BIN / 'cecho'} 127.0.0.1 {{port}}",
    "baseline": f"{PY} {SHARED / 'baseline_proto.py'} {{port}}",
    "baseline-uvloop": f"{PY} {SHARED / 'baseline_proto.py'} {{port}} --uvloop",
    "aioecho": AIOECHO,
    "aioecho-asyncio": AIOECHO + " --loop asyncio",
}


def run_compare(size: int, conns: int, reps: int, duration: float) -> dict[str, dict]:
    out = HERE / f".compare-{size}-{conns}.json"
    argv = [PY, str(SHARED / "compare.py"), "--python", PY, "--size", str(size),
            "--conns", str(conns), "--reps", str(reps), "--duration", str(duration),
            "--json", str(out)]  # fmt: skip
    for name in ("c", "baseline", "baseline-uvloop"):
        argv += ["--ref", name]
    argv += ["--server", f"aioecho={SERVERS['aioecho']}"]
    argv += ["--server", f"aioecho-asyncio={SERVERS['aioecho-asyncio']}"]
    print(subprocess.run(argv, check=True, capture_output=True, text=True).stdout, flush=True)
    summary = json.loads(out.read_text())["summary"]
    out.unlink()
    return summary


def echoload(port: int, *args: str, timeout: float = 120, pin: bool = True) -> dict:
    argv = [str(compare.BIN / "echoload"), "-p", str(port), *args]
    if pin:
        argv = ["taskset", "-c", "1", *argv]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout).stdout
    return json.loads(out.strip().splitlines()[-1])


def bulk(duration: float) -> dict[str, float]:
    result = {}
    for name, cmd in SERVERS.items():
        port = compare.free_port()
        proc = compare.start(cmd, port)
        try:
            result[name] = echoload(port, "--bulk", "-d", str(duration))["echoed_mibps"]
        finally:
            compare.stop(proc)
        print(f"bulk {name}: {result[name]:.0f} MiB/s", flush=True)
    return result


HAPROXY_CFG = """global
    nbthread 1
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
listen relay
    bind 127.0.0.1:{port}
    server echo 127.0.0.1:{upstream}
"""


def _api_proxy(port: int, upstream: int, toxics: list[dict]) -> subprocess.Popen:
    """`aioecho proxy --api`, one proxy made through the API (listen port, upstream), with
    these toxics."""
    import urllib.request

    api = compare.free_port()
    proc = subprocess.Popen(
        [PY, "-m", "aioecho", "proxy", "-q", "--api", f"127.0.0.1:{api}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    compare.wait_listening(api, proc)

    def post(path: str, body: dict) -> None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{api}{path}", json.dumps(body).encode(), method="POST"
        )
        urllib.request.urlopen(request, timeout=10).read()

    post("/proxies", {"name": "bench", "listen": f"127.0.0.1:{port}",
                      "upstream": f"127.0.0.1:{upstream}"})  # fmt: skip
    for toxic in toxics:
        post("/proxies/bench/toxics", toxic)
    compare.wait_listening(port, proc)
    return proc


def relay(duration: float, reps: int = 3) -> dict[str, dict[str, float]]:
    """Bulk through each relay to cecho (echoload --bulk, unpinned: the relay and cecho share
    the machine's cores with the load), interleaved repetitions, medians; and each relay's CPU
    seconds per GiB relayed (its own process, from /proc)."""
    zero = {"type": "latency", "attributes": {"latency": 0}}
    relays: dict[str, Callable[[int, int], subprocess.Popen | None]] = {
        "direct": lambda port, upstream: None,
        "haproxy": lambda port, upstream: _haproxy(port, upstream),
        "aioecho proxy --to": lambda port, upstream: _started(
            f"{PY} -m aioecho proxy -q --port {port} --to 127.0.0.1:{upstream}", port
        ),
        "aioecho proxy --api": lambda port, upstream: _api_proxy(port, upstream, []),
        "aioecho proxy --api, latency 0 both ways": lambda port, upstream: _api_proxy(
            port, upstream, [zero, {**zero, "stream": "upstream"}]
        ),
    }
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in relays}
    for _ in range(reps):
        for name, make in relays.items():
            upstream = compare.free_port()
            echo = subprocess.Popen([str(compare.BIN / "cecho"), "127.0.0.1", str(upstream)],
                                    start_new_session=True)  # fmt: skip
            compare.wait_listening(upstream, echo)
            port = compare.free_port()
            proc = make(port, upstream)
            try:
                before = compare.tree_cpu_ticks(proc.pid) if proc else 0
                got = echoload(port if proc else upstream, "--bulk", "-d", str(duration),
                               pin=False)["echoed_mibps"]  # fmt: skip
                ticks = (compare.tree_cpu_ticks(proc.pid) - before) if proc else 0
            finally:
                if proc is not None:
                    compare.stop(proc)
                compare.stop(echo)
            gib = got * duration / 1024
            runs[name].append((got, ticks / compare.TCK / gib if gib else 0.0))
            print(f"relay {name}: {got:.0f} MiB/s", flush=True)
    result = {}
    for name, pairs in runs.items():
        result[name] = {
            "mibps": statistics.median(p[0] for p in pairs),
            "cpu_s_per_gib": statistics.median(p[1] for p in pairs),
            "mibps_runs": [p[0] for p in pairs],
            "cpu_s_per_gib_runs": [p[1] for p in pairs],
        }
    return result


def _started(command: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(command.split(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    compare.wait_listening(port, proc)
    return proc


def _haproxy(port: int, upstream: int) -> subprocess.Popen:
    config = Path(tempfile.mkdtemp()) / "haproxy.cfg"
    config.write_text(HAPROXY_CFG.format(port=port, upstream=upstream))
    return _started(f"haproxy -f {config} -db", port)


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]


def idle(count: int) -> dict[str, float]:
    """Server RSS per idle connection: the slope between a server holding count/3 connections
    and one holding count, each a fresh process. (RSS while holding them minus RSS before
    depends on what the server's start-up left free in its heap, which the first connections
    reuse: it measured aioecho below bare uvloop on one day and 1.11x on another, for the same
    per-connection cost. The slope leaves the start-up out.)"""
    result = {}
    low = count // 3
    for name in ("baseline", "baseline-uvloop", "aioecho", "aioecho-asyncio"):
        held = {n: _held_rss(SERVERS[name], n) for n in (low, count)}
        result[name] = (held[count] - held[low]) / (count - low)
        print(f"idle {name}: {result[name]:.2f} KiB per connection", flush=True)
    return result


def _held_rss(command: str, count: int) -> int:
    """RSS (KiB) of a fresh server `command` while it holds `count` idle connections."""
    port = compare.free_port()
    proc = compare.start(command, port)
    try:
        load = subprocess.Popen(
            ["taskset", "-c", "1", str(compare.BIN / "echoload"), "-p", str(port), "--idle",
             "-c", str(count), "--hold", "3"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert load.stdout is not None
        for line in load.stdout:
            if line.startswith("holding"):
                break
        time.sleep(0.5)  # let the server finish the last reads before sampling
        held = rss_kib(proc.pid)
        load.wait(60)
    finally:
        compare.stop(proc)
    return held


def bench_ceiling(duration: float) -> dict[str, float]:
    """Requests/s that one `aioecho bench` process drives against the C server, against what
    the native echoload drives, same pinning, same run."""
    port = compare.free_port()
    proc = compare.start(SERVERS["c"], port)
    try:
        native = echoload(port, "-c", "10", "-s", "1024", "-d", str(duration), "-w", "0.5")["rps"]
        argv = bench_argv(port, "-c", "10", "--size", "1024", "--duration", str(duration),
                          "--warmup", "0.5")  # fmt: skip
        ours = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
    finally:
        compare.stop(proc)
    rps = ours["result"]["rps"]
    print(f"bench ceiling: echoload {native:.0f} req/s, aioecho bench {rps:.0f} req/s", flush=True)
    return {"echoload_rps": native, "aioecho_bench_rps": rps, "ratio": rps / native}


def workers(duration: float) -> dict[str, float]:
    """Requests/s of `aioecho server --workers N`, unpinned: on two cores the load generator
    shares the machine with the workers."""
    result = {}
    for count in (1, 2):
        port = compare.free_port()
        cmd = f"{PY} -m aioecho server -q --host 127.0.0.1 --port {port} --workers {count}"
        proc = subprocess.Popen(cmd.split(), stderr=subprocess.DEVNULL, start_new_session=True)
        compare.wait_listening(port, proc)
        time.sleep(1.0)  # the workers start after the parent listens
        try:
            out = subprocess.run(
                [str(compare.BIN / "echoload"), "-p", str(port), "-c", "20", "-s", "1024",
                 "-d", str(duration), "-w", "0.5"],
                capture_output=True, text=True, timeout=120,
            ).stdout  # fmt: skip
            result[f"workers_{count}_rps"] = json.loads(out.strip().splitlines()[-1])["rps"]
        finally:
            compare.stop(proc)
        print(f"workers {count}: {result[f'workers_{count}_rps']:.0f} req/s", flush=True)
    return result


def callgrind_control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def count_instructions(command: str, load: Callable[[int, bool], int]) -> float:
    """User-space instructions (callgrind) of the server `command` ({port}) per unit of work:
    load(port, measured) runs a load and returns how many units it did; the first, not
    measured, warms the server, and counting stops before the server is told to exit."""
    port = compare.free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                f"--callgrind-out-file={out}", *command.format(port=port).split()]  # fmt: skip
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)  # fmt: skip
        try:
            compare.wait_listening(port, proc, timeout=120)
            load(port, False)
            callgrind_control(proc.pid, "-z")
            callgrind_control(proc.pid, "-i", "on")
            units = load(port, True)
            callgrind_control(proc.pid, "-i", "off")
            callgrind_control(proc.pid, "-d")
        finally:
            compare.stop(proc)
        total = sum(
            int(line.split()[1])
            for dump in Path(tmp).glob("callgrind.out*")
            for line in dump.read_text().splitlines()
            if line.startswith("totals:")
        )
    return total / units


def instructions(duration: float) -> dict[str, float]:
    """User-space instructions per request (callgrind), 1 KiB x 100 connections.

    Unlike CPU time this hardly moves with the machine's load (the same server and load give
    the same count to within 2-3%, depending on the run's length), so it shows what a change to
    the hot path costs. It leaves out the kernel, which does the same system calls for every
    server here (one read and one write per request), so differences are all user space.
    """
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        print("valgrind is not installed: no instruction counts", flush=True)
        return {}

    def load(port: int, measured: bool) -> int:
        seconds = str(duration) if measured else "1"
        report = echoload(port, "-c", "100", "-s", "1024", "-w", "0", "-d", seconds, pin=False)
        return int(report["requests"])

    result = {}
    for name in ("c", "baseline-uvloop", "aioecho", "baseline", "aioecho-asyncio"):
        result[name] = count_instructions(SERVERS[name], load)
        print(f"instructions {name}: {result[name]:.0f} per request", flush=True)
    return result


def connrate(duration: float) -> dict[str, dict]:
    """CPU per connection (connload: connect, echo 64 bytes, close), aioecho at its default
    verbosity and with -q, against bare uvloop and the C server, one run of connrate.py."""
    out = HERE / ".connrate.json"
    aioecho = f"{PY} -m aioecho server --host 127.0.0.1 --port {{port}} --max-connections 20000"
    argv = [PY, str(SHARED / "connrate.py"), "--python", PY, "--ref", "baseline-uvloop",
            "--ref", "c", "--duration", str(duration), "--json", str(out),
            "--server", f"aioecho={aioecho}", "--server", f"aioecho-q={aioecho} -q"]  # fmt: skip
    print(subprocess.run(argv, check=True, capture_output=True, text=True).stdout, flush=True)
    summary = json.loads(out.read_text())
    out.unlink()
    return summary.get("summary", summary)


def newconn(duration: float) -> dict[str, float]:
    """Connections/s that one `aioecho bench --new-connection` process drives against the C
    server, against connload's, same pinning, same run."""
    port = compare.free_port()
    proc = compare.start(SERVERS["c"], port)
    try:
        native = subprocess.run(
            ["taskset", "-c", "1", str(compare.BIN / "connload"), "-p", str(port),
             "-d", str(duration)],
            capture_output=True, text=True, timeout=120,
        ).stdout  # fmt: skip
        native_rate = json.loads(native.strip().splitlines()[-1])["conn_per_s"]
        argv = bench_argv(port, "--new-connection", "-c", "8", "--size", "64",
                          "--duration", str(duration), "--warmup", "0.5")  # fmt: skip
        ours = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
    finally:
        compare.stop(proc)
    rate = ours["result"]["connections_per_s"]
    print(f"new connections: connload {native_rate:.0f}/s, aioecho bench {rate:.0f}/s", flush=True)
    return {"connload_per_s": native_rate, "aioecho_bench_per_s": rate, "ratio": rate / native_rate}


def bench_argv(port: int, *options: str, pinned: bool = True) -> list[str]:
    """`aioecho bench -q --json` against 127.0.0.1:port, on core 1 unless pinned is False."""
    pin = ["taskset", "-c", "1"] if pinned else []
    return [*pin, PY, "-m", "aioecho", "bench", "-q", "--host", "127.0.0.1", "--port", str(port),
            "--json", *options]  # fmt: skip


def _server_cpu_per(proc: subprocess.Popen, load: list[str]) -> tuple[float, dict]:
    """Run the load (an `aioecho bench --json` command line); the server's CPU microseconds
    per request or connection it served, and the bench's report."""
    before = compare.tree_cpu_ticks(proc.pid)
    report = json.loads(subprocess.run(load, capture_output=True, text=True, check=True).stdout)
    ticks = compare.tree_cpu_ticks(proc.pid) - before
    count = report["exact"]["histogram"]["count"]
    return ticks / compare.TCK * 1e6 / max(count, 1), report["result"]


def tls_instructions(servers: dict[str, str], count: int = 200) -> dict[str, float]:
    """User-space instructions per new TLS connection (callgrind), `count` connections after
    100 not counted: the TLS accept path's cost without the machine's noise."""
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        return {}

    def load(port: int, measured: bool) -> int:
        connections = count if measured else 100
        bench = bench_argv(port, "--tls", "--insecure", "--new-connection", "-c", "4",
                           "--timeout", "60", "--warmup", "0", "--requests", str(connections),
                           pinned=False)  # fmt: skip
        subprocess.run(bench, capture_output=True, check=True)
        return connections

    result = {}
    for name, command in servers.items():
        result[name] = count_instructions(command, load)
        print(f"tls instructions {name}: {result[name]:.0f} per new connection", flush=True)
    return result


def tls(duration: float, reps: int) -> dict[str, dict]:
    """Server CPU per TLS request (1 KiB x 10 connections), per new TLS connection (handshake,
    echo, close) and per resumed one (`--tls-resume`: TLS 1.3 tickets), aioecho against the
    fair bare uvloop TLS baseline (and the bare price of start_tls, tls_starttls_baseline.py),
    with `aioecho bench --tls --insecure` as the load, for an ECDSA P-256 and an RSA 2048
    certificate. The servers run side by side, warmed by a first load; the repetitions
    alternate between them, and each figure is the median, with the
    range of the per-repetition ratios (aioecho / baseline) beside it. With valgrind, the
    user-space instructions per new connection too (ECDSA), which do not move with the noise."""
    import statistics

    import trustme  # the test dependency: a throwaway CA and certificate

    loads = {
        "request": ["-c", "10"],
        "connection": ["-c", "8", "--new-connection"],
        "resumed": ["-c", "8", "--new-connection", "--tls-resume"],
    }
    result: dict[str, dict] = {}
    for key_type in (trustme.KeyType.ECDSA, trustme.KeyType.RSA):
        kind = "ecdsa" if key_type is trustme.KeyType.ECDSA else "rsa"
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
            ca = trustme.CA(key_type=key_type)
            issued = ca.issue_cert("localhost", "127.0.0.1", key_type=key_type)
            issued.cert_chain_pems[0].write_to_path(str(cert))
            issued.private_key_pem.write_to_path(str(key))
            servers = {
                "baseline-uvloop-tls": f"{PY} {HERE / 'tls_baseline.py'} {{port}} {cert} {key}",
                "starttls-uvloop-tls": f"{PY} {HERE / 'tls_starttls_baseline.py'} {{port}} "
                f"{cert} {key}",
                "aioecho": f"{AIOECHO} --tls-cert {cert} --tls-key {key}",
            }
            procs, ports = {}, {}
            samples: dict[str, dict[str, list[float]]] = {n: {} for n in servers}
            try:
                for name, cmd in servers.items():
                    ports[name] = compare.free_port()
                    procs[name] = compare.start(cmd, ports[name])
                for rep in range(reps + 1):  # the first: a warm-up, not counted
                    for what, load in loads.items():
                        seconds = str(duration if rep else 1)
                        for name in servers:
                            bench = bench_argv(ports[name], "--tls", "--insecure", "--size",
                                               "1024", "--warmup", "0.2", "--duration", seconds,
                                               *load)  # fmt: skip
                            cpu, _ = _server_cpu_per(procs[name], bench)
                            if rep:
                                samples[name].setdefault(what, []).append(cpu)
            finally:
                for proc in procs.values():
                    compare.stop(proc)
            instructions = tls_instructions(servers) if kind == "ecdsa" else {}
        base = samples["baseline-uvloop-tls"]
        for name, figures in samples.items():
            row: dict[str, float | list[float]] = {}
            for what, values in figures.items():
                row[f"cpu_us_per_{what}"] = statistics.median(values)
                ratios = [a / b for a, b in zip(values, base[what], strict=True)]
                row[f"{what}_ratio_range"] = [min(ratios), max(ratios)]
            if name in instructions:
                row["instructions_per_connection"] = instructions[name]
            result[f"{name} ({kind})"] = row
            print(f"tls {name} ({kind}): " + ", ".join(
                f"{what} {row[f'cpu_us_per_{what}']:.1f} us "
                f"({row[f'{what}_ratio_range'][0]:.2f}x-{row[f'{what}_ratio_range'][1]:.2f}x)"
                for what in loads
            ), flush=True)  # fmt: skip
    return result


def markdown(results: dict) -> str:
    lines = [
        "# Benchmark results",
        "",
        "Measured with `benchmarks/run.py`, section by section:",
        "",
    ]
    lines += [f"- {section}: {when}" for section, when in results["measured"].items()]
    lines.append("")
    tables = {**results.get("requests", {}), **results.get("p99", {})}
    for key, table in tables.items():
        lines += [f"## Requests, {key}", ""]
        lines += ["| server | phase | req/s | p99 us | CPU us/req | CPU vs its bare loop | "
                  "CPU vs C (the kernel's floor) |", "|---" * 7 + "|"]  # fmt: skip
        c = table["c"]
        for name, phases in table.items():
            # Python's floor: the bare Protocol on the same loop (bare uvloop for C itself)
            on_asyncio = name in ("baseline", "aioecho-asyncio")
            bare = table["baseline" if on_asyncio else "baseline-uvloop"]
            for phase in ("cold", "warm"):
                x = phases[phase]
                vs_c = x["cpu_us_per_req"] / c[phase]["cpu_us_per_req"]
                vs_bare = x["cpu_us_per_req"] / bare[phase]["cpu_us_per_req"]
                lines.append(f"| {name} | {phase} | {x['rps']:.0f} | {x['p99_us']:.0f} | "
                             f"{x['cpu_us_per_req']:.2f} | {vs_bare:.2f} | "
                             f"{vs_c:.2f} |")  # fmt: skip
        lines.append("")
    if "bulk" in results:
        lines += ["## Bulk (one connection streaming both ways)", ""]
        lines += ["| server | MiB/s | vs C |", "|---|---|---|"]
        for name, mib in results["bulk"].items():
            lines.append(f"| {name} | {mib:.0f} | {mib / results['bulk']['c']:.2f} |")
        lines.append("")
    if "idle" in results:
        lines += ["## Idle connections", "", "| server | KiB per connection |", "|---|---|"]
        lines += [f"| {n} | {v:.2f} |" for n, v in results["idle"].items()]
        lines.append("")
    if "ceiling" in results:
        b = results["ceiling"]
        lines += ["## Load generator ceiling (1 KiB x 10 connections, against cecho)", ""]
        lines += [
            f"echoload {b['echoload_rps']:.0f} req/s, aioecho bench "
            f"{b['aioecho_bench_rps']:.0f} req/s: {b['ratio']:.2f}x",
            "",
        ]
    if "workers" in results:
        lines += ["## Workers (unpinned, 20 connections)", ""]
        lines += [f"- {k}: {v:.0f} req/s" for k, v in results["workers"].items()]
        lines.append("")
    if results.get("connrate"):
        lines += ["## Connection rate (connrate.py: connect, echo 64 bytes, close)", ""]
        lines += ["```", json.dumps(results["connrate"], indent=1), "```", ""]
    if "newconn" in results:
        b = results["newconn"]
        lines += ["## New-connection ceiling (against cecho)", ""]
        lines += [f"connload {b['connload_per_s']:.0f}/s, aioecho bench --new-connection "
                  f"{b['aioecho_bench_per_s']:.0f}/s: {b['ratio']:.2f}x", ""]  # fmt: skip
    if "tls" in results:
        lines += ["## TLS (server CPU, warm; medians, and the range of the ratio to baseline)", ""]
        lines += ["| server | us per request | us per new connection | us per resumed one | "
                  "instructions per new connection |", "|---|---|---|---|---|"]  # fmt: skip
        for name, x in results["tls"].items():
            cells = []
            for what in ("request", "connection", "resumed"):
                low, high = x[f"{what}_ratio_range"]
                cells.append(f"{x[f'cpu_us_per_{what}']:.1f} ({low:.2f}x-{high:.2f}x)")
            count = x.get("instructions_per_connection")
            cells.append(f"{count:,.0f}" if count else "")
            lines.append(f"| {name} | {' | '.join(cells)} |")
        lines.append("")
    if "relay" in results:
        r = results["relay"]
        direct, haproxy = r["direct"]["mibps"], r["haproxy"]["mibps"]
        lines += ["## Relay (echoload --bulk to cecho through each; medians of 3 interleaved)", ""]
        lines += ["| relay | MiB/s | vs direct | vs HAProxy | relay CPU s per GiB |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for name, x in r.items():
            cpu = f"{x['cpu_s_per_gib']:.2f}" if name != "direct" else ""
            lines.append(f"| {name} | {x['mibps']:.0f} | {x['mibps'] / direct:.2f} | "
                         f"{x['mibps'] / haproxy:.2f} | {cpu} |")  # fmt: skip
        lines.append("")
    if results.get("instructions"):
        lines += ["## User-space instructions per request (callgrind, 1 KiB x 100)", ""]
        lines += ["| server | instructions | vs bare uvloop |", "|---|---|---|"]
        counts = results["instructions"]
        for name, count in counts.items():
            lines.append(f"| {name} | {count:.0f} | {count / counts['baseline-uvloop']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def plot(results: dict) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install '.[plot]')")
        return
    sizes = sorted(int(k.split()[0]) for k in results["requests"] if k.endswith("x 10"))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in SERVERS:
        rps = [results["requests"][f"{s} x 10"][name]["warm"]["rps"] for s in sizes]
        p99 = [results["requests"][f"{s} x 10"][name]["warm"]["p99_us"] for s in sizes]
        ax1.plot(sizes, rps, marker="o", label=name)
        ax2.plot(sizes, p99, marker="o", label=name)
    for ax, title in ((ax1, "requests/s (warm)"), (ax2, "p99 latency, us (warm)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("message size, bytes (10 connections)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    ax1.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / "results.png", dpi=110)
    print(f"wrote {HERE / 'results.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repetitions")
    parser.add_argument(
        "--only",
        choices=SECTIONS,
        action="append",
        help="measure only this section (repeatable) and update it in the results files",
    )
    args = parser.parse_args()
    compare.build()
    sizes = [64, 1024, 16384, 102400] if args.quick else [64, 256, 1024, 4096, 16384, 102400]
    # Medians of several interleaved repetitions: on this shared machine one repetition in five
    # can run at half speed. The tail (p99) moves most, so it gets the most.
    reps, p99_reps, duration = (1, 3, 2.0) if args.quick else (5, 11, 2.0)
    measure = {
        "requests": lambda: {f"{s} x 10": run_compare(s, 10, reps, duration) for s in sizes},
        "p99": lambda: {"1024 x 100": run_compare(1024, 100, p99_reps, duration)},
        "bulk": lambda: bulk(duration),
        "idle": lambda: idle(10_000),
        "ceiling": lambda: bench_ceiling(duration),
        "workers": lambda: workers(duration),
        "instructions": lambda: instructions(duration),
        "connrate": lambda: connrate(3.0),
        "newconn": lambda: newconn(3.0),
        "tls": lambda: tls(3.0, reps),
        "relay": lambda: relay(3.0),
    }
    path = HERE / "results.json"
    results: dict = json.loads(path.read_text()) if args.only and path.exists() else {}
    results.setdefault("measured", {})
    for section in args.only or SECTIONS:
        results[section] = measure[section]()
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        results["measured"][section] = when + (" (--quick)" if args.quick else "")
    path.write_text(json.dumps(results, indent=1))
    (HERE / "results.md").write_text(markdown(results))
    if "requests" in results:
        plot(results)
    print(f"wrote {path} and {HERE / 'results.md'}")


if __name__ == "__main__":
    main()
