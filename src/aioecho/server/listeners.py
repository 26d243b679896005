"""Listening sockets: every address of every host on one port number, and Unix socket files.

asyncio's create_server gives each address its own port when asked for port 0, and cannot bind
TCP and UDP to the same number, so the sockets are made here and handed to asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import stat
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any, Final

from ..addresses import format_address, host_port
from ..errors import ListenError, ResolveError
from .config import ServerConfig

__all__ = [
    "Endpoint",
    "activated_sockets",
    "announce",
    "bind_all",
    "inherited_socket",
    "open_sockets",
    "remove_unix_socket",
    "resolve",
    "unix_socket",
]

_log = logging.getLogger("aioecho.main")

# Tries at a port that is free on every address (and for TCP and UDP) at once, for port 0.
_PORT_ZERO_TRIES: Final = 20


@dataclass(frozen=True)
class Endpoint:
    """One address to listen on: (family, sockaddr) as getaddrinfo gives it, and the socket type."""

    family: int
    sockaddr: tuple[Any, ...]
    type: int = socket.SOCK_STREAM


async def resolve(hosts: Iterable[str], types: Iterable[int]) -> list[Endpoint]:
    """An endpoint for each address the hosts name and each socket type, each once, in order."""
    loop = asyncio.get_running_loop()
    found: dict[tuple[int, str], tuple[Any, ...]] = {}
    for host in hosts:
        try:
            infos = await loop.getaddrinfo(
                host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except socket.gaierror as err:
            raise ResolveError(host, err) from None
        for family, _type, _proto, _name, sockaddr in infos:
            found.setdefault((family, str(sockaddr[0])), sockaddr)
    return [
        Endpoint(family, sockaddr, kind)
        for kind in types
        for (family, _), sockaddr in found.items()
    ]


async def open_sockets(
    config: ServerConfig, *, reuse_port: bool = False, listen: bool = True
) -> tuple[list[socket.socket], int | None]:
    """The sockets config asks for, bound, and the inode of the Unix socket file if one was made.

    reuse_port: set SO_REUSEPORT on TCP sockets, so that other processes can listen on the same
    port (--workers); listen=False only reserves the port number."""
    if config.unix is not None:
        sock, inode = unix_socket(config.unix, config.unix_mode, config.backlog)
        return [sock], inode
    kinds = [socket.SOCK_STREAM] * config.tcp + [socket.SOCK_DGRAM] * config.udp
    endpoints = await resolve(config.hosts, kinds)
    return bind_all(
        endpoints, config.port, config.backlog, reuse_port=reuse_port, listen=listen
    ), None


def bind_all(
    endpoints: list[Endpoint],
    port: int,
    backlog: int,
    *,
    reuse_port: bool = False,
    listen: bool = True,
) -> list[socket.socket]:
    """Bound sockets (listening, for TCP) on every endpoint, all with one port number."""
    any_ipv4 = any(e.family == socket.AF_INET for e in endpoints)
    for attempt in range(_PORT_ZERO_TRIES if port == 0 else 1):
        socks: list[socket.socket] = []
        chosen = port
        try:
            for endpoint in endpoints:
                sock = _bound_socket(
                    endpoint, chosen, backlog, not any_ipv4, reuse_port=reuse_port, listen=listen
                )
                socks.append(sock)
                chosen = sock.getsockname()[1]
        except ListenError as err:
            for sock in socks:
                sock.close()
            in_use = isinstance(err.err, OSError) and err.err.errno == errno.EADDRINUSE
            if port != 0 or not in_use or attempt == _PORT_ZERO_TRIES - 1:
                raise
            continue
        return socks
    raise AssertionError("unreachable")


def _bound_socket(
    endpoint: Endpoint, port: int, backlog: int, dual_stack: bool, *, reuse_port: bool, listen: bool
) -> socket.socket:
    # the protocol named, not 0: asyncio sets TCP_NODELAY only on sockets whose proto is TCP,
    # and accepted sockets inherit it (without, TLS records wait for Nagle; issue 26 B12)
    stream = endpoint.type == socket.SOCK_STREAM
    sock = socket.socket(
        endpoint.family, endpoint.type, socket.IPPROTO_TCP if stream else socket.IPPROTO_UDP
    )
    host = endpoint.sockaddr[0]
    try:
        if endpoint.type == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if endpoint.family == socket.AF_INET6:
            # '::' alone serves IPv4 too where the OS allows; beside an IPv4 address it must
            # not, or the two would ask for the same port twice.
            v6only = 0 if (host == "::" and dual_stack) else 1
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
        sock.bind((host, port, *endpoint.sockaddr[2:]))
        if endpoint.type == socket.SOCK_STREAM and listen:
            sock.listen(backlog)
        sock.setblocking(False)
    except OSError as err:
        sock.close()
        raise ListenError(host_port(host, port, endpoint.type == socket.SOCK_DGRAM), err) from None
    return sock


def unix_socket(path: str, mode: int, backlog: int) -> tuple[socket.socket, int]:
    """A listening Unix socket at path, with permissions mode; returns it and the file's inode.

    A socket file left by a dead server is removed; a live server's socket, or a path that is
    not a socket, is left alone and refused."""
    _clear_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # no moment at which others could connect before chmod
    try:
        sock.bind(path)
        os.chmod(path, mode)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as err:
        sock.close()
        raise ListenError(path, err) from None
    finally:
        os.umask(old_umask)
    return sock, os.stat(path).st_ino


def _clear_stale(path: str) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as err:
        raise ListenError(path, err) from None
    if not stat.S_ISSOCK(info.st_mode):
        raise ListenError(path, "the path exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2.0)
        try:
            probe.connect(path)
        except ConnectionRefusedError:  # nobody listens: a dead server's leftover
            _log.info("removing stale socket %s", path)
            os.unlink(path)
            return
        except OSError as err:
            raise ListenError(path, err) from None
    raise ListenError(path, "another server is listening there")


def remove_unix_socket(path: str, inode: int) -> None:
    """Remove our socket file, unless something else has taken the path since."""
    with contextlib.suppress(OSError):
        if os.lstat(path).st_ino == inode:
            os.unlink(path)


def announce(sockets: Iterable[socket.socket], level: int, how: str = "") -> None:
    """The 'listening on' line of each socket, which scripts read the port from; how: why the
    socket is ours when we did not open it ('socket activation')."""
    suffix = f" ({how})" if how else ""
    for sock in sockets:
        udp = sock.type == socket.SOCK_DGRAM
        _log.log(level, "listening on %s%s", format_address(sock.getsockname(), udp), suffix)


# systemd's socket activation protocol (sd_listen_fds(3)): descriptors from 3 on
LISTEN_FDS_START: Final = 3


def activated_sockets(
    environ: MutableMapping[str, str] = os.environ,
) -> list[socket.socket] | None:
    """The sockets systemd (or systemd-socket-activate) handed this process, or None when it
    was not socket-activated. The variables are removed, so that no child takes them as its
    own."""
    pid, count = environ.get("LISTEN_PID"), environ.get("LISTEN_FDS")
    if pid is None or count is None:
        return None
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        environ.pop(name, None)
    if not pid.isdigit() or int(pid) != os.getpid():
        return None  # meant for another process (a parent that passed its environment on)
    if not count.isdigit() or int(count) < 1:
        raise ListenError("the sockets of socket activation", f"LISTEN_FDS={count!r}")
    return [inherited_socket(fd) for fd in range(LISTEN_FDS_START, LISTEN_FDS_START + int(count))]


def inherited_socket(fd: int, backlog: int = 1024) -> socket.socket:
    """The socket at descriptor fd, made ready to serve: non-blocking, listening if a stream."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as err:
        raise ListenError(f"descriptor {fd}", err) from None
    try:
        if sock.type not in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            raise ListenError(f"descriptor {fd}", "not a stream or datagram socket")
        if sock.type == socket.SOCK_STREAM and not sock.getsockopt(
            socket.SOL_SOCKET, socket.SO_ACCEPTCONN
        ):
            sock.listen(backlog)
        sock.setblocking(False)
    except OSError as err:
        sock.detach()
        raise ListenError(f"descriptor {fd}", err) from None
    except ListenError:
        sock.detach()
        raise
    return sock
