"""`aioecho proxy`: listen as the server does (limits, idle timeout, statistics, drain,
workers) and forward each connection to the upstream, with the fault options applied to what
comes back (proxy.py)."""

from __future__ import annotations

import functools
import logging

from ..config import ProxyConfig
from ..faults import FaultPlan
from ..logs import NOTICE
from ..proxy import ProxyProtocol, Upstream
from ..workers import WorkerRole
from .server import run_server

__all__ = ["run_proxy"]

_main_log = logging.getLogger("aioecho.main")


async def run_proxy(config: ProxyConfig, role: WorkerRole | None = None) -> None:
    """The proxy until a stop signal; role: set when this process is one of --workers."""
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
    )
