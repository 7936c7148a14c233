"""HTTP GET with a total deadline and a size cap, the one transport of the exchange and of the archive.

A socket time-out only bounds each wait for the next byte: a server that drips one byte every few
seconds (headers or body) holds a request forever, and a huge or endless body is read whole. Here every
request has a deadline for all of it (connect, headers, whole body) and a cap on the body: a watchdog
thread shuts the socket down when the deadline passes, whatever the reading thread is waiting for, and
reading stops past the cap. Requests made inside `stoppable(event)` end the same way as soon as the event
is set, and back-off sleeps (`pause`) with them, so a stopping run (SIGINT, SIGTERM) is not held by a
slow server. Both failures are `HttpFailure`: transient, for the
callers' retry rules.

ccxt reads through a `requests.Session`; `CappedSession` is one whose requests go through here.
Connections are kept alive per thread and origin; proxies come from the usual `HTTPS_PROXY`/`HTTP_PROXY`.
"""

from __future__ import annotations

import contextlib
import contextvars
import http.client
import os
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextvars import ContextVar
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from requests.structures import CaseInsensitiveDict

READ_BLOCK = 1 << 16


class HttpFailure(OSError):
    """No complete answer within the deadline and the cap (or the request was stopped): transient."""


class Unreachable(HttpFailure):
    """No connection could be made (name not resolved, refused, no route): the origin is not there."""


class Stopped(HttpFailure):
    """The request's scope was stopped (the run is ending): not worth a retry."""


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, str]  # case-insensitive
    body: bytes


@dataclass(frozen=True)
class Limits:
    deadline_s: float  # connect, headers and the whole body
    max_bytes: int  # of the body


class _Watchdog:
    """One thread per transport that shuts down sockets whose deadline passed or whose scope stopped."""

    POLL_S = 0.2  # how soon a stopped scope's requests end

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._entries: dict[int, tuple[float, socket.socket, threading.Event | None]] = {}
        self._seq = 0
        self._thread: threading.Thread | None = None

    def watch(self, sock: socket.socket, deadline: float, scope: threading.Event | None) -> int:
        with self._cond:
            self._seq += 1
            idle = not self._entries  # otherwise the thread looks again within POLL_S: no need to wake it
            self._entries[self._seq] = (deadline, sock, scope)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="http-deadlines", daemon=True)
                self._thread.start()
            if idle:
                self._cond.notify()
            return self._seq

    def release(self, token: int) -> None:
        with self._cond:
            self._entries.pop(token, None)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._entries:
                    self._cond.wait()
                now = time.monotonic()
                due = [t for t, (deadline, _, scope) in self._entries.items()
                       if deadline <= now or (scope is not None and scope.is_set())]
                socks = [self._entries.pop(t)[1] for t in due]
                if not socks:
                    nearest = min(deadline for deadline, _, _ in self._entries.values())
                    self._cond.wait(min(self.POLL_S, max(0.0, nearest - now)))
            for sock in socks:
                _shut(sock)


_SCOPE: ContextVar[threading.Event | None] = ContextVar("kline_assets_http_scope", default=None)


@contextlib.contextmanager
def stoppable(event: threading.Event) -> Iterator[None]:
    """Requests of this thread (every transport) end with `Stopped` as soon as `event` is set."""
    token = _SCOPE.set(event)
    try:
        yield
    finally:
        _SCOPE.reset(token)


def stopping() -> bool:
    """Whether this thread's scope was stopped (long waits elsewhere look at it)."""
    scope = _SCOPE.get()
    return scope is not None and scope.is_set()


def pause(seconds: float) -> None:
    """A back-off sleep that a stopping scope cuts short (`Stopped`)."""
    scope = _SCOPE.get()
    if scope is None:
        time.sleep(seconds)
    elif scope.wait(seconds):
        raise Stopped("stopped")


