"""`aioecho proxy`: listen as the server does (limits, idle timeout, statistics, drain,
workers) and forward each connection to the upstream, with the fault options applied to what
comes back (proxy.py)."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import logging
import socket
from typing import Any

from .. import loops
from ..errors import ConfigError, describe_os_error
from ..logs import NOTICE
from ..options import Invocation
from ..roles import WorkerRole, worker_count
from ..server.command import STOP_SIGNALS, handed_over, run_server
from ..server.faults import FaultPlan
from ..server.workers import check_metrics_ports, supervise
from .config import ProxyConfig
from .options import add_parser, proxy_config
from .relay import ProxyProtocol, Upstream

__all__ = ["add_parser", "run", "run_proxy"]

_main_log = logging.getLogger("aioecho.main")


async def run_proxy(
    config: ProxyConfig,
    role: WorkerRole | None = None,
    inherited: list[socket.socket] | None = None,
    how: str = "",
) -> None:
    """The proxy until a stop signal; role: set when this process is one of --workers.
    inherited, how: sockets handed over (--fd, socket activation), as run_server takes them."""
    if forwards_to_itself(config):
        raise ConfigError(
            f"--to {config.upstream_host}:{config.upstream_port} is the proxy's own listening "
            "address: every connection would open another, without end"
        )
    faults = config.listen.faults
    plan = None
    if faults.stream:
        plan = FaultPlan(faults)
        _main_log.log(NOTICE, "faults: %s", faults.describe(plan.seed))
    upstream = Upstream(
        config.upstream_host,
        config.upstream_port,
        plan=plan,
        faults_upstream=config.faults_upstream,
        max_buffer=config.listen.max_buffer,
        connect_timeout=config.connect_timeout,
    )
    both = ", faults both ways" if plan is not None and config.faults_upstream else ""
    _main_log.log(NOTICE, "forwarding to %s%s", upstream.where, both)
    await run_server(
        config.listen,
        role,
        connection=lambda connections: functools.partial(ProxyProtocol, upstream, connections),
        inherited=inherited,
        how=how,
        fds_per_connection=2,  # the client's socket and the upstream's
        fault_counts=plan.fired if plan is not None else None,
    )


def forwards_to_itself(config: ProxyConfig) -> bool:
    """True if --to names an address the proxy itself listens on (same port, and the same
    address, or a loopback one while the proxy listens on every address)."""
    listen = config.listen
    port = config.upstream_port
    if listen.unix is not None or listen.fds or listen.port != port:
        return False
    upstream = _resolve(config.upstream_host, port)
    for host in listen.hosts:
        for address in _resolve(host, port):
            if address in upstream or (
                address.is_unspecified and any(a.is_loopback for a in upstream)
            ):
                return True
    return False


def _resolve(host: str, port: int) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return set()  # said when a connection tries it
    return {ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos}


async def run_api(config: ProxyConfig) -> None:
    """`aioecho proxy --api`: Toxiproxy's API and the proxies it makes, until a stop signal."""
    from .api import start_api
    from .hub import Hub
    from .journal import Journal
    from .scenario import run_scenario
    from .spec import ApiError

    assert config.api is not None
    specs, scenarios = (
        load_config(config.config_file) if config.config_file is not None else ([], {})
    )
    journal_file = None
    if config.journal is not None:
        try:
            journal_file = open(config.journal, "a", encoding="utf-8")  # noqa: SIM115
        except OSError as err:
            raise ConfigError(f"--journal {config.journal}: {describe_os_error(err)}") from None
    hub = Hub(
        seed=config.listen.faults.seed,
        journal=Journal(journal_file),
        max_buffer=config.listen.max_buffer,
        connect_timeout=config.connect_timeout,
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    api = None
    try:
        try:
            await hub.populate(specs)
        except ApiError as err:
            raise ConfigError(f"--config {config.config_file}: {err.message}") from None
        api = await start_api(hub, *config.api)
        for name, steps in scenarios.items():  # on the proxies' clock, from now
            run_scenario(hub, name, steps)
        _main_log.log(NOTICE, "toxicity seed %d (--seed)", hub.seed)
        for proxy in hub.proxies.values():
            _main_log.log(NOTICE, "proxy %s on %s, to %s", proxy.name, proxy.listen, proxy.upstream)
        await stop.wait()
        _main_log.log(NOTICE, "stop signal -> closing %d proxies", len(hub.proxies))
    finally:
        if api is not None:
            await api.close()
        await hub.close()
        if journal_file is not None:
            journal_file.close()


def load_config(path: str) -> tuple[list[Any], dict[str, Any]]:
    """Toxiproxy's config file: a JSON list of proxies (name, listen, upstream, enabled), each
    with an optional toxics list and scenario (ours). Returns the proxies, and the scenarios
    by proxy name."""
    from .scenario import parse_scenario
    from .spec import ApiError, parse_proxy

    try:
        with open(path, encoding="utf-8") as file:
            body = json.load(file)
    except OSError as err:
        raise ConfigError(f"--config {path}: {describe_os_error(err)}") from None
    except ValueError as err:
        raise ConfigError(f"--config {path}: not JSON: {err}") from None
    if not isinstance(body, list):
        raise ConfigError(f"--config {path}: a JSON list of proxies is needed")
    try:
        specs = [parse_proxy(item) for item in body]
        scenarios = {
            spec.name: parse_scenario(item["scenario"])
            for spec, item in zip(specs, body, strict=True)
            if item.get("scenario") is not None
        }
    except ApiError as err:
        raise ConfigError(f"--config {path}: {err.message}") from None
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"--config {path}: a proxy name appears twice")
    return specs, scenarios


def run(call: Invocation) -> None:
    """`aioecho proxy` as the command line asked: one process, or a supervisor of --workers."""
    relay = proxy_config(call.args)
    if relay.api is not None:
        loops.run(run_api(relay), call.loop)
        return
    workers = worker_count(call.args.workers)
    if workers > 1:
        check_metrics_ports(relay.listen, workers)
    inherited, how = handed_over(call.args, relay.listen, call.role)
    if call.role is None and workers > 1:
        loops.run(supervise(relay.listen, workers, call.argv, inherited, how), call.loop)
    else:
        loops.run(run_proxy(relay, call.role, inherited, how), call.loop)
