"""``vrec adapt``: learn an adapter on a model's vectors from the catalog's labels."""
from __future__ import annotations

import typer

from vrec.cli.common import FormatTableJsonOpt, StoreOpt, app, check_format, err, out, print_notes


@app.command()
def adapt(
    model: str = typer.Option(..., "--model", "-m", help="The embedded model whose vectors to adapt, e.g. effnet-lite0."),
    label: list[str] | None = typer.Option(None, "--label", help="Metadata column whose values should group "
                                              "together (e.g. articleType); repeat for several."),
    pairs: str | None = typer.Option(None, "--pairs", help="CSV of positive pairs: two columns of item ids that "
                                        "belong together (e.g. co-bought)."),
    name: str | None = typer.Option(None, "--name", help="The derived model's name, BASE+TAG or TAG "
                                       "\\[default: MODEL+adapt]."),
    alpha: float = typer.Option(0.5, "--alpha", help="Text queries: weight of the adapted text vector against the "
                                "base one, 0 to 1 (0 keeps text search as it was)."),
    rank: int = typer.Option(32, "--rank", help="Rank of the adapter x + U Vᵀ x (1 to 1024)."),
    steps: int = typer.Option(300, "--steps", help="Training steps of 512 items (1 to 100000)."),
    holdout: float = typer.Option(0.3, "--holdout", help="Share of products held out for the evaluation (0.05 to 0.95)."),
    k: int = typer.Option(10, "--k", "-k", help="Precision@k on the held-out items (1 to 1000)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split, the training and the bootstrap (0 or more)."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for the paired interval (100 to 100000)."),
    force: bool = typer.Option(False, "--force", help="Publish the adapter even when it is not clearly better."),
    fmt: str = FormatTableJsonOpt,
    store: str | None = StoreOpt,
) -> None:
    """Learn a low-rank adapter on a model's frozen vectors from your labels, and publish it as a model.

    The adapter (x + U Vᵀ x, trained on the CPU) is measured on held-out products: precision@k of the
    label, base vs adapted, with a paired 95% interval. Only an adapter that is better is published,
    as MODEL+adapt: every item's adapted vector (and an index) in the store, and queries through the
    base model then the adapter; text queries blended with the base text vector by --alpha.
    """
    from vrec.base.errors import VrecError, check_number
    from vrec.experiments.adapt import adapt as run
    from vrec.report.adapt_report import adapt_json, adapt_table

    check_format(fmt, ("table", "json"))
    check_number("--seed", seed, min=0, integer=True)
    rep = run(model, label or (), store=store, pairs=pairs, name=name, alpha=alpha, rank=rank, steps=steps,
              holdout=holdout, k=k, seed=seed, n_boot=bootstrap, force=force,
              progress=lambda m: err.print(m, highlight=False))
    print_notes(rep.notes)
    if fmt == "json":
        print(adapt_json(rep))
    else:
        out.print(adapt_table(rep))
    if not rep.published:
        raise VrecError(f"Not published: {rep.verdict}. Label more items, try another --label, or pass --force "
                        f"to publish it anyway.")
    err.print(f"published {rep.name}: search it with --model {rep.name}", highlight=False)