def beside(fn: Callable, *args) -> Future:
    """`fn(*args)` in a thread of its own, in this thread's scope (a `stoppable` stop ends it too): two
    requests in flight at once where one would otherwise wait for the other."""
    future: Future = Future()
    context = contextvars.copy_context()

    def run() -> None:
        try:
            future.set_result(context.run(fn, *args))
        except BaseException as exc:  # handed to whoever waits for the result
            future.set_exception(exc)

    threading.Thread(target=run, name="beside", daemon=True).start()
    return future


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class Transport:
    """Thread-safe GETs over kept-alive connections: a request takes an idle connection to its origin (or
    opens one) and hands it back once the answer was read whole, so any thread reuses any connection (a
    live minute runs each dataset in a short-lived thread: one TLS handshake each would cost more than the
    request)."""

    def __init__(self, limits: Limits, connect_timeout_s: float = 10.0) -> None:
        self.limits = limits
        self.connect_timeout_s = connect_timeout_s
        self._watchdog = _Watchdog()
        self._idle: dict[tuple[str, str], list[http.client.HTTPConnection]] = {}
        self._idle_lock = threading.Lock()
        self._tls: ssl.SSLContext | None = None

    def get(self, url: str, headers: dict | None = None, limits: Limits | None = None) -> Response:
        limits = limits or self.limits
        deadline = time.monotonic() + limits.deadline_s
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        scope = _SCOPE.get()
        for reused in (True, False):  # a kept-alive connection the server closed meanwhile: once more, fresh
            if scope is not None and scope.is_set():
                raise Stopped(f"{url}: stopped")
            conn, was_open = self._connection(parts, fresh=not reused)
            sock_token = None
            try:
                if conn.sock is None:
                    self._connect(conn, deadline, scope, url)
                sock_token = self._watchdog.watch(conn.sock, deadline, scope)
                conn.sock.settimeout(max(0.001, deadline - time.monotonic()))
                conn.request("GET", target if not getattr(conn, "_absolute", False) else url,
                             headers={"Accept-Encoding": "identity", **(headers or {})})
                response = conn.getresponse()
                body = self._read(response, limits, url)
                if response.length or time.monotonic() >= deadline or (scope is not None and scope.is_set()):
                    # the watchdog shut the socket: what came is not the whole body
                    raise http.client.IncompleteRead(body, response.length)
                response.close()  # read to its end: the connection is ready for the next request
                if response.will_close:
                    conn.close()
                else:
                    self._release(parts, conn)
                return Response(response.status, response.reason, CaseInsensitiveDict(response.getheaders()), body)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                conn.close()
                if was_open and reused and time.monotonic() < deadline:
                    continue
                raise self._failure(url, deadline, limits, scope, exc) from None
            except HttpFailure:
                conn.close()
                raise
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise self._failure(url, deadline, limits, scope, exc) from None
            finally:
                if sock_token is not None:
                    self._watchdog.release(sock_token)
        raise AssertionError("unreachable")

    def _connect(self, conn: http.client.HTTPConnection, deadline: float, scope: threading.Event | None,
                 url: str) -> None:
        """A new connection opened within the request's deadline (and the connect time-out); a name that
        does not resolve, a refusal, no route or no answer is `Unreachable`."""
        conn.timeout = max(0.001, min(self.connect_timeout_s, deadline - time.monotonic()))
        try:
            conn.connect()
        except OSError as exc:
            conn.close()
            if scope is not None and scope.is_set():
                raise Stopped(f"{url}: stopped") from None
            raise Unreachable(f"cannot connect to {urlsplit(url).netloc} ({exc})") from None

    @staticmethod
    def _failure(url: str, deadline: float, limits: Limits, scope: threading.Event | None,
                 exc: BaseException) -> HttpFailure:
        if scope is not None and scope.is_set():
            return Stopped(f"{url}: stopped")
        if time.monotonic() >= deadline - 0.01:
            return HttpFailure(f"no complete answer within {limits.deadline_s:g}s ({url})")
        if isinstance(exc, http.client.IncompleteRead) and exc.expected:
            got = len(exc.partial)
            return HttpFailure(f"the body ended after {got:,} of its {got + exc.expected:,} bytes ({url})")
        return HttpFailure(f"{type(exc).__name__} {exc} ({url})")

    def _read(self, response: http.client.HTTPResponse, limits: Limits, url: str) -> bytes:
        length = response.getheader("Content-Length")
        if length and length.isdigit() and int(length) > limits.max_bytes:
            raise HttpFailure(f"{url}: a body of {int(length):,} bytes is over the cap of {limits.max_bytes:,}")
        parts, size = [], 0
        while True:
            block = response.read1(READ_BLOCK)  # what has arrived: a drip is seen byte by byte
            if not block:
                return b"".join(parts)
            size += len(block)
            if size > limits.max_bytes:
                raise HttpFailure(f"{url}: the body is over the cap of {limits.max_bytes:,} bytes")
            parts.append(block)

    # --- connections: idle ones per origin, taken by one request at a time ---------------------
    def _connection(self, parts, fresh: bool) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection to the origin (True: it was open), or a new one."""
        if not fresh:
            with self._idle_lock:
                idle = self._idle.get((parts.scheme, parts.netloc))
                if idle:
                    return idle.pop(), True
        return self._new_connection(parts), False

    def _release(self, parts, conn: http.client.HTTPConnection) -> None:
        with self._idle_lock:
            self._idle.setdefault((parts.scheme, parts.netloc), []).append(conn)

    def _new_connection(self, parts) -> http.client.HTTPConnection:
        https = parts.scheme == "https"
        port = parts.port or (443 if https else 80)
        proxy = _proxy_for(parts.scheme, parts.hostname or "")
        if https:
            if self._tls is None:
                self._tls = ssl.create_default_context(cafile=_ca_file())
            host, pport = (proxy.hostname, proxy.port or 8080) if proxy else (parts.hostname, port)
            conn = http.client.HTTPSConnection(host, pport, context=self._tls)
            if proxy:
                conn.set_tunnel(parts.hostname, port)
            return conn
        if proxy:
            conn = http.client.HTTPConnection(proxy.hostname, proxy.port or 8080)
            conn._absolute = True  # type: ignore[attr-defined]  # a plain proxy takes the whole URL
            return conn
        return http.client.HTTPConnection(parts.hostname, port)



def _proxy_for(scheme: str, host: str):
    proxies = urllib.request.getproxies()
    if not proxies.get(scheme) or urllib.request.proxy_bypass(host):
        return None
    return urlsplit(proxies[scheme] if "://" in proxies[scheme] else f"http://{proxies[scheme]}")


def _ca_file() -> str | None:
    """The CA bundle a user named for requests or OpenSSL (a company's TLS proxy), else requests' own."""
    named = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")
    if named:
        return named
    try:
        import certifi
    except ImportError:
        return None
    return certifi.where()


class CappedSession(requests.Session):
    """What ccxt calls `session`: its GETs go through a `Transport`; `limits` may be changed per call."""

    def __init__(self, transport: Transport) -> None:
        super().__init__()
        self.transport = transport
        self.limits = transport.limits

    def request(self, method, url, data=None, headers=None, **kwargs) -> requests.Response:  # type: ignore[override]
        if method != "GET" or data:
            raise requests.exceptions.InvalidURL(f"only GET without a body is supported, not {method} {url}")
        try:
            answer = self.transport.get(url, dict(headers or {}), self.limits)
        except HttpFailure as exc:
            raise requests.exceptions.ConnectionError(str(exc)) from exc
        response = requests.Response()
        response.status_code, response.reason, response.url = answer.status, answer.reason, url
        response.headers = CaseInsensitiveDict(answer.headers)
        response._content = answer.body  # what `.text` and `.content` read; the body is already whole
        response.encoding = "utf-8"
        return response
