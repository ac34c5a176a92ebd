"""One HTTP POST that ends by a wall-clock deadline and reads no more than a size cap, for the LLM
judges' :class:`~workbench.judges.llm_client.ChatClient`.

A socket timeout bounds each ``recv``, not an exchange: a server that sends one byte every half
second never lets it expire. :func:`post` therefore owns its connection
(:mod:`http.client`) and runs a watchdog thread that shuts the socket down at the
:class:`Deadline`; a ``recv`` or ``send`` blocked in the requesting thread then returns at once, so
connecting, sending, the reply headers and the body all end by the deadline however the server
sends. ``timeout`` still bounds each single wait (connecting, or a silence while reading).

A 2xx reply is read in chunks up to ``max_reply_bytes``: one whose ``Content-Length`` says more is
refused before its body is read, one that grows past the cap while read is cut there
(:class:`ReplyTooLarge`). Another status reads only the start of its body, for the error message.

Proxies are those urllib uses: the environment's proxy for the URL's scheme unless ``no_proxy``
bypasses the host (an https URL through a ``CONNECT`` tunnel, credentials in the proxy URL sent as
``Proxy-Authorization``); a loopback host never goes through a proxy (:func:`route_for`).
"""

from __future__ import annotations

import base64
import ipaddress
import socket
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Deadline", "DeadlineReached", "ReplyTooLarge", "HTTPReply", "Route", "route_for", "post"]

_CHUNK_BYTES = 64 * 1024

_RESHUTDOWN_S = 0.05
"""How often a fired watchdog shuts the socket down again until the exchange ends: at the deadline
the socket may not exist yet (still connecting) or be replaced later (the TLS wrap of a tunnel)."""


@dataclass(frozen=True)
class Deadline:
    """A wall-clock limit: ``at`` on :func:`time.monotonic`, set at ``start`` and named by ``label``
    in failure reasons.

    Example:
        >>> deadline = Deadline.after(6, "max_total_s=6")
        >>> 5 < deadline.remaining() <= 6
        True
        >>> deadline.earlier(Deadline.after(2, "max_batch_s=2")).label
        'max_batch_s=2'
    """

    at: float
    label: str
    start: float

    @classmethod
    def after(cls, seconds: float, label: str) -> Deadline:
        """The deadline ``seconds`` from now."""
        now = time.monotonic()
        return cls(now + seconds, label, now)

    def remaining(self) -> float:
        """Seconds left (negative once passed)."""
        return self.at - time.monotonic()

    def elapsed(self) -> float:
        """Seconds since the deadline was set."""
        return time.monotonic() - self.start

    def earlier(self, other: Deadline | None) -> Deadline:
        """Whichever of this deadline and ``other`` comes first (``None``: this one)."""
        return self if other is None or self.at <= other.at else other


class DeadlineReached(Exception):
    """The exchange was cut at its deadline; the message says what was still under way."""


class ReplyTooLarge(Exception):
    """A 2xx reply over ``max_reply_bytes``: refused on its ``Content-Length`` or cut while read."""


@dataclass(frozen=True)
class HTTPReply:
    """A reply read whole: its status, headers and body (for a non-2xx status, the body's start)."""

    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class Route:
    """How to reach ``url``: directly, or through ``proxy`` (``host[:port]``) with
    ``proxy_headers`` (``Proxy-Authorization`` when the proxy URL has credentials)."""

    url: str
    proxy: str | None = None
    proxy_headers: Mapping[str, str] = field(default_factory=dict, repr=False)


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_port(parts: urllib.parse.SplitResult) -> str:
    return parts.netloc.rpartition("@")[2]


def _proxy_authorization(proxy: urllib.parse.SplitResult) -> dict[str, str]:
    """The header urllib sends for a proxy URL with a user and a password (none otherwise)."""
    if not (proxy.username and proxy.password):
        return {}
    pair = f"{urllib.parse.unquote(proxy.username)}:{urllib.parse.unquote(proxy.password)}"
    return {"Proxy-Authorization": "Basic " + base64.b64encode(pair.encode()).decode("ascii")}


def route_for(url: str) -> Route:
    """The :class:`Route` urllib's default opener would take to ``url``, read from the environment
    now; a loopback host is always reached directly.

    Example:
        >>> route_for("http://127.0.0.1:8000/v1/chat/completions").proxy is None
        True
    """
    import urllib.request  # the proxy settings are only needed once a judge client is built

    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if not proxy or _is_loopback(parts.hostname) or urllib.request.proxy_bypass(_host_port(parts)):
        return Route(url)
    proxy_parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    return Route(url, urllib.parse.unquote(_host_port(proxy_parts)), _proxy_authorization(proxy_parts))


