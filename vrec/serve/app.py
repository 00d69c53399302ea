"""``vrec serve``: a web page and a JSON API over a store, with the models loaded once.

The app is a thin face over the library: every answer comes from ``vrec.search.query``, ``vrec.search.compare``
and ``vrec.report.pages`` -- the functions behind ``vrec search-*``, ``vrec compare`` and ``--html`` --
so the web and the command line never disagree. What a long-lived process needs lives in modules
of its own, one concept each:

- ``vrec.serve.live`` -- **snapshots.** The store is read into a snapshot that requests share; before
  each request a few ``stat`` calls tell whether ``vrec embed`` or ``vrec index`` committed, and a
  new snapshot is swapped in whole. The store is only ever read.
- ``vrec.serve.encoder_pool`` -- **models** loaded once, on first use (the text tower alone for text
  queries), shared by all requests, encoding under one lock; recent query texts' vectors are kept.
- ``vrec.serve.decodes`` -- **photo decodes**: uploads over a pixel limit refused from their header (413),
  a few decodes at a time, large photos shrunk while decoding, freed memory given back.
- ``vrec.serve.thumbnails`` -- ``/thumb/ID``: catalog photos by id only, from inside the catalog folder.
- ``vrec.serve.service`` -- what the routes share (``Service``: only the store's own models, error texts
  without the server's folders) and the JSON shapes of results and items, without the web framework.

This module is the HTTP side: ``create_app`` with its routes, the error answers (always
``{"error": "one sentence"}``, 4xx for a request's mistakes, 503 while the store is missing or the
server stops), and four pure ASGI middlewares, outermost first: ``Stopping`` (a graceful stop:
requests cut off by it get a JSON 503), ``HostCheck`` (**safety**: only requests addressed to
loopback names, the server's address or --allowed-host: a guard against DNS rebinding),
``HeadAsGet`` (HEAD wherever GET works) and ``Guard`` (a token in a header, query parameter or
cookie guards every route but ``/api/health`` and the page's static files; uploads have a size
limit, and photos that are not images, truncated or decompression bombs are refused -- the server
keeps serving). ``serve`` runs it on uvicorn: loopback by default, any other address needs a
token; Ctrl-C and SIGTERM both stop it gracefully. FastAPI and uvicorn are imported only when an
app is made, so ``vrec --help`` stays fast.

``create_app(store, ...)`` returns the ASGI app (for tests, or to mount in your own service);
``serve(...)`` runs it on uvicorn. The JSON contract is documented in README.md (``vrec serve``).
"""
import asyncio
import logging
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import quote

from vrec.base import __version__
from vrec.serve.decodes import MAX_UPLOAD_PIXELS, Busy, TooManyPixels
from vrec.base.errors import ModelUnavailable, QueryError, StoreError, UnknownItem, VrecError, check_number
from vrec.serve.live import StoreGone
from vrec.serve.service import Service, compare_records, gallery_result, item_record, open_experiment

log = logging.getLogger("vrec.serve")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_K = 12
MAX_K = 1000  # results per request: a catalog-sized answer would be megabytes of JSON
MAX_UPLOAD_MB = 20.0
MULTIPART_SLACK = 64 * 1024  # form fields and multipart headers around an uploaded photo
SHUTDOWN_GRACE = 5.0  # seconds running requests get to finish after Ctrl-C or SIGTERM; the rest are answered 503
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")  # Host names every server answers to
STOPPING = "The server is stopping; try again once it is back."
WEB = Path(__file__).resolve().parent / "web"
TOKEN_COOKIE = "vrec_token"

