"""The web page: ``/`` (and ``/?token=`` to sign in with the server's token) and its static files."""
from pathlib import Path

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from vrec.serve.http_errors import error
from vrec.serve.middleware import TOKEN_COOKIE
from vrec.serve.routes import service
from vrec.serve.service import Service

WEB = Path(__file__).resolve().parents[1] / "web"
PLACEHOLDER_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>vrec</title></head>
<body style="font-family:system-ui,sans-serif;margin:2em"><h1>vrec serve</h1>
<p>The web page is not installed; the JSON API works: see <a href="/docs">/docs</a> and
<a href="/api/health">/api/health</a>.</p></body></html>"""

router = APIRouter(include_in_schema=False)


@router.get("/")
def index(token: str | None = None, svc: Service = Depends(service)):
    if token is not None:
        if not svc.authorized(token):
            return error(401, "The token is wrong; use the URL that 'vrec serve' printed when it started.")
        response = RedirectResponse("/", status_code=303)
        if svc.token is not None:
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict", path="/")
        return response
    page = WEB / "index.html"
    if page.is_file():
        return FileResponse(page, media_type="text/html")
    return HTMLResponse(PLACEHOLDER_PAGE)
