"""Timed scenarios (ours): toxics added, changed and removed at set times on the proxy's clock,
so that a test scripts "slow for 2 s, then cut, then well again" in one request and no step
races the test's own timing.

    POST /proxies/{name}/scenario   {"steps": [{"at": 0, "add": {toxic}},
                                               {"at": 2.5, "update": {"name": ..., ...}},
                                               {"at": 5, "remove": "latency_downstream"}]}

`at` is seconds from the request (0 to an hour); each step is checked when the scenario is
posted, and journaled (`scenario_step`, with `error` if it could not be done then: a toxic
removed meanwhile, say).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from .spec import ApiError, Toxic, bad_body, parse_toxic

if TYPE_CHECKING:
    from .hub import Hub

__all__ = ["Step", "parse_scenario", "run_scenario"]

_log = logging.getLogger("aioecho.proxy")

MAX_STEPS: Final = 1000
MAX_AT: Final = 3600.0
MAX_PENDING: Final = 10_000  # steps waiting at once, every scenario counted


@dataclass(frozen=True)
class Step:
    at: float  # seconds from the start
    action: str  # add, update, remove
    toxic: Toxic | None = None  # add: the toxic
    name: str = ""  # update, remove: which toxic
    body: Any = None  # update: what changes


def parse_scenario(body: Any) -> list[Step]:
    steps = body.get("steps") if isinstance(body, dict) else body
    if not isinstance(steps, list) or not 1 <= len(steps) <= MAX_STEPS:
        raise bad_body(f"a scenario is a list of 1 to {MAX_STEPS} steps")
    found = []
    for step in steps:
        if not isinstance(step, dict):
            raise bad_body("each step is a JSON object")
        at = step.get("at", 0)
        if isinstance(at, bool) or not isinstance(at, (int, float)) or not 0 <= at <= MAX_AT:
            raise bad_body(f"a step's at is 0 to {MAX_AT:g} seconds")
        actions = [a for a in ("add", "update", "remove") if a in step]
        if len(actions) != 1:
            raise bad_body("each step has one of add, update, remove")
        action = actions[0]
        if action == "add":
            found.append(Step(float(at), action, toxic=parse_toxic(step["add"])))
        elif action == "remove":
            name = step["remove"]
            if isinstance(name, dict):
                name = name.get("name")
            if not isinstance(name, str):
                raise bad_body("remove names a toxic")
            found.append(Step(float(at), action, name=name))
        else:
            change = step["update"]
            if not isinstance(change, dict) or not isinstance(change.get("name"), str):
                raise bad_body("update is a JSON object with the toxic's name")
            found.append(Step(float(at), action, name=change["name"], body=change))
    return sorted(found, key=lambda s: s.at)


def run_scenario(hub: Hub, proxy: str, steps: list[Step]) -> None:
    """Each step at its time from now, on the running loop. Bounded: at most MAX_PENDING steps
    wait at once, every scenario of the hub counted (each POST adds up to MAX_STEPS)."""
    if hub.scenario_steps + len(steps) > MAX_PENDING:
        raise bad_body(f"at most {MAX_PENDING} scenario steps wait at once")
    loop = asyncio.get_running_loop()
    hub.scenario_steps += len(steps)
    for number, step in enumerate(steps, 1):
        loop.call_later(step.at, _do, hub, proxy, number, step)


def _do(hub: Hub, proxy: str, number: int, step: Step) -> None:
    hub.scenario_steps -= 1
    fields: dict[str, Any] = {"proxy": proxy, "step": number, "action": step.action}
    try:
        if step.action == "add":
            assert step.toxic is not None
            fields["toxic"] = step.toxic.name
            hub.add_toxic(proxy, step.toxic)
        elif step.action == "remove":
            fields["toxic"] = step.name
            hub.remove_toxic(proxy, step.name)
        else:
            fields["toxic"] = step.name
            current = hub.get(proxy).toxics.get(step.name)
            if current is None:
                raise ApiError(404, "toxic not found")
            hub.update_toxic(proxy, parse_toxic(step.body, current))
    except ApiError as err:
        fields["error"] = err.message
        _log.warning("proxy %s: scenario step %d (%s): %s", proxy, number, step.action, err)
    hub.journal.add("scenario_step", **fields)
