"""``vrec serve``: a web page and a JSON API over a store, with the models loaded once.

The app is a thin face over the library: every answer comes from ``vrec.search.query``,
``vrec.search.compare`` and ``vrec.report.pages`` -- the functions behind ``vrec search-*``,
``vrec compare`` and ``--html`` -- so the web and the command line never disagree. The package, one
concept a module:

- ``app`` (this module) -- ``create_app``: the FastAPI app, its error answers and its OpenAPI document;
- ``routes/`` -- the routes, one router per concern, each parsing, calling one library function and
  answering with a model of ``schemas`` (the JSON contract, shown at /docs);
- ``middleware`` -- graceful stop, the Host allow-list, HEAD as GET, the token and upload limits;
- ``http_errors`` -- errors as ``{"error": "one sentence"}`` with their status;
- ``service`` -- what the routes share (``Service``: only the store's own models, error texts without
  the server's folders) and the JSON records of results and items, without the web framework;
- ``live`` -- **snapshots** of the store, swapped whole when ``vrec embed`` or ``vrec index`` commits;
- ``encoder_pool`` -- **models** loaded once, on first use, shared by all requests;
- ``decodes`` -- **photo decodes**: a pixel limit read from the header (413), a few decodes at a
  time, large photos shrunk while decoding, freed memory given back;
- ``thumbnails`` -- ``/thumb/ID``: catalog photos by id only, from inside the catalog folder;
- ``runner`` -- ``serve``: uvicorn on loopback by default, Ctrl-C and SIGTERM both stopping it gracefully.

FastAPI and uvicorn are imported only when an app is made, so ``vrec --help`` stays fast.
"""
import os
from collections.abc import Sequence

from vrec.base import __version__
from vrec.base.errors import VrecError
from vrec.serve.decodes import MAX_UPLOAD_PIXELS
from vrec.serve.service import Service, open_experiment

MAX_UPLOAD_MB = 20.0
DESCRIPTION = ("Search a product catalog by text or photo, find similar items and compare two models' neighbours. "
               "Errors are JSON: {\"error\": \"one sentence\"}.")


def create_app(store=None, model: str | None = None, compare_with: str | None = None, token: str | None = None,
               max_upload_mb: float = MAX_UPLOAD_MB, device: str = "auto", weights: dict | None = None,
               experiment: str | None = None, arms: str | Sequence[str] | None = None, split: str | None = None,
               exposure_log: str | os.PathLike | None = None, max_upload_pixels: int = MAX_UPLOAD_PIXELS,
               allowed_hosts: Sequence[str] | None = None, product_score: str | None = None):
    """The ASGI app (FastAPI) over a store: the web page, the JSON API and the thumbnails.

    ``model`` is the search model (default: siglip, else the first embedded model with a text
    tower), ``compare_with`` the other side of /api/compare (default: cnn, else the first other
    embedded model without a text tower). With ``token``, every route but /api/health and the
    page's static files needs it. ``weights`` maps model names to local weights files. With
    ``experiment`` (and ``arms``, e.g. 'cnn,siglip'), /api/recommend/ID?unit=U serves the unit's
    arm's similar items and appends an exposure line to ``exposure_log`` (see vrec.experiments.ab.Experiment).
    Uploads over ``max_upload_pixels`` pixels are refused (413). With ``allowed_hosts`` (``serve``
    passes the loopback names, its address and --allowed-host), a request for another Host gets a
    400; without, the Host is not checked (for an app mounted behind your own proxy). HEAD works
    wherever GET does; once ``app.state.server`` (``serve``'s uvicorn server) stops, requests get 503.
    In a catalog of products of several photos every list holds products, scored by ``product_score``
    (mean, max or main; default ``vrec.store.products.DEFAULT_SCORING``) unless a request says otherwise.
    """
    from fastapi.staticfiles import StaticFiles
    from fastapi_offline import FastAPIOffline  # /docs and /redoc with their scripts served from the package

    from vrec.serve.middleware import Guard, HeadAsGet, HostCheck, Stopping
    from vrec.serve.routes import collections, items, page, search
    from vrec.serve.routes import experiment as experiment_routes

    svc = Service(store, model, compare_with, token, max_upload_mb, device, weights, max_upload_pixels, product_score)
    svc.experiment = open_experiment(svc, experiment, arms, split, exposure_log)
    app = FastAPIOffline(title="vrec", version=__version__, static_url="/static/docs", description=DESCRIPTION)
    app.state.vrec = svc
    app.state.server = None  # the uvicorn server, set by serve()
    _error_handlers(app, svc)
    app.include_router(page.router)
    app.mount("/static", StaticFiles(directory=page.WEB / "static", check_dir=False), name="static")
    app.include_router(search.router)
    app.include_router(items.router)
    app.include_router(collections.router)
    app.include_router(experiment_routes.router, include_in_schema=svc.experiment is not None)
    app.openapi = lambda: _openapi(app)
    app.add_middleware(Guard, service=svc)  # each one added wraps those before: Stopping is the outermost
    app.add_middleware(HeadAsGet)
    if allowed_hosts is not None:
        app.add_middleware(HostCheck, allowed=list(allowed_hosts))
    app.add_middleware(Stopping, state=app.state)
    return app


