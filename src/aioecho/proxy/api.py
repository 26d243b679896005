"""`aioecho proxy --api`: Toxiproxy's HTTP API over a Hub, so that every Toxiproxy client drives
aioecho unchanged (docs/toxiproxy.md lists each endpoint and every difference).

    GET  /version                          {"version": "..."}
    GET  /proxies                          {name: proxy, ...}
    POST /proxies                          201 proxy (409 if the name is taken)
    POST /populate                         201 {"proxies": [proxy, ...]}
    GET|POST|PATCH|DELETE /proxies/{name}  proxy, or 204 when deleted
    GET|POST /proxies/{name}/toxics        [toxic, ...], or the toxic added
    GET|POST|PATCH|DELETE /proxies/{name}/toxics/{toxic}
    POST /proxies/{name}/scenario          ours: toxics added, changed, removed over time
    GET  /proxies/{name}/connections       ours: open connections, what passed, toxics
    POST /reset                            204: every proxy enabled, every toxic removed
    GET  /events?since=N                   ours: the journal, NDJSON
    GET  /metrics                          ours: Prometheus text (with prometheus_client)

Errors are Toxiproxy's: {"error": "proxy not found", "status": 404}. HTTP is parsed by h11,
bounded: a head of at most 8 KiB, a body of at most 1 MiB, 10 s for a request to arrive, 64
clients at once; requests on one connection are answered in turn. As Toxiproxy does, a request
whose User-Agent starts with "Mozilla/" is refused (403): a web page must not drive it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any, Final, cast

import h11

from ..errors import ListenError
from ..httpserve import MAX_HEAD, HttpConnection, head_size
from ..version import __version__
from .hub import Hub
from .scenario import parse_scenario, run_scenario
from .spec import ApiError, bad_body, parse_proxy, parse_toxic

__all__ = ["ApiServer", "start_api"]

_log = logging.getLogger("aioecho.main")

MAX_BODY: Final = 1024 * 1024  # bytes of a request's body
JSON: Final = "application/json"

Answer = tuple[int, str, bytes]
Handler = Callable[[Hub, dict[str, str], Any, dict[str, str]], Awaitable[Any]]


def _json(value: Any, status: int = 200) -> Answer:
    return status, JSON, json.dumps(value).encode() + b"\n"


async def _version(hub: Hub, _: dict[str, str], body: Any, q: dict[str, str]) -> Answer:
    return _json({"version": __version__})


async def _proxies(hub: Hub, _: dict[str, str], body: Any, q: dict[str, str]) -> Answer:
    return _json({name: proxy.to_json() for name, proxy in hub.proxies.items()})


async def _create(hub: Hub, _: dict[str, str], body: Any, q: dict[str, str]) -> Answer:
    proxy = await hub.create(parse_proxy(body))
    return _json(proxy.to_json(), 201)


async def _populate(hub: Hub, _: dict[str, str], body: Any, q: dict[str, str]) -> Answer:
    if not isinstance(body, list):
        raise bad_body("a JSON list of proxies is needed")
    made = await hub.populate([parse_proxy(item) for item in body])
    return _json({"proxies": [proxy.to_json() for proxy in made]}, 201)


async def _show(hub: Hub, p: dict[str, str], body: Any, q: dict[str, str]) -> Answer:
    return _json(hub.get(p["proxy"]).to_json())


async def _update(hub: Hub, p: dict[str, str], body: Any, q: dict[str, str]) -> Answer:
    proxy = hub.get(p["proxy"])
    current = parse_proxy(
        {
            "name": proxy.name,
            "listen": proxy.listen,
            "upstream": proxy.upstream,
            "enabled": proxy.enabled,
        }
    )
    return _json((await hub.update(proxy.name, parse_proxy(body, current))).to_json())


async def _delete(hub: Hub, p: dict[str, str], body: Any, q: dict[str, str]) -> Answer:
    await hub.delete(p["proxy"])
    return 204, JSON, b""


async def _toxics(hub: Hub, p: dict[str, str], body: Any, q: dict[str, str]) -> Answer:
    return _json([toxic.to_json() for toxic in hub.get(p["proxy"]).toxics.values()])


async def _add_toxic(hub: Hub, p: dict[str, str], body: Any, q: dict[str, str]) -> Answer:
    hub.get(p["proxy"])  # 404 before 400, as Toxiproxy
    return _json(hub.add_toxic(p["proxy"], parse_toxic(body)).to_json())


async def _toxic(hub: Hub, p: dict[str, str], body: Any, q: dict[str, str]) -> Answer:
    toxic = hub.get(p["proxy"]).toxics.get(p["toxic"])
    if toxic is None:
        raise ApiError(404, "toxic not found")
    return _json(toxic.to_json())


async def _update_toxic(hub: Hub, p: dict[str, str], body: Any, q: dict[str, str]) -> Answer:
    current = hub.get(p["proxy"]).toxics.get(p["toxic"])
    if current is None:
        raise ApiError(404, "toxic not found")
    return _json(hub.update_toxic(p["proxy"], parse_toxic(body, current)).to_json())


async def _remove_toxic(hub: Hub, p: dict[str, str], body: Any, q: dict[str, str]) -> Answer:
    hub.remove_toxic(p["proxy"], p["toxic"])
    return 204, JSON, b""


async def _connections(hub: Hub, p: dict[str, str], body: Any, q: dict[str, str]) -> Answer:
    return _json(hub.get(p["proxy"]).connections())


async def _scenario(hub: Hub, p: dict[str, str], body: Any, q: dict[str, str]) -> Answer:
    hub.get(p["proxy"])
    steps = parse_scenario(body)
    run_scenario(hub, p["proxy"], steps)
    return _json({"proxy": p["proxy"], "steps": len(steps)}, 202)


async def _reset(hub: Hub, p: dict[str, str], body: Any, q: dict[str, str]) -> Answer:
    await hub.reset()
    return 204, JSON, b""


async def _events(hub: Hub, p: dict[str, str], body: Any, q: dict[str, str]) -> Answer:
    try:
        since = int(q.get("since", "0"))
    except ValueError:
        raise ApiError(400, "since must be a whole number") from None
    return 200, "application/x-ndjson", hub.journal.ndjson(since)


async def _metrics(hub: Hub, p: dict[str, str], body: Any, q: dict[str, str]) -> Answer:
    try:
        from .metrics import exposition
    except ImportError:
        raise ApiError(
            501, "/metrics needs prometheus_client: pip install 'aioecho[metrics]'"
        ) from None
    return exposition(hub)


_NAME = r"(?P<proxy>[^/]+)"
ROUTES: Final[list[tuple[re.Pattern[str], dict[str, Handler]]]] = [
    (re.compile(r"/version"), {"GET": _version}),
    (re.compile(r"/proxies"), {"GET": _proxies, "POST": _create}),
    (re.compile(r"/populate"), {"POST": _populate}),
    (re.compile(r"/reset"), {"POST": _reset}),
    (re.compile(r"/events"), {"GET": _events}),
    (re.compile(r"/metrics"), {"GET": _metrics}),
    (
        re.compile(rf"/proxies/{_NAME}"),
        {"GET": _show, "POST": _update, "PATCH": _update, "DELETE": _delete},
    ),
    (re.compile(rf"/proxies/{_NAME}/toxics"), {"GET": _toxics, "POST": _add_toxic}),
    (re.compile(rf"/proxies/{_NAME}/scenario"), {"POST": _scenario}),
    (re.compile(rf"/proxies/{_NAME}/connections"), {"GET": _connections}),
    (
        re.compile(rf"/proxies/{_NAME}/toxics/(?P<toxic>[^/]+)"),
        {"GET": _toxic, "POST": _update_toxic, "PATCH": _update_toxic, "DELETE": _remove_toxic},
    ),
]


async def answer(hub: Hub, method: str, target: str, body: bytes) -> Answer:
    """The answer to one request (pure routing; no socket)."""
    url = urllib.parse.urlsplit(target)
    query = dict(urllib.parse.parse_qsl(url.query))
    for pattern, methods in ROUTES:
        found = pattern.fullmatch(url.path)
        if found is None:
            continue
        handler = methods.get("GET" if method == "HEAD" else method)
        if handler is None:
            return 405, "text/plain; charset=utf-8", b""
        params = {k: urllib.parse.unquote(v) for k, v in found.groupdict().items()}
        try:
            parsed = json.loads(body) if body.strip() else {}
        except (ValueError, UnicodeDecodeError) as err:
            return _json(bad_body(str(err)).body(), 400)
        try:
            found_answer: Answer = await handler(hub, params, parsed, query)
            return found_answer
        except ApiError as err:
            return _json(err.body(), err.status)
    return 404, "text/plain; charset=utf-8", b"404 page not found\n"


class _ApiProtocol(HttpConnection):
    """One HTTP/1.1 client: its requests read by h11 and answered in turn (keep-alive)."""

    def __init__(self, server: ApiServer) -> None:
        super().__init__(server.clients)
        self._server = server
        self._request: h11.Request | None = None
        self._body = bytearray()
        self._busy: asyncio.Task[None] | None = None  # the request being answered

    def eof_received(self) -> bool:
        self._conn.receive_data(b"")
        self._process()
        return self._busy is not None  # answer what was asked, then close

    def _process(self) -> None:
        """Read events until a whole request is in, then answer it (one at a time)."""
        while self._busy is None and not self.transport.is_closing():
            event = self._next_event()
            if event is None:
                return
            if isinstance(event, h11.Request):
                if head_size(event) > MAX_HEAD:
                    self._fail(431, "request header fields too large")
                    return
                self._request = event
                self._body.clear()
            elif isinstance(event, h11.Data):
                self._body += event.data
                if len(self._body) > MAX_BODY:
                    self._fail(413, f"a body of at most {MAX_BODY} bytes")
                    return
            elif isinstance(event, h11.EndOfMessage):
                self.transport.pause_reading()
                self._busy = asyncio.get_running_loop().create_task(self._answer())
            elif isinstance(event, h11.ConnectionClosed):
                self.transport.close()
                return

    async def _answer(self) -> None:
        request = self._request
        assert request is not None
        method = request.method.decode("ascii", "replace")
        target = request.target.decode("ascii", "replace")
        agent = dict(request.headers).get(b"user-agent", b"")
        if agent.startswith(b"Mozilla/"):
            status, kind, body = 403, "text/plain; charset=utf-8", b"User agent not allowed\n"
        else:
            try:
                status, kind, body = await answer(
                    self._server.hub, method, target, bytes(self._body)
                )
            except Exception:  # a bug here must not end the API: said, and a 500
                _log.exception("api: %s %s", method, target)
                status, kind, body = _json({"error": "internal error", "status": 500}, 500)
        self._busy = None
        if self.transport.is_closing():
            return
        self._send(status, kind, b"" if method == "HEAD" else body, len(body))
        if self._conn.our_state is h11.MUST_CLOSE:
            self.transport.close()
            return
        self.transport.resume_reading()
        self._process()

    def _refuse(self, err: Exception) -> None:
        self._fail(getattr(err, "error_status_hint", 400), str(err))

    def _fail(self, status: int, reason: str) -> None:
        self._send_error(*_json(bad_body(reason).body() | {"status": status}, status))


class ApiServer:
    """The API's listener over a Hub."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.clients: dict[asyncio.Transport, None] = {}
        self._listener: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        try:
            self._listener = await loop.create_server(
                lambda: _ApiProtocol(self), host, port, reuse_address=True
            )
        except OSError as err:
            raise ListenError(f"{host} port {port} (--api)", err) from None
        return cast(tuple[str, int], self._listener.sockets[0].getsockname()[:2])

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            for client in list(self.clients):
                client.abort()
            await self._listener.wait_closed()


async def start_api(hub: Hub, host: str, port: int) -> ApiServer:
    server = ApiServer(hub)
    where = await server.start(host, port)
    shown = f"[{where[0]}]:{where[1]}" if ":" in where[0] else f"{where[0]}:{where[1]}"
    _log.info("api on http://%s (Toxiproxy's API; /events, /metrics)", shown)
    return server
