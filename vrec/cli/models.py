"""``vrec models``: what can embed, and getting weights onto an offline machine."""
from __future__ import annotations

import typer

from vrec.cli.common import StoreOpt, app, err, out

models_app = typer.Typer(help="List models and download their weights.", invoke_without_command=True,
                         no_args_is_help=False)
app.add_typer(models_app, name="models")


@models_app.callback()
def models_list(ctx: typer.Context,
                pattern: str = typer.Option("*", "--pattern", help="Shell-style filter on names, e.g. 'tiny-*'."),
                store: str | None = StoreOpt) -> None:
    """List the models vrec knows (also any open_clip:ARCH[@TAG] or hf-hub:ORG/NAME), and the adapted
    models ('vrec adapt') in the store, when there is one."""
    if ctx.invoked_subcommand:
        return
    from rich.markup import escape

    from vrec.models.registry import list_models
    from vrec.models.weights import is_available_offline
    from vrec.report.render import new_table

    t = new_table(escape("Models (any open_clip:ARCH[@TAG] or hf-hub:ORG/NAME works too)"))
    for c in ("name", "dim", "text", "size", "offline", "description", "source", "published figures"):
        t.add_column(c, justify="right" if c in ("dim", "size") else "left",
                     whole=c not in ("description", "source", "published figures"))
    for e in list_models(pattern):
        t.add_row(escape(e.name), str(e.dim), "yes" if e.text else "no", f"{e.size_mb} MB",
                  "yes" if is_available_offline(e) else "no", escape(e.description), escape(e.source or "-"),
                  escape(e.published or "-"))
    out.print(t)
    _adapted(store)


def _adapted(store: str | None) -> None:
    """The store's adapted models, if it has any (a missing store: nothing to add)."""
    from vrec.experiments.adapt import adapted_models
    from vrec.report.adapt_report import adapted_models_table
    from vrec.store.store import Store

    st = Store(store)
    found = adapted_models(st)
    if found:
        out.print(adapted_models_table(found, str(st.path)))


@models_app.command("download")
def download(name: str = typer.Argument(..., help="Model name, e.g. siglip or cnn.")) -> None:
    """Download a model's weights (and tokenizer) into the local cache, for later offline use."""
    from vrec.models.adapter import split_derived
    from vrec.models.encoders import download as run

    derived = split_derived(name)
    if derived:  # an adapted model's own weights are in its store; its queries need the base model
        err.print(f"{name} is adapted from {derived[0]}: its adapter lives in the store; downloading "
                  f"{derived[0]}'s weights, which its queries use.", highlight=False)
    paths = run(derived[0] if derived else name)
    for p in paths:
        out.print(f"cached: {p}", highlight=False)
    err.print("Copy this cache folder to an offline machine (or set HF_HOME to a copy) and set HF_HUB_OFFLINE=1.")