def _error_handlers(app, svc: Service) -> None:
    """Every error answers ``{"error": "one sentence"}``: the library's, FastAPI's validation, HTTP's, bugs."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from vrec.serve.http_errors import error, message_of, status_of, validation_message
    from vrec.serve.middleware import TooLarge

    @app.exception_handler(VrecError)
    async def _vrec_error(request: Request, exc: VrecError):
        return error(status_of(exc), message_of(exc, svc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        form = request.headers.get("content-type", "").startswith(("multipart/", "application/x-www-form-urlencoded"))
        return error(400, validation_message(exc, form=form))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        if isinstance(exc.__cause__, TooLarge) or isinstance(exc.__context__, TooLarge):
            raise TooLarge()  # Guard answers 413
        if exc.status_code == 404:
            msg = f"No such page: {request.url.path}; the API is listed at /docs."
        elif exc.status_code == 405:
            msg = f"{request.method} is not allowed on {request.url.path}; see /docs."
            allow = _allowed_methods(app, request.scope)
            if allow:  # every route of that path, not only the first one Starlette tried
                return error(405, msg, {**(getattr(exc, "headers", None) or {}), "Allow": allow})
        else:
            msg = str(exc.detail).rstrip(".") + "."
        return error(exc.status_code, msg, getattr(exc, "headers", None))  # 405 keeps its Allow header

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):  # the traceback goes to the server's log
        return error(500, f"Internal error ({type(exc).__name__}); the server's log has the details.")


def _allowed_methods(app, scope) -> str:
    """The methods of every route whose path matches the request's, for a 405's Allow header."""
    from starlette.routing import Match

    methods: set[str] = set()

    def walk(routes) -> None:
        for route in routes:
            inner = getattr(getattr(route, "original_router", None), "routes", None)  # an included router
            if inner is not None:
                walk(inner)
            elif getattr(route, "methods", None) and route.matches(scope)[0] != Match.NONE:
                methods.update(route.methods)

    walk(app.router.routes)
    return ", ".join(sorted(methods))


def _openapi(app) -> dict:
    """The OpenAPI document, once: FastAPI's, with the errors as this server answers them (400 with the
    error model, never FastAPI's 422 shape) and the gallery's request model."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    from vrec.serve.schemas import GalleryRequest

    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    gallery = GalleryRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(gallery.pop("$defs", {}))
    schemas["GalleryRequest"] = gallery
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    from vrec.serve.encoder_pool import has_text_tower

    models = app.state.vrec.snap().model_names()
    text_models = [m for m in models if has_text_tower(m)]
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorAnswer"}}}
    for route, path in doc.get("paths", {}).items():
        for op in path.values():
            responses = op.get("responses", {})
            responses.pop("422", None)
            for code, answer in responses.items():
                if code[0] in "45":  # errors are JSON whatever the route's own answer is (HTML, JPEG)
                    answer["content"] = error
            for param in op.get("parameters", []):  # a model= names one the store holds
                if param["name"] in ("model", "left", "right"):
                    names = text_models if route == "/api/search/text" else models
                    param["schema"] = {"anyOf": [{"type": "string", "enum": names}, {"type": "null"}]}
    for name, schema in schemas.items():  # request bodies (the gallery, the photo search's form)
        if "model" in schema.get("properties", {}) and (name == "GalleryRequest" or name.startswith("Body_")):
            schema["properties"]["model"] = {"type": "string", "enum": models}  # a form field is never null
    app.openapi_schema = doc
    return doc
