"""TLS contexts from the user's files (a server's certificate and key, a client's CA file or
none), and TLS errors in words. The server's own handshake protocol is server/tls.py."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import re
import ssl
import tempfile
from collections.abc import Sequence
from typing import Any, Final, cast

from .errors import TLSSetupError, describe_os_error

__all__ = [
    "ResumingContext",
    "client_context",
    "describe_tls_error",
    "resuming_context",
    "server_context",
]

HANDSHAKE_TIMEOUT: Final = 10.0  # seconds a peer gets to complete the TLS handshake


def _readable(path: str, what: str, pem_label: str) -> None:
    """The file can be read and holds a PEM block whose label ends with pem_label: OpenSSL's own
    error for anything else is '[SSL] PEM lib', which names neither the file nor the fault."""
    try:
        with open(path, "rb") as file:
            text = file.read(1 << 20)
    except OSError as err:
        raise TLSSetupError(f"cannot read TLS {what} {path}: {describe_os_error(err)}") from None
    if not re.search(rb"-----BEGIN [A-Z0-9 ]*" + pem_label.encode() + rb"-----", text):
        raise TLSSetupError(f"TLS {what} {path} holds no PEM {pem_label.lower()} (BEGIN line)")


def server_context(
    cert: str, key: str, client_ca: str | None = None, alpn: Sequence[str] = ()
) -> ssl.SSLContext:
    """TLS 1.2 or newer with the standard library's defaults, serving cert (PEM) with key;
    client_ca: require a client certificate signed by one of these (mutual TLS); alpn: the
    protocols offered, in order of preference."""
    _readable(cert, "certificate", "CERTIFICATE")
    _readable(key, "key", "PRIVATE KEY")
    if client_ca is not None:
        _readable(client_ca, "client CA file", "CERTIFICATE")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as err:
        if err.reason == "KEY_VALUES_MISMATCH":
            raise TLSSetupError(f"TLS key {key} does not match certificate {cert}") from None
        reason = (err.reason or str(err)).lower().replace("_", " ")
        raise TLSSetupError(f"cannot load TLS certificate {cert} and key {key}: {reason}") from None
    context.sni_callback = _keep_sni
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=client_ca)
        except ssl.SSLError as err:
            raise TLSSetupError(f"cannot load TLS client CA file {client_ca}: {err}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def _keep_sni(tls: Any, name: str | None, context: ssl.SSLContext) -> None:
    """The server name the client asked for (SNI), kept on its connection for --reflect (an
    SSLObject has no other place that says it on the server's side)."""
    tls.aioecho_sni = name


def client_context(
    cafile: str | None = None,
    insecure: bool = False,
    alpn: Sequence[str] = (),
    cert: str | None = None,
    key: str | None = None,
) -> ssl.SSLContext:
    """Verifying by default (system CAs, or cafile); insecure skips every check; alpn: the
    protocols asked for; cert and key: a client certificate (mutual TLS)."""
    if cafile is not None:
        _readable(cafile, "CA file", "CERTIFICATE")
    try:
        context = ssl.create_default_context(cafile=cafile)
    except ssl.SSLError as err:
        raise TLSSetupError(f"cannot load TLS CA file {cafile}: {err.reason or err}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(list(alpn))
    if cert is not None:
        _readable(cert, "client certificate", "CERTIFICATE")
        try:
            context.load_cert_chain(cert, key)
        except ssl.SSLError as err:
            reason = (err.reason or str(err)).lower().replace("_", " ")
            raise TLSSetupError(f"cannot load client certificate {cert}: {reason}") from None
    return context


class ResumingContext(ssl.SSLContext):
    """A client context that offers `session` to every new connection it wraps: asyncio has no
    session argument, and its TLS layer (uvloop's too) creates each connection's SSLObject with
    wrap_bio. Sessions are the server's TLS 1.3 tickets or TLS 1.2 session IDs or tickets."""

    session: ssl.SSLSession | None = None

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        offered = session or self.session
        return super().wrap_bio(incoming, outgoing, server_side, server_hostname, offered)

    def keep(self, ssl_object: ssl.SSLObject) -> None:
        """Offer this connection's session from now on, once it can be resumed (in TLS 1.3 the
        server's ticket comes after the handshake: call this once the echo is back)."""
        session = ssl_object.session
        if session is not None and (session.has_ticket or ssl_object.version() != "TLSv1.3"):
            self.session = session


def resuming_context(**options: Any) -> ResumingContext:
    """client_context(**options), resuming sessions."""
    context = client_context(**options)
    # ssl.create_default_context() has no class argument; ResumingContext adds only methods
    # and a class attribute (no new instance layout), so the instance can take it as its class.
    context.__class__ = ResumingContext
    return cast(ResumingContext, context)


def describe_tls_error(err: BaseException) -> str:
    """'certificate verify failed: self-signed certificate', 'wrong version number'."""
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {err.verify_message}"
    if isinstance(err, ssl.SSLError) and err.reason:
        return err.reason.lower().replace("_", " ")
    if isinstance(err, asyncio.TimeoutError):
        return "timed out"
    if isinstance(err, ConnectionError) and not err.args:
        # uvloop reports a handshake the peer gave up on (it rejected our certificate, or spoke
        # something else and closed) this way, without the TLS layer's reason
        return "the peer closed the connection during the handshake"
    return describe_os_error(err)


def decode_certificate(der: bytes | None) -> dict[str, Any]:
    """A DER certificate as getpeercert() shows a verified one (the standard library decodes
    only from a file: its test helper, used here; {} where it is missing)."""
    decode = getattr(getattr(ssl, "_ssl", None), "_test_decode_cert", None)
    if der is None or decode is None:
        return {}
    handle, path = tempfile.mkstemp(suffix=".pem")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(ssl.DER_cert_to_PEM_cert(der))
        with contextlib.suppress(ssl.SSLError, ValueError):
            decoded: dict[str, Any] = decode(path)
            return decoded
        return {}
    finally:
        os.unlink(path)


def certificate_figures(cert: dict[str, Any]) -> dict[str, Any]:
    """A certificate (as getpeercert() shows it) in figures: its names (subjectAltName), subject,
    issuer, not-after date and the days left (days_ago once expired)."""
    if not cert:
        return {}
    names = [f"{kind}:{value}" for kind, value in cert.get("subjectAltName", ())]
    issuer = dict(x[0] for x in cert.get("issuer", ()))
    subject = dict(x[0] for x in cert.get("subject", ()))
    figures: dict[str, Any] = {
        "names": names,
        "subject": subject.get("commonName") or subject.get("organizationName"),
        "issuer": issuer.get("commonName") or issuer.get("organizationName"),
    }
    if "notAfter" in cert:
        expires = datetime.datetime.fromtimestamp(
            ssl.cert_time_to_seconds(cert["notAfter"]), datetime.timezone.utc
        )
        now = datetime.datetime.now(datetime.timezone.utc)
        figures["not_after"] = expires.strftime("%Y-%m-%d %H:%M UTC")
        figures["days_left"] = (expires - now).days
        if expires < now:
            figures["days_ago"] = (now - expires).days
    return figures


def certificate_chain(tls: Any) -> list[dict[str, Any]]:
    """The certificates the peer sent, leaf first, each as getpeercert() shows one, verified or
    not. (The standard library makes the chain public only from Python 3.13; before, its SSL
    object's own method is read, and where neither is there, the leaf alone.)"""
    chain = getattr(tls, "get_unverified_chain", None) or getattr(
        getattr(tls, "_sslobj", None), "get_unverified_chain", None
    )
    if chain is not None:
        with contextlib.suppress(Exception):  # a private method: whatever it does, the leaf
            found = []
            for cert in chain() or ():
                if isinstance(cert, bytes):  # 3.13's public method: DER
                    found.append(decode_certificate(cert))
                else:
                    found.append(cert.get_info())
            if found:
                return found
    leaf = tls.getpeercert() or decode_certificate(tls.getpeercert(binary_form=True))
    return [leaf] if leaf else []


def describe_session(tls: Any) -> str:
    """'TLSv1.3 TLS_AES_256_GCM_SHA384, ALPN h2; certificate for DNS:localhost by X, valid
    until 2027-12-03 10:00 UTC (365 days)': a connection's TLS, for ping --tls. (The key
    exchange group is not said: Python's ssl module does not tell it before 3.14.)"""
    text = f"{tls.version()} {(tls.cipher() or ('?',))[0]}"
    alpn = tls.selected_alpn_protocol()
    if alpn:
        text += f", ALPN {alpn}"
    chain = certificate_chain(tls)
    figures = certificate_figures(chain[0] if chain else {})
    if figures:
        names = ", ".join(figures["names"]) or str(figures["subject"])
        text += f"; certificate for {names} by {figures['issuer']}"
        if "not_after" in figures:
            text += f", valid until {figures['not_after']} ({figures['days_left']} days)"
        if len(chain) > 1:
            text += f", a chain of {len(chain)}"
        if not tls.getpeercert():
            text += ", not verified (--insecure)"
    return text
