"""`aioecho check`'s cases about the far end rather than the echo: `tls` (what the handshake
agreed and what the certificate says: FAILED when it is expired or for another name, naming the
date or the names; NON-STRICT when it expires within EXPIRY_WARNING days) and `path` (what a
--reflect server saw: addresses translated or not, a PROXY header, TLS ended on the way)."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, Final

from ..reflection import MAGIC, ReflectionError, instance_name, read_reflection
from ..tls import certificate_chain, certificate_figures
from .peers import CaseFailed, Target, non_strict, ok, skipped
from .report import CaseResult

__all__ = ["_path", "_tls"]

EXPIRY_WARNING: Final = 14  # days: a certificate that expires sooner is NON-STRICT
MAX_BANNER_LINES: Final = 100  # a banner's lines before the reflection, at most


async def _tls(target: Target) -> CaseResult:
    if target.context is None:
        return skipped("not TLS: the tls case checks the handshake and certificate of --tls")
    t = target.client
    try:
        _, writer = await _handshake(target, target.context)
    except ssl.SSLCertVerificationError as err:
        cert = await _unverified_certificate(target)
        raise CaseFailed(_why(err, cert, t.server_name), kind="certificate", figures=cert) from None
    try:
        tls = writer.get_extra_info("ssl_object")
        chain = certificate_chain(tls)  # verified, or not (--insecure)
        figures = {
            "version": tls.version(),
            "cipher": (tls.cipher() or ("",))[0],
            "alpn": tls.selected_alpn_protocol(),
            **certificate_figures(chain[0] if chain else {}),
            "chain": [certificate_figures(cert).get("subject") for cert in chain],
        }
    finally:
        writer.close()
    agreed = f"{figures['version']} {figures['cipher']}"
    if figures["alpn"]:
        agreed += f", ALPN {figures['alpn']}"
    names = ", ".join(figures.get("names", ())) or "no names"
    days = figures.get("days_left")
    if days is None:
        return ok(f"{agreed}; certificate not read", **figures)
    about = f"certificate for {names}, by {figures.get('issuer', '?')}, valid until " + str(
        figures["not_after"]
    )
    if days < EXPIRY_WARNING:
        return non_strict(f"{agreed}; {about}: {days} days left", **figures)
    verified = "" if not t.insecure else " (not verified: --insecure)"
    return ok(f"{agreed}; {about} ({days} days){verified}", **figures)


async def _path(target: Target) -> CaseResult:
    async with target.peer() as peer:
        peer.write(MAGIC)
        line = b""
        for _ in range(MAX_BANNER_LINES + 1):
            line = await asyncio.wait_for(peer.reader.readline(), target.timeout)
            if not line:
                raise CaseFailed("closed before answering AIOECHO-REFLECT", kind="closed")
            if line == MAGIC:
                return skipped("the server does not reflect (server --reflect tells what it saw)")
            if line.startswith(b"{"):
                break
        try:
            seen = read_reflection(line)
        except ReflectionError as err:
            raise CaseFailed(str(err)) from None
        ours = _address(peer.writer.get_extra_info("sockname"))
    notes = []
    client = seen.get("client")
    if ours is None or client == ours:
        notes.append(f"not translated (seen as {client})")
    else:
        notes.append(f"translated: we are {ours}, the server saw {client}")
    header = seen.get("proxy_header")
    if header:
        notes.append(f"a PROXY header came (source {header.get('source')})")
    tls_here, tls_there = target.context is not None, seen.get("tls") is not None
    if tls_here and not tls_there:
        notes.append("TLS ended before the server (it saw plain TCP)")
    elif tls_here:
        notes.append(f"TLS end to end ({seen['tls'].get('version')})")
    elif tls_there:
        notes.append("TLS added on the way")
    notes.append(f"answered by {instance_name(seen)}")
    figures = {
        "ours": ours,
        "seen_as": client,
        "translated": ours is not None and client != ours,
        "proxy_header": bool(header),
        "tls_ended_before_server": tls_here and not tls_there,
        "instance": instance_name(seen),
    }
    return ok("; ".join(notes), **figures)


async def _handshake(
    target: Target, context: ssl.SSLContext
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    t = target.client
    if t.unix is not None:
        opening = asyncio.open_unix_connection(t.unix, ssl=context, server_hostname=t.server_name)
    else:
        opening = asyncio.open_connection(
            target.connect_host, t.port, ssl=context, server_hostname=t.server_name,
            family=target.family,
        )  # fmt: skip
    return await asyncio.wait_for(opening, target.timeout)


async def _unverified_certificate(target: Target) -> dict[str, Any]:
    """The figures of the certificate that did not verify, read without verifying it."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        _, writer = await _handshake(target, context)
    except (OSError, asyncio.TimeoutError):
        return {}
    try:
        chain = certificate_chain(writer.get_extra_info("ssl_object"))
        return certificate_figures(chain[0] if chain else {})
    finally:
        writer.close()


def _why(err: ssl.SSLCertVerificationError, cert: dict[str, Any], name: str) -> str:
    """A verification failure in words, with the date or the names that make it."""
    message = err.verify_message or err.reason or str(err)
    if "expired" in message and "not_after" in cert:
        return f"the certificate expired on {cert['not_after']} ({cert['days_ago']} days ago)"
    if "mismatch" in message.lower() or "not valid for" in message:
        names = ", ".join(cert.get("names", ())) or "no names"
        return f"name mismatch: the certificate is for {names}, not {name!r}"
    return f"the certificate does not verify: {message}"


def _address(sockaddr: Any) -> str | None:
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        host = str(sockaddr[0])
        return f"[{host}]:{sockaddr[1]}" if ":" in host else f"{host}:{sockaddr[1]}"
    return None
