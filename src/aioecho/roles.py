"""What a worker process is told by the process that started it: `aioecho server --workers`'
supervisor (server/workers.py) and `aioecho bench --workers` alike.

It travels in one environment variable, _AIOECHO_ROLE, never in command-line flags, so nothing
hidden can clash with a public option (nor with AIOECHO_<OPTION>, the options' own variables).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Final

from .errors import AioechoError, ConfigError

__all__ = ["ENV", "WorkerRole", "worker_count"]

ENV: Final = "_AIOECHO_ROLE"  # not AIOECHO_*: that prefix is the options'
# Workers per CPU at most: beyond this they only compete for the cores (and a typo such as
# --workers 99999 would fork until the machine stalls).
MAX_WORKERS_PER_CPU: Final = 4


@dataclass(frozen=True)
class WorkerRole:
    """What a worker process is told by its parent, through the ENV variable."""

    number: int  # server workers count from 1; bench workers from 0 (their share)
    parent: int  # the parent's pid: a worker whose parent has gone stops
    fds: tuple[int, ...] = ()  # inherited sockets to serve
    reuse_port: bool = False  # also open its own TCP sockets with SO_REUSEPORT
    ready_fd: int | None = None  # write one byte here once serving

    def environ(self) -> dict[str, str]:
        """os.environ with this role set, for the child."""
        return {**os.environ, ENV: json.dumps(dataclasses.asdict(self))}

    @classmethod
    def take(cls) -> WorkerRole | None:
        """This process's role, if its parent gave it one; removed from the environment, so
        that a process this one starts is not mistaken for a worker."""
        text = os.environ.pop(ENV, None)
        if text is None:
            return None
        try:
            fields = json.loads(text)
            role = cls(**{**fields, "fds": tuple(fields.get("fds", ()))})
            if not isinstance(role.number, int) or not isinstance(role.parent, int):
                raise TypeError("number and parent must be integers")
        except (ValueError, TypeError) as err:
            raise AioechoError(f"malformed {ENV} environment variable: {err}") from None
        return role


def worker_count(requested: int) -> int:
    """--workers 0 means one per CPU; more than MAX_WORKERS_PER_CPU per CPU is refused."""
    cpus = os.cpu_count() or 1
    if requested > MAX_WORKERS_PER_CPU * cpus:
        raise ConfigError(
            f"--workers {requested}: at most {MAX_WORKERS_PER_CPU * cpus} "
            f"({MAX_WORKERS_PER_CPU} per CPU, {cpus} CPUs here)"
        )
    return requested if requested > 0 else cpus
