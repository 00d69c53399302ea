"""The pure ASGI middlewares of ``vrec serve``, outermost first: ``Stopping`` (a graceful stop: requests
cut off by it get a JSON 503), ``HostCheck`` (**safety**: only requests addressed to loopback names,
the server's address or --allowed-host: a guard against DNS rebinding), ``HeadAsGet`` (HEAD wherever
GET works) and ``Guard`` (the token, in a header, query parameter or cookie, for every route but
``/api/health`` and the page's static files; the upload size limit)."""
import asyncio
import re
from collections.abc import Sequence

from vrec.serve.http_errors import error
from vrec.serve.service import Service

MULTIPART_SLACK = 64 * 1024  # form fields and multipart headers around an uploaded photo
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")  # Host names every server answers to
STOPPING = "The server is stopping; try again once it is back."
TOKEN_COOKIE = "vrec_token"


class TooLarge(Exception):
    """A request body over the upload limit (raised while the body is read)."""


class Guard:
    """Pure ASGI middleware: the token check, and the upload size limit (413 before the body is read
    when its Content-Length says so, else as soon as the bytes received pass the limit)."""

    def __init__(self, app, service: Service):
        self.app, self.service = app, service

    @staticmethod
    def exempt(scope) -> bool:
        from urllib.parse import parse_qs

        path = scope.get("path", "")
        if path == "/api/health" or path.startswith("/static/"):
            return True
        return path == "/" and "token" in parse_qs(scope.get("query_string", b"").decode("latin-1"))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        svc = self.service
        if svc.token is not None and not self.exempt(scope):
            from starlette.requests import HTTPConnection

            conn = HTTPConnection(scope)
            auth = conn.headers.get("authorization", "")
            given = (auth[7:].strip() if auth.lower().startswith("bearer ") else None) \
                or conn.query_params.get("token") or conn.cookies.get(TOKEN_COOKIE)
            if not svc.authorized(given):
                msg = ("This vrec server needs its token: open the URL that 'vrec serve' printed (it ends with "
                       "?token=...), or send the header 'Authorization: Bearer TOKEN'." if not given else
                       "The token is wrong; use the one 'vrec serve' printed when it started.")
                return await error(401, msg, {"WWW-Authenticate": "Bearer"})(scope, receive, send)
        if scope.get("method") in ("POST", "PUT", "PATCH"):
            limit = svc.max_upload + MULTIPART_SLACK
            length = dict(scope.get("headers", [])).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > limit:
                return await error(413, self.too_large())(scope, receive, send)
            received = 0

            async def limited():
                nonlocal received
                message = await receive()
                if message.get("type") == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise TooLarge()
                return message

            try:
                return await self.app(scope, limited, send)
            except TooLarge:  # raised before any response was started (while the body was parsed)
                return await error(413, self.too_large())(scope, receive, send)
        return await self.app(scope, receive, send)

    def too_large(self) -> str:
        return (f"The upload is larger than this server's limit of {self.service.max_upload_mb:g} MB; send a "
                f"smaller photo (or start vrec serve with a larger --max-upload-mb).")


_HOST = re.compile(r"(?:\[(?P<ipv6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9._-]+))(?::\d{1,5})?")


def host_name(header: str) -> str:
    """The name in a Host header, lower case, without port, brackets or trailing dot ('[::1]:80' -> '::1');
    '' for a header that is not a host name and optional port ('localhost:1@evil.com', '[::1]evil')."""
    value = header.strip().lower()
    m = _HOST.fullmatch(value)
    if m is None:
        return value if _is_ipv6(value) else ""  # '::1' unbracketed: not HTTP's form, but unambiguous
    return (m.group("ipv6") or m.group("name")).rstrip(".")


def _is_ipv6(value: str) -> bool:
    import ipaddress

    try:
        ipaddress.IPv6Address(value)
        return True
    except ValueError:
        return False


def configured_name(name: str) -> str:
    """A name as an operator writes it (--host, --allowed-host: '::1', '[::1]', 'Shop.Example.com.'),
    in the form host_name gives a request's Host header."""
    return host_name(name) or name.strip().lower().rstrip(".")


def allowed_host_names(host: str, extra: Sequence[str] = ()) -> list[str]:
    """The Host names a server on ``host`` answers to: loopback names, the address it binds to, ``extra``."""
    return list(dict.fromkeys(n for n in (configured_name(x) for x in (*LOOPBACK_NAMES, host, *extra)) if n))


class HostCheck:
    """Pure ASGI middleware: a request whose Host header is not an allowed name gets a 400 JSON error.

    A guard against DNS rebinding (a web page whose name an attacker points at 127.0.0.1 could
    otherwise read the API from a visitor's browser). Names as Starlette's TrustedHostMiddleware
    takes them ('*' any, '*.example.com' a domain's names); unlike it, IPv6 literals ('[::1]:8765')
    are understood and the error is JSON."""

    def __init__(self, app, allowed: Sequence[str]):
        self.app = app
        self.any = "*" in allowed
        self.names = {configured_name(a) for a in allowed if not a.startswith("*")}
        self.domains = tuple(configured_name(a)[1:] for a in allowed if a.startswith("*."))

    def allows(self, name: str) -> bool:
        return self.any or name in self.names or any(name.endswith(d) for d in self.domains)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        header = dict(scope.get("headers", [])).get(b"host", b"").decode("latin-1")
        if self.allows(host_name(header)):
            return await self.app(scope, receive, send)
        name = host_name(header)[:100]
        msg = ("The request's Host header is missing or is not a host name; send one that names this server, "
               "e.g. 127.0.0.1." if not name else
               f"This server does not answer to the host name {name!r} (a guard against DNS rebinding): open the "
               f"address vrec serve printed, or, if {name!r} is a name of this machine, restart vrec serve with "
               f"--allowed-host {name}.")
        return await error(400, msg)(scope, receive, send)


class HeadAsGet:
    """Pure ASGI middleware: HEAD works wherever GET does (the GET answer's status and headers, no body)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "HEAD":
            return await self.app(scope, receive, send)

        async def headers_only(message):
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        return await self.app({**scope, "method": "GET"}, receive, headers_only)


class Stopping:
    """Pure ASGI middleware for a graceful stop: once the server is stopping (``state.server.should_exit``),
    a new request, and a running one cancelled when the grace period ends, get a 503 JSON error --
    not uvicorn's plain-text 500 and a CancelledError traceback in the log."""

    def __init__(self, app, state):
        self.app, self.state = app, state

    def stopping(self) -> bool:
        return bool(getattr(getattr(self.state, "server", None), "should_exit", False))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.stopping():
            return await error(503, STOPPING, {"Connection": "close"})(scope, receive, send)
        started = False

        async def tracked(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:
            if not self.stopping():
                raise
            if not started:
                await error(503, STOPPING, {"Connection": "close"})(scope, receive, send)