PLACEHOLDER_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>vrec</title></head>
<body style="font-family:system-ui,sans-serif;margin:2em"><h1>vrec serve</h1>
<p>The web page is not installed; the JSON API works: see <a href="/docs">/docs</a> and
<a href="/api/health">/api/health</a>.</p></body></html>"""


# --- the app ----------------------------------------------------------------------------------

class TooLarge(Exception):
    """A request body over the upload limit (raised while the body is read)."""


def _error(status: int, message: str, headers: dict | None = None):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _status_of(e: VrecError) -> int:
    if isinstance(e, UnknownItem):
        return 404
    if isinstance(e, TooManyPixels):
        return 413
    if isinstance(e, (ModelUnavailable, StoreError, Busy)):  # the server's state, not the request: try later
        return 503
    return 400


def _message_of(e: VrecError, svc: Service) -> str:
    """What a client is told: the error's sentence, except where it would show the server's folders
    (weights it cannot load, store files it cannot read) -- then a plain sentence, the details in the log."""
    if isinstance(e, ModelUnavailable):
        log.warning("vrec serve: a request needed a model that cannot be loaded: %s", e)
        return ("A model this request needs cannot be loaded on this server (its weights are missing); the "
                "server's log says which files to bring over.")
    if isinstance(e, StoreError) and not isinstance(e, StoreGone):
        log.warning("vrec serve: the store could not be read or written: %s", e)
        return "The server cannot read or write its files right now; its log has the details."
    return svc.public(str(e))


def _validation_message(exc) -> str:
    """One sentence for FastAPI's request validation errors (never its default JSON shape)."""
    errors = exc.errors() if hasattr(exc, "errors") else []
    if not errors:
        return "The request is malformed; see /docs for the parameters each route takes."
    e = errors[0]
    loc = [str(p) for p in e.get("loc", ())]
    kind = e.get("type", "")
    if kind == "json_invalid":
        return "The request body is not valid JSON."
    if loc == ["body"]:  # the whole body, not one of its fields
        return ("The request body is missing or is not what this route takes; see /docs for it." if kind == "missing"
                else f"The request body is invalid ({str(e.get('msg', '')).rstrip('.').lower()}); see /docs.")
    where = {"query": "query parameter", "path": "path parameter", "body": "form field", "header": "header",
             "cookie": "cookie"}.get(loc[0] if loc else "", "parameter")
    name = loc[-1] if len(loc) > 1 else "?"
    if kind == "missing":
        return f"The {where} {name!r} is missing; see /docs for what this route takes."
    value = e.get("input")
    msg = str(e.get("msg", "is invalid")).rstrip(".")
    msg = msg[0].lower() + msg[1:] if msg else msg
    return f"The {where} {name!r} is invalid ({msg}; got {value!r})."


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
                return await _error(401, msg, {"WWW-Authenticate": "Bearer"})(scope, receive, send)
        if scope.get("method") in ("POST", "PUT", "PATCH"):
            limit = svc.max_upload + MULTIPART_SLACK
            length = dict(scope.get("headers", [])).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > limit:
                return await _error(413, self.too_large())(scope, receive, send)
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
                return await _error(413, self.too_large())(scope, receive, send)
        return await self.app(scope, receive, send)

    def too_large(self) -> str:
        return (f"The upload is larger than this server's limit of {self.service.max_upload_mb:g} MB; send a "
                f"smaller photo (or start vrec serve with a larger --max-upload-mb).")


def host_name(header: str) -> str:
    """The name in a Host header, lower case, without port, brackets or trailing dot ('[::1]:80' -> '::1')."""
    value = header.strip().lower()
    if value.startswith("["):
        value = value[1:value.find("]")] if "]" in value else value[1:]
    elif value.count(":") == 1:
        value = value.split(":")[0]
    return value.rstrip(".")


def allowed_host_names(host: str, extra: Sequence[str] = ()) -> list[str]:
    """The Host names a server on ``host`` answers to: loopback names, the address it binds to, ``extra``."""
    return list(dict.fromkeys(n for n in (host_name(x) for x in (*LOOPBACK_NAMES, host, *extra)) if n))


class HostCheck:
    """Pure ASGI middleware: a request whose Host header is not an allowed name gets a 400 JSON error.

    A guard against DNS rebinding (a web page whose name an attacker points at 127.0.0.1 could
    otherwise read the API from a visitor's browser). Names as Starlette's TrustedHostMiddleware
    takes them ('*' any, '*.example.com' a domain's names); unlike it, IPv6 literals ('[::1]:8765')
    are understood and the error is JSON."""

    def __init__(self, app, allowed: Sequence[str]):
        self.app = app
        self.any = "*" in allowed
        self.names = {host_name(a) for a in allowed if not a.startswith("*")}
        self.domains = tuple(host_name(a)[1:] for a in allowed if a.startswith("*."))

    def allows(self, name: str) -> bool:
        return self.any or name in self.names or any(name.endswith(d) for d in self.domains)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        header = dict(scope.get("headers", [])).get(b"host", b"").decode("latin-1")
        if self.allows(host_name(header)):
            return await self.app(scope, receive, send)
        name = host_name(header)[:100]
        msg = ("The request has no Host header; send one that names this server, e.g. 127.0.0.1." if not name else
               f"This server does not answer to the host name {name!r} (a guard against DNS rebinding): open the "
               f"address vrec serve printed, or, if {name!r} is a name of this machine, restart vrec serve with "
               f"--allowed-host {name}.")
        return await _error(400, msg)(scope, receive, send)


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
            return await _error(503, STOPPING, {"Connection": "close"})(scope, receive, send)
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
                await _error(503, STOPPING, {"Connection": "close"})(scope, receive, send)