def _connection(route: Route, timeout: float) -> tuple[Any, str, dict[str, str]]:
    """(an unconnected :mod:`http.client` connection, the request target, extra request headers)."""
    import http.client  # the HTTP machinery is only needed once a request is sent

    parts = urllib.parse.urlsplit(route.url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    if route.proxy is None:
        return kind(_host_port(parts), timeout=timeout), path, {}
    connection = kind(route.proxy, timeout=timeout)
    if parts.scheme == "https":
        connection.set_tunnel(_host_port(parts), headers=dict(route.proxy_headers))
        return connection, path, {}
    return connection, route.url, dict(route.proxy_headers)  # a plain proxy takes the whole URL


def _shut_down(sock: socket.socket | None) -> None:
    if sock is None:
        return
    try:
        # socket.socket's own shutdown, also for an SSLSocket: SSLSocket.shutdown would drop its TLS
        # state under the thread that is reading
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:  # not connected yet, or already closed
        pass


class _Watchdog:
    """Shuts ``connection``'s socket down at ``deadline``; ``phase`` and ``body_bytes`` say what was
    under way, for the reason of the cut."""

    def __init__(self, connection: Any, deadline: Deadline) -> None:
        self.connection = connection
        self.deadline = deadline
        self.fired = False
        self.phase = "not connected"
        self.body_bytes = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="judge-deadline", daemon=True)

    def __enter__(self) -> _Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()  # no shutdown may land on a descriptor the closed socket gave back

    def _watch(self) -> None:
        if self._done.wait(max(0.0, self.deadline.remaining())):
            return
        self.fired = True
        while True:
            _shut_down(self.connection.sock)
            if self._done.wait(_RESHUTDOWN_S):
                return

    def check(self) -> None:
        """Raise :class:`DeadlineReached` once the deadline has passed: the watchdog has cut the
        exchange, or is about to (a socket timeout may expire at the deadline just before it)."""
        if not (self.fired or self.deadline.remaining() <= 0):
            return
        reason = f"{self.phase} at {self.deadline.label}: cut after {self.deadline.elapsed():.1f} s"
        if self.phase == "reply still arriving":
            reason += f", {self.body_bytes} bytes read"
        raise DeadlineReached(reason)


def _read_up_to(response: Any, limit: int, watchdog: _Watchdog) -> bytes:
    """At most ``limit`` bytes of ``response``'s body, one ``recv`` at a time."""
    import http.client  # see _connection

    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = response.read1(min(_CHUNK_BYTES, limit - size))
        if not chunk:
            watchdog.check()  # a cut looks like the end of a body that runs to the connection's close
            if response.length:  # http.client's count of Content-Length bytes still due
                raise http.client.IncompleteRead(b"".join(chunks), response.length)
            break
        chunks.append(chunk)
        size += len(chunk)
        watchdog.body_bytes = size
    return b"".join(chunks)


def _read_capped(response: Any, max_reply_bytes: int, watchdog: _Watchdog) -> bytes:
    """The whole body of ``response``, or :class:`ReplyTooLarge` past ``max_reply_bytes``."""
    declared = response.length  # the Content-Length; None when chunked or absent
    if declared is not None and declared > max_reply_bytes:
        raise ReplyTooLarge(f"reply larger than max_reply_bytes={max_reply_bytes}: its "
                            f"Content-Length is {declared}, the body was not read")
    body = _read_up_to(response, max_reply_bytes + 1, watchdog)
    if len(body) > max_reply_bytes:
        raise ReplyTooLarge(f"reply larger than max_reply_bytes={max_reply_bytes}: cut there "
                            "while it was still arriving")
    return body


def _exchange(connection: Any, target: str, data: bytes, headers: Mapping[str, str],
              watchdog: _Watchdog, max_reply_bytes: int, error_bytes: int) -> HTTPReply:
    import http.client  # see _connection

    connection.connect()
    watchdog.phase = "request still being sent"
    connection.request("POST", target, body=data, headers=dict(headers))
    watchdog.phase = "reply headers incomplete"
    response = connection.getresponse()
    watchdog.check()  # at the end of file a cut makes, http.client ends the headers where they stopped
    watchdog.phase = "reply still arriving"
    if 200 <= response.status < 300:
        return HTTPReply(response.status, response.headers, _read_capped(response, max_reply_bytes, watchdog))
    try:
        snippet = _read_up_to(response, error_bytes, watchdog)
    except (OSError, http.client.HTTPException):  # the status says enough
        snippet = b""
    return HTTPReply(response.status, response.headers, snippet)


def post(route: Route, data: bytes, headers: Mapping[str, str], *, deadline: Deadline,
         timeout: float, max_reply_bytes: int, error_bytes: int) -> HTTPReply:
    """POST ``data`` to ``route.url`` and read the reply, all by ``deadline``.

    ``timeout`` (> 0) bounds each wait for the server: connecting, or a silence while reading. A
    2xx body is read up to ``max_reply_bytes``, another status's up to ``error_bytes``. Raises
    :class:`DeadlineReached` (cut at the deadline), :class:`ReplyTooLarge`, ``TimeoutError`` (a
    silence of ``timeout``), or ``OSError`` / ``http.client.HTTPException`` (no connection, or a
    reply that is not HTTP).
    """
    import http.client  # see _connection

    connection, target, extra_headers = _connection(route, timeout)
    try:
        with _Watchdog(connection, deadline) as watchdog:
            try:
                return _exchange(connection, target, data, {**headers, **extra_headers}, watchdog,
                                 max_reply_bytes, error_bytes)
            except (OSError, http.client.HTTPException):
                watchdog.check()  # a failure the cut caused is the cut
                raise
    finally:
        connection.close()
