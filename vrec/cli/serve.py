"""``vrec serve``."""
from __future__ import annotations

import typer

from vrec.cli.common import DeviceOpt, StoreOpt, app, request_quick_exit

SERVE_HELP = """Serve a web page and a JSON API over the store: search by text or photo, similar items, CNN vs SigLIP.

The models load once and stay warm: similar items answer in milliseconds, a text query in its encoding
time (about 0.2 s for SigLIP on a 2-core CPU; a text asked again, milliseconds), instead of the seconds
a new process takes. The first line printed is the URL to open. Ctrl-C stops the server.

Safety: it listens on 127.0.0.1 (this machine only) unless --host says otherwise, and any other
--host needs --token; with a token every route but /api/health needs it (open the printed URL, or
send 'Authorization: Bearer TOKEN'). It answers only requests addressed to localhost, 127.0.0.1,
[::1] or its --host (the Host header; a guard against DNS rebinding): with --host 0.0.0.0, add the
name or address clients use with --allowed-host. Thumbnails are served by catalog id only, uploads
are limited in size and pixels, and only models the store holds are used. The store is only read;
when 'vrec embed' adds photos meanwhile, the server picks them up by itself. Ctrl-C or SIGTERM
lets running requests finish (--shutdown-grace seconds), then stops.

API: GET /api/health, GET /api/search/text?q=..., POST /api/search/image (multipart 'file'),
GET /api/similar/ID, GET /api/compare/ID, GET /api/items/ID, GET /thumb/ID, POST /api/gallery;
in a catalog of products of several photos every list holds products, each shown with its photo
that matched best (product_score=mean|max|main on the searches);
with --experiment, GET /api/recommend/ID?unit=U (an A/B test's pilot: the unit's arm decides the
model, and --exposure-log records what was shown); OpenAPI docs at /docs.
"""


@app.command("serve", help=SERVE_HELP,
             short_help="Serve a web page and JSON API: search, similar items, CNN vs SigLIP, galleries.")
def serve(
    store: str | None = StoreOpt,
    model: str | None = typer.Option(None, "--model", "-m", help="Model to search with \\[default: siglip if the "
                                        "store has it, else the first embedded model with a text tower]."),
    compare_with: str | None = typer.Option(None, "--compare-with", help="Model shown beside it in comparisons "
                                               "\\[default: cnn if the store has it, else the first other embedded "
                                               "model without a text tower]."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; anything but loopback needs --token."),
    port: int = typer.Option(8765, "--port", help="Port to listen on (0: any free port)."),
    token: str | None = typer.Option(None, "--token", envvar="VREC_SERVE_TOKEN", show_envvar=True,
                                        help="Secret that every request but /api/health must carry."),
    max_upload_mb: float = typer.Option(20.0, "--max-upload-mb", help="Largest photo upload accepted, in MB."),
    max_upload_pixels: int = typer.Option(40_000_000, "--max-upload-pixels", help="Most pixels (width x height) an "
                                          "uploaded photo may have; larger ones get HTTP 413 before being decoded."),
    allowed_hosts: list[str] | None = typer.Option(None, "--allowed-host", metavar="NAME", help="Another name or address clients "
                                                      "use for this server (the Host header), e.g. shop.example.com "
                                                      "or 192.168.1.20; '*.example.com' for a domain, '*' for any. "
                                                      "Repeatable."),
    shutdown_grace: float = typer.Option(5.0, "--shutdown-grace", help="Seconds (0.1 to 3600) running requests get "
                                         "to finish after Ctrl-C or SIGTERM; requests still running then get HTTP 503."),
    experiment: str | None = typer.Option(None, "--experiment", help="Run an A/B experiment of this name: "
                                             "GET /api/recommend/ID?unit=U serves the unit's arm's similar items."),
    arms: str | None = typer.Option(None, "--arms", help="With --experiment: arms as embedded models, the first "
                                       "the control, e.g. cnn,siglip \\[default: cnn,siglip]."),
    split: str | None = typer.Option(None, "--split", help="With --experiment: shares per arm, e.g. 50/50 "
                                        "\\[default: equal]."),
    exposure_log: str | None = typer.Option(None, "--exposure-log", help="With --experiment: append one JSON line "
                                               "per list shown (time, experiment, unit, arm, item, shown ids)."),
    product_score: str | None = typer.Option(None, "--product-score", help="How a product of several photos "
                                             "is scored when a request does not say: mean (its photos' mean vector), "
                                             "max (its best-matching photo) or main (its main photo only) "
                                             "\\[default: mean]."),
    device: str = DeviceOpt,
) -> None:
    from vrec.serve.runner import serve as run

    if split is not None and experiment is None:  # the split itself is parsed where the arms are (vrec.ab)
        from vrec.base.errors import VrecError
        raise VrecError("--split belongs to an experiment; add --experiment NAME.")
    run(store, model=model, compare_with=compare_with, host=host, port=port, token=token,
        max_upload_mb=max_upload_mb, device=device, experiment=experiment, arms=arms, split=split,
        exposure_log=exposure_log, max_upload_pixels=max_upload_pixels, allowed_hosts=allowed_hosts or (),
        shutdown_grace=shutdown_grace, product_score=product_score, on_ready=lambda url: print(f"vrec serve: {url}", flush=True))
    request_quick_exit()  # stopped: the exposure log is written line by line, nothing is left to clean up
