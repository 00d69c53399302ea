"""HTTP answers for errors: always ``{"error": "one sentence"}``; 4xx for a request's mistakes, 503 while
the store is missing, a model cannot be loaded or the server stops."""
import logging

from vrec.base.errors import CollectionConflict, ModelUnavailable, StoreError, UnknownCollection, UnknownItem, VrecError
from vrec.serve.decodes import Busy, TooManyPixels
from vrec.serve.live import StoreGone

log = logging.getLogger("vrec.serve")


def error(status: int, message: str, headers: dict | None = None):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status, headers=headers)


def status_of(e: VrecError) -> int:
    if isinstance(e, (UnknownItem, UnknownCollection)):
        return 404
    if isinstance(e, CollectionConflict):
        return 409
    if isinstance(e, TooManyPixels):
        return 413
    if isinstance(e, (ModelUnavailable, StoreError, Busy)):  # the server's state, not the request: try later
        return 503
    return 400


def message_of(e: VrecError, svc) -> str:
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


def validation_message(exc, form: bool = False) -> str:
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
    where = {"query": "query parameter", "path": "path parameter", "header": "header",
             "body": "form field" if form else "field of the request body",
             "cookie": "cookie"}.get(loc[0] if loc else "", "parameter")
    name = loc[-1] if len(loc) > 1 else "?"
    if kind == "missing":
        return f"The {where} {name!r} is missing; see /docs for what this route takes."
    value = repr(e.get("input"))
    value = value if len(value) <= 80 else value[:77] + "..."
    msg = str(e.get("msg", "is invalid")).rstrip(".")
    msg = msg[0].lower() + msg[1:] if msg else msg
    return f"The {where} {name!r} is invalid ({msg}; got {value})."
