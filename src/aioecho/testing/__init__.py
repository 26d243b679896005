"""Faults under test control, in process: a fault proxy in front of the service your client
talks to, and a throwaway echo endpoint, with toxics set and removed while connections run.

    import aioecho.testing as faults

    async with faults.fault_proxy(upstream=("127.0.0.1", 6379)) as proxy:
        client = connect(*proxy.address)
        proxy.add(faults.latency(ms=100))   # open connections slow down at once
        ...
        proxy.remove("latency_downstream")
        print(proxy.events)                 # which toxic applied to which connection

The pytest plugin (registered under the `pytest11` entry point as `aioecho`) gives the same to
synchronous and async tests as fixtures: `fault_proxy(upstream, ...)`, `echo_server(...)`, on a
loop in a background thread, closed at teardown. docs/testing.md walks through a whole case.
"""

from ..proxy.spec import Toxic
from .harness import (
    BackgroundEchoServer,
    BackgroundFaultProxy,
    EchoEndpoint,
    FaultProxy,
    Harness,
    echo_server,
    fault_proxy,
)
from .toxics import (
    bandwidth,
    blackhole,
    corrupt,
    drop,
    duplicate,
    latency,
    limit_data,
    limit_time,
    reset_peer,
    slicer,
    slow_close,
    timeout,
    toxic,
)

__all__ = [
    "BackgroundEchoServer",
    "BackgroundFaultProxy",
    "EchoEndpoint",
    "FaultProxy",
    "Harness",
    "Toxic",
    "bandwidth",
    "blackhole",
    "corrupt",
    "drop",
    "duplicate",
    "echo_server",
    "fault_proxy",
    "latency",
    "limit_data",
    "limit_time",
    "reset_peer",
    "slicer",
    "slow_close",
    "timeout",
    "toxic",
]
