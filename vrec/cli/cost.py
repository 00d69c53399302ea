"""``vrec cost``: time, money, storage and upkeep of embedding a catalog."""
from __future__ import annotations

import json

import typer
from rich.markup import escape

from vrec.cli.common import FormatTableJsonOpt, StoreOpt, app, check_format, err, out, print_notes


@app.command()
def cost(
    images: int = typer.Option(..., "--images", "-n", help="Photos to (re-)embed, e.g. 2000000."),
    model: list[str] | None = typer.Option(None, "--model", "-m", help="Model to cost; repeat for several "
                                              "\\[default: siglip and cnn]."),
    device: str = typer.Option("cpu", "--device", help="cpu (calibrated here on your photos) or cuda (from "
                               "BENCHMARKS-gpu.json)."),
    precision: str = typer.Option("fp32", "--precision", help="fp32, fp16, bf16 or int8, as vrec embed takes it."),
    price_per_hour: float | None = typer.Option(None, "--price-per-hour", help="What an hour of the machine "
                                                   "costs (any currency): gives money."),
    new_per_week: float | None = typer.Option(None, "--new-per-week", help="Share of the catalog that is new each "
                                                 "week, e.g. 0.02: gives the weekly upkeep."),
    calibrate: int = typer.Option(32, "--calibrate", help="Photos the CPU calibration embeds (2 to 10000)."),
    recalibrate: bool = typer.Option(False, "--recalibrate", help="Measure again instead of re-using the store's "
                                     "calibration."),
    benchmarks: str | None = typer.Option(None, "--benchmarks", help="Benchmark file with GPU figures "
                                             "\\[default: BENCHMARKS-gpu.json, then BENCHMARKS.json]."),
    fmt: str = FormatTableJsonOpt,
    store: str | None = StoreOpt,
) -> None:
    """What embedding N photos costs: time and money, vector and index storage, index build, weekly upkeep.

    The rate on the CPU comes from 'vrec embed' run on a few of your catalog's photos on this machine
    (kept in the store and re-used); on cuda from the GPU benchmark file. Every figure says its source.
    """
    from vrec.ingest import cost as c
    from vrec.report.render import new_table

    check_format(fmt, ("table", "json"))
    with err.status("calibrating on your photos"):
        est = c.estimate(images, model or ("siglip", "cnn"), device=device, precision=precision,
                         price_per_hour=price_per_hour, new_per_week=new_per_week, store=store,
                         calibrate_photos=calibrate, recalibrate=recalibrate, benchmarks=benchmarks)
    print_notes(est.notes)
    if fmt == "json":
        print(json.dumps(c.to_dict(est), indent=2))
        return
    for mc in est.models:
        t = new_table(f"{escape(mc.model)} ({mc.dim}-d) · {est.images:,} images · {est.device} {est.precision}")
        t.add_column("what", whole=True)
        t.add_column("figure", justify="right")
        t.add_column("source")
        for f in mc.figures:
            t.add_row(escape(f.what), escape(c.human(f)), escape(f.source))
        out.print(t)