def create_app(store=None, model: str | None = None, compare_with: str | None = None, token: str | None = None,
               max_upload_mb: float = MAX_UPLOAD_MB, device: str = "auto", weights: dict | None = None,
               experiment: str | None = None, arms: str | Sequence[str] | None = None, split: str | None = None,
               exposure_log: str | os.PathLike | None = None, max_upload_pixels: int = MAX_UPLOAD_PIXELS,
               allowed_hosts: Sequence[str] | None = None):
    """The ASGI app (FastAPI) over a store: the web page, the JSON API and the thumbnails.

    ``model`` is the search model (default: siglip, else the first embedded model with a text
    tower), ``compare_with`` the other side of /api/compare (default: cnn, else the first other
    embedded model without a text tower). With ``token``, every route but /api/health and the
    page's static files needs it. ``weights`` maps model names to local weights files. With
    ``experiment`` (and ``arms``, e.g. 'cnn,siglip'), /api/recommend/ID?unit=U serves the unit's
    arm's similar items and appends an exposure line to ``exposure_log`` (see vrec.ab.Experiment).
    Uploads over ``max_upload_pixels`` pixels are refused (413). With ``allowed_hosts`` (``serve``
    passes the loopback names, its address and --allowed-host), a request for another Host gets a
    400; without, the Host is not checked (for an app mounted behind your own proxy). HEAD works
    wherever GET does; once ``app.state.server`` (``serve``'s uvicorn server) stops, requests get 503.
    """
    from fastapi import Body, File, Form, Query, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
    from fastapi.staticfiles import StaticFiles
    from fastapi_offline import FastAPIOffline  # /docs and /redoc with their scripts served from the package
    from starlette.exceptions import HTTPException as StarletteHTTPException

    svc = Service(store, model, compare_with, token, max_upload_mb, device, weights, max_upload_pixels)
    svc.experiment = open_experiment(svc, experiment, arms, split, exposure_log)
    app = FastAPIOffline(title="vrec", version=__version__, static_url="/static/docs",
                  description="Search a product catalog by text or photo, find similar items and compare two "
                              "models' neighbours. Errors are JSON: {\"error\": \"one sentence\"}.")
    app.state.vrec = svc
    app.state.server = None  # the uvicorn server, set by serve()

    # -- errors: always {"error": "..."} --
    @app.exception_handler(VrecError)
    async def _vrec_error(request: Request, exc: VrecError):
        return _error(_status_of(exc), _message_of(exc, svc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return _error(400, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        if isinstance(exc.__cause__, TooLarge) or isinstance(exc.__context__, TooLarge):
            raise TooLarge()  # Guard answers 413
        if exc.status_code == 404:
            msg = f"No such page: {request.url.path}; the API is listed at /docs."
        elif exc.status_code == 405:
            msg = f"{request.method} is not allowed on {request.url.path}; see /docs."
        else:
            msg = str(exc.detail).rstrip(".") + "."
        return _error(exc.status_code, msg)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):  # the traceback goes to the server's log
        return _error(500, f"Internal error ({type(exc).__name__}); the server's log has the details.")

    # -- the page --
    @app.get("/", include_in_schema=False)
    def index(token: str | None = None):
        if token is not None:
            if not svc.authorized(token):
                return _error(401, "The token is wrong; use the URL that 'vrec serve' printed when it started.")
            response = RedirectResponse("/", status_code=303)
            if svc.token is not None:
                response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict", path="/")
            return response
        page = WEB / "index.html"
        if page.is_file():
            return FileResponse(page, media_type="text/html")
        return HTMLResponse(PLACEHOLDER_PAGE)

    app.mount("/static", StaticFiles(directory=WEB / "static", check_dir=False), name="static")

    # -- the API --
    @app.get("/api/health", summary="Models, items, index state and version")
    def health():
        return JSONResponse(svc.health())

    @app.get("/api/search/text", summary="Items that match a text")
    def search_text(q: str = Query(..., description="What to look for, in plain words."),
                    k: int = Query(DEFAULT_K, description=f"Number of results, 1 to {MAX_K}."),
                    model: str | None = Query(None, description="Model with a text tower (default: the server's)."),
                    filters: list[str] = Query([], alias="filter",
                                               description="Metadata filter such as category=bags or price<200; "
                                                           "repeat to combine.")):
        from vrec.search.query import search_text as run

        check_number("k", k, min=1, max=MAX_K, integer=True)
        snap = svc.snap()
        model = svc.check_model(snap, model)
        t = time.perf_counter()
        result = run(q, k=k, model=model, store=snap, filters=filters,
                     encoder=svc.encoders.for_model(snap.model(model)))
        return JSONResponse(svc.results(result, "text", k, time.perf_counter() - t, snap))

    @app.post("/api/search/image", summary="Items that look like an uploaded photo, optionally steered by text")
    def search_image(file: UploadFile = File(..., description="The photo (JPEG, PNG, WebP, ...)."),
                     plus: list[str] = Form([], description="Text to add to the query; repeatable."),
                     minus: list[str] = Form([], description="Text to subtract from the query; repeatable."),
                     weight: float = Form(1.0, description="Weight of each plus/minus text, 0 to 10."),
                     k: int = Form(DEFAULT_K, description=f"Number of results, 1 to {MAX_K}."),
                     model: str | None = Form(None, description="Model to search (default: the server's)."),
                     filters: list[str] = Form([], alias="filter", description="Metadata filters; repeatable.")):
        from vrec.search.query import search_image as run

        check_number("k", k, min=1, max=MAX_K, integer=True)
        snap = svc.snap()
        model = svc.check_model(snap, model)
        name = _upload_name(file.filename)
        encoder = svc.encoders.for_model(snap.model(model))
        t = time.perf_counter()
        photo = svc.decodes.upload(lambda: _read_upload(file, svc.max_upload), encoder.preprocess_spec.decode_size,
                                   name)  # in a decode slot, reduced to what the model needs
        result = run(name, k=k, model=model, store=snap, filters=filters, plus=[p for p in plus if p.strip()],
                     minus=[m for m in minus if m.strip()], weight=weight, encoder=encoder, image=photo)
        return JSONResponse(svc.results(result, "image", k, time.perf_counter() - t, snap))

    @app.get("/api/similar/{item_id:path}", summary="Items similar to a catalog item (the item itself excluded)")
    def similar(item_id: str, k: int = Query(DEFAULT_K, description=f"Number of results, 1 to {MAX_K}."),
                model: str | None = Query(None, description="Model whose neighbours to show (default: the server's)."),
                filters: list[str] = Query([], alias="filter", description="Metadata filters; repeatable.")):
        from vrec.search.query import search_image as run

        check_number("k", k, min=1, max=MAX_K, integer=True)
        snap = svc.snap()
        model = svc.check_model(snap, model)
        pos = svc.resolve(snap, model, item_id)
        full_id = str(snap.table(model)["id"].iloc[pos])
        t = time.perf_counter()
        result = run(full_id, k=k, model=model, store=snap, filters=filters)
        return JSONResponse(svc.results(result, "similar", k, time.perf_counter() - t, snap))

    @app.get("/api/recommend/{item_id:path}", summary="A/B experiment: the unit's arm's similar items (logged)")
    def recommend(item_id: str, unit: str = Query(..., description="The unit of the experiment: a user or session id."),
                  k: int = Query(DEFAULT_K, description=f"Number of results, 1 to {MAX_K}.")):
        if svc.experiment is None:
            raise QueryError("This server runs no experiment; start it with vrec serve --experiment NAME "
                             "--arms cnn,siglip to serve /api/recommend.")
        check_number("k", k, min=1, max=MAX_K, integer=True)
        snap = svc.snap()
        t = time.perf_counter()
        rec = svc.experiment.recommend(item_id, unit, k=k, store=snap)
        result = rec.pop("result")
        return JSONResponse({**rec, **svc.results(result, "recommend", k, time.perf_counter() - t, snap)})

    @app.get("/api/compare/{item_id:path}", summary="Two models' neighbours of an item, side by side")
    def compare(item_id: str, left: str | None = Query(None, description="Left model (default: the CNN)."),
                right: str | None = Query(None, description="Right model (default: the search model)."),
                k: int = Query(DEFAULT_K, description=f"Neighbours per model, 1 to {MAX_K}.")):
        from vrec.search.compare import compare as run

        check_number("k", k, min=1, max=MAX_K, integer=True)
        snap = svc.snap()
        left = left or svc.compare_with
        right = right or svc.model
        if left is None:
            raise QueryError(f"This server has no model to compare with; pass left=MODEL (the store has "
                             f"{', '.join(snap.model_names())}) or start vrec serve with --compare-with.")
        left, right = svc.check_model(snap, left), svc.check_model(snap, right)
        pos = svc.resolve(snap, right, item_id)
        full_id = str(snap.table(right)["id"].iloc[pos])
        if snap.position(left, full_id) is None:
            raise UnknownItem(f"{full_id!r} has no {left} vector; embed the catalog with --model {left} to compare it.")
        c = run([full_id], left=left, right=right, k=k, store=snap, summary=False)
        q = c.queries[0]
        sides = {}
        for side, s in (("left", q.left), ("right", q.right)):
            sides[side] = {"model": s.model, "results": compare_records(snap, s.model, s.table)}
        shared = [str(i) for i, common in zip(q.left.table["id"], q.left.table["common"]) if common] \
            if len(q.left.table) else []
        return JSONResponse({"id": full_id, "item": item_record(snap.table(right).iloc[pos]), **sides,
                             "overlap": float(q.overlap), "shared": shared, "k": int(c.k), "notes": list(c.notes)})

    @app.get("/api/items/{item_id:path}", summary="One catalog item")
    def item(item_id: str):
        snap = svc.snap()
        pos = svc.resolve(snap, svc.model, item_id)
        return JSONResponse(item_record(snap.table(svc.model).iloc[pos]))

    @app.get("/thumb/{item_id:path}", summary="A catalog item's photo, resized (longest side 384 px)",
             response_class=Response)
    def thumb(item_id: str):
        snap = svc.snap()
        models = [svc.model] + [m for m in snap.model_names() if m != svc.model]
        data = svc.thumbs.get(snap, models, item_id)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300"})

    @app.post("/api/gallery", summary="A self-contained HTML page of results (photos inlined)",
              response_class=HTMLResponse)
    def gallery(body: Any = Body(None, examples=[{"title": "Summer bags", "results": [{"id": "bags/tote-01",
                                                                                        "score": 0.31}]}])):
        from vrec.report import pages

        snap = svc.snap()
        title, result = gallery_result(svc, snap, body)
        html = pages.page(title, pages.search_html(result, Path(str(snap.info().get("root", "")))))
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", title).strip("-")[:60] or "gallery"
        return HTMLResponse(html, headers={"Content-Disposition": f'attachment; filename="{slug}.html"'})

    app.add_middleware(Guard, service=svc)  # each one added wraps those before: Stopping is the outermost
    app.add_middleware(HeadAsGet)
    if allowed_hosts is not None:
        app.add_middleware(HostCheck, allowed=list(allowed_hosts))
    app.add_middleware(Stopping, state=app.state)
    return app


def _read_upload(file, limit: int) -> bytes:
    data = file.file.read(limit + 1)
    if len(data) > limit:
        raise TooLarge()
    return data


def _upload_name(filename: str | None) -> str:
    """The uploaded file's base name, for the result's query label (never used as a path)."""
    name = re.split(r"[\\/]", filename or "")[-1].strip()
    return name[:120] or "uploaded photo"



# --- running it -------------------------------------------------------------------------------

def is_loopback(host: str) -> bool:
    """True when every address ``host`` names is a loopback address (127.0.0.0/8, ::1)."""
    import ipaddress
    import socket

    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)


def check_exposure(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a token (anyone on the network could use it)."""
    import secrets

    if not is_loopback(host) and not token:
        raise VrecError(f"--host {host} makes the server reachable from other machines, so it needs a token: "
                        f"add --token {secrets.token_urlsafe(16)} (or any secret of your own) and share the "
                        f"URL it prints only with the people who should use it.")


def bind(host: str, port: int):
    """A listening socket on host:port (port 0: a free one), or one clear error."""
    import socket

    check_number("--port", port, min=0, max=65535, integer=True, hint="e.g. 8765")
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)[0]
    except OSError as e:
        raise VrecError(f"Cannot listen on {host!r} ({e}); give an address of this machine, e.g. 127.0.0.1.") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        why = "it is in use" if e.errno == 98 else (e.strerror or str(e))
        raise VrecError(f"Cannot listen on {host}:{port} ({why}); pick another --port.") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(host: str, port: int, token: str | None) -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}/" + (f"?token={quote(token, safe='')}" if token else "")


def serve(store=None, model: str | None = None, compare_with: str | None = None, host: str = DEFAULT_HOST,
          port: int = DEFAULT_PORT, token: str | None = None, max_upload_mb: float = MAX_UPLOAD_MB,
          device: str = "auto", warm: bool = True, on_ready=None, experiment: str | None = None,
          arms: str | Sequence[str] | None = None, split: str | None = None,
          exposure_log: str | os.PathLike | None = None, max_upload_pixels: int = MAX_UPLOAD_PIXELS,
          allowed_hosts: Sequence[str] = (), shutdown_grace: float = SHUTDOWN_GRACE) -> None:
    """Run the app on uvicorn until Ctrl-C or SIGTERM. The first line on stdout is the URL to open.

    Loopback only unless a ``token`` is given. Requests must name the server by a loopback name,
    its ``host`` or one of ``allowed_hosts`` (the Host header). ``warm`` loads the search model's
    text tower in the background right away. ``on_ready(url)`` (default: print it) is called once
    the port listens. On Ctrl-C or SIGTERM it stops accepting, lets running requests finish for
    ``shutdown_grace`` seconds (the rest get 503), says "stopped" and returns.
    """
    check_number("--port", port, min=0, max=65535, integer=True, hint="0 picks a free port")
    check_number("--max-upload-mb", max_upload_mb, min=0.001, max=10_000, hint="in megabytes, e.g. 20")
    check_number("--shutdown-grace", shutdown_grace, min=0.1, max=3600, hint="in seconds, e.g. 5")
    check_exposure(host, token)
    names = allowed_host_names(host, allowed_hosts)
    app = create_app(store, model, compare_with, token, max_upload_mb, device, experiment=experiment, arms=arms,
                     split=split, exposure_log=exposure_log, max_upload_pixels=max_upload_pixels,
                     allowed_hosts=names)
    svc: Service = app.state.vrec
    sock = bind(host, port)
    url = url_of(host, sock.getsockname()[1], token)
    (on_ready or (lambda u: print(f"vrec serve: {u}", flush=True)))(url)
    _announce(svc, host, names)
    if warm:
        def warm_up():
            try:
                svc.warm()
            except Exception as e:  # a model that cannot load: its requests say why
                print(f"vrec serve: could not load {svc.model} yet ({e})", file=sys.stderr, flush=True)
        threading.Thread(target=warm_up, name="vrec-warm-up", daemon=True).start()
    try:
        _run(app, sock, shutdown_grace)
    finally:
        sock.close()
    print("vrec serve: stopped.", file=sys.stderr, flush=True)


def _announce(svc: Service, host: str, names: Sequence[str]) -> None:
    """The server's lines on stderr: models and items, the experiment, the Host names beyond loopback."""
    print(f"vrec serve: {svc.model} for search"
          + (f", {svc.compare_with} to compare with" if svc.compare_with else ", no model to compare with")
          + f"; {len(svc.snap().model(svc.model)):,} items; Ctrl-C stops it.", file=sys.stderr, flush=True)
    if svc.experiment is not None:
        e = svc.experiment
        print(f"vrec serve: experiment {e.name!r}, arms " + ", ".join(a if a == m else f"{a}={m}" for a, m in e.models.items())
              + " at /api/recommend/ID?unit=U" + (f"; exposures to {e.exposure_log}" if e.exposure_log else
                                                  " (no --exposure-log: exposures are not recorded)"),
              file=sys.stderr, flush=True)
    if not is_loopback(host):
        print("vrec serve: answers requests addressed to " + ", ".join(names) + "; add the name or address "
              "clients use with --allowed-host NAME.", file=sys.stderr, flush=True)


def _run(app, sock, grace: float) -> None:
    """uvicorn on the socket until Ctrl-C or SIGTERM, both stopping it gracefully (and neither killing
    the process afterwards: uvicorn raises the signal again once stopped, to the handler it found)."""
    import signal

    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=grace)
    server = uvicorn.Server(config)
    app.state.server = server
    caught = (signal.SIGINT, signal.SIGTERM)
    before = {sig: signal.signal(sig, server.handle_exit) for sig in caught}  # what uvicorn restores
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
