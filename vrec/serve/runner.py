"""Running the app: ``serve`` on uvicorn, on loopback by default (any other address needs a token),
until Ctrl-C or SIGTERM, both stopping it gracefully."""
import logging
import os
import threading
from collections.abc import Sequence
from urllib.parse import quote

from vrec.base.errors import VrecError, check_number
from vrec.serve.app import MAX_UPLOAD_MB, create_app
from vrec.serve.decodes import MAX_UPLOAD_PIXELS
from vrec.serve.middleware import allowed_host_names
from vrec.serve.service import Service

log = logging.getLogger("vrec.serve")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
SHUTDOWN_GRACE = 5.0  # seconds running requests get to finish after Ctrl-C or SIGTERM; the rest are answered 503


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
          allowed_hosts: Sequence[str] = (), shutdown_grace: float = SHUTDOWN_GRACE,
          product_score: str | None = None) -> None:
    """Run the app on uvicorn until Ctrl-C or SIGTERM. The first line on stdout is the URL to open.

    Loopback only unless a ``token`` is given. Requests must name the server by a loopback name,
    its ``host`` or one of ``allowed_hosts`` (the Host header). ``warm`` loads the search model's
    text tower in the background right away. ``on_ready(url)`` (default: print it) is called once
    the port listens. On Ctrl-C or SIGTERM it stops accepting, lets running requests finish for
    ``shutdown_grace`` seconds (the rest get 503), says "stopped" and returns. ``product_score``: how a
    product of several photos is scored when a request does not say (see ``create_app``).
    """
    check_number("--port", port, min=0, max=65535, integer=True, hint="0 picks a free port")
    check_number("--max-upload-mb", max_upload_mb, min=0.001, max=10_000, hint="in megabytes, e.g. 20")
    check_number("--shutdown-grace", shutdown_grace, min=0.1, max=3600, hint="in seconds, e.g. 5")
    check_exposure(host, token)
    names = allowed_host_names(host, allowed_hosts)
    app = create_app(store, model, compare_with, token, max_upload_mb, device, experiment=experiment, arms=arms,
                     split=split, exposure_log=exposure_log, max_upload_pixels=max_upload_pixels,
                     allowed_hosts=names, product_score=product_score)
    svc: Service = app.state.vrec
    sock = bind(host, port)
    url = url_of(host, sock.getsockname()[1], token)
    (on_ready or (lambda u: log.info("vrec serve: %s", u)))(url)
    _announce(svc, host, names)
    if warm:
        def warm_up():
            try:
                svc.warm()
            except Exception as e:  # a model that cannot load: its requests say why
                log.warning("vrec serve: could not load %s yet (%s)", svc.model, e)
        threading.Thread(target=warm_up, name="vrec-warm-up", daemon=True).start()
    try:
        _run(app, sock, shutdown_grace)
    finally:
        sock.close()
    log.info("vrec serve: stopped.")


def _announce(svc: Service, host: str, names: Sequence[str]) -> None:
    """The server's lines on stderr: models and items, the experiment, the Host names beyond loopback."""
    log.info(f"vrec serve: {svc.model} for search"
             + (f", {svc.compare_with} to compare with" if svc.compare_with else ", no model to compare with")
             + f"; {len(svc.snap().model(svc.model)):,} items; Ctrl-C stops it.")
    if svc.experiment is not None:
        e = svc.experiment
        log.info(f"vrec serve: experiment {e.name!r}, arms " + ", ".join(a if a == m else f"{a}={m}" for a, m in e.models.items())
                 + " at /api/recommend/ID?unit=U" + (f"; exposures to {e.exposure_log}" if e.exposure_log else
                                                     " (no --exposure-log: exposures are not recorded)"))
    if not is_loopback(host):
        log.info("vrec serve: answers requests addressed to " + ", ".join(names) + "; add the name or address "
                 "clients use with --allowed-host NAME.")


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
