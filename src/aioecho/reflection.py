"""The reflector's wire format, shared by the server that answers (server/reflect.py) and the
programs that ask (ping --reflect and --spread): the magic line a connection or datagram starts
with, and the reading of the JSON line that answers it.

Pure: imports neither asyncio, socket nor ssl."""

from __future__ import annotations

import json
from typing import Any, Final

__all__ = ["MAGIC", "ReflectionError", "instance_name", "read_reflection"]

MAGIC: Final = b"AIOECHO-REFLECT 1\r\n"


class ReflectionError(ValueError):
    """An answer to the magic that is not a reflection."""


def read_reflection(line: bytes) -> dict[str, Any]:
    """The reflection's fields; ReflectionError if the line is not one."""
    try:
        seen = json.loads(line)
        if not isinstance(seen, dict) or seen.get("reflect") != 1:
            raise ValueError
        instance_name(seen)
    except (ValueError, KeyError, TypeError):
        raise ReflectionError(
            "the answer to AIOECHO-REFLECT is not a reflection: is the server's --reflect on?"
        ) from None
    return seen


def instance_name(seen: dict[str, Any]) -> str:
    """'host-b pid 42' (and ' worker 2' under --workers): which instance answered."""
    instance = seen["instance"]
    name = f"{instance['hostname']} pid {instance['pid']}"
    if instance.get("worker"):
        name += f" worker {instance['worker']}"
    return name
