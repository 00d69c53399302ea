"""The A/B analysis as a report: .json, a self-contained .html page, or .md with an SVG chart of
the lifts beside it (the analysis itself is :mod:`vrec.experiments.ab_analysis`)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from vrec.base.files import atomic_path
from vrec.experiments.ab_analysis import LIFT_HEADER, Analysis, analysis_to_dict, lift_rows, summary_lines
from vrec.report import pages


def report_markdown(a: Analysis, chart_rel: str) -> str:
    lines = ["# vrec A/B analysis", ""]
    for line in summary_lines(a):
        lines += [f"**{line}**" if line.startswith("SAMPLE RATIO") else line, ""]
    lines += ["| " + " | ".join(LIFT_HEADER) + " |", "| --- | --- | " + " | ".join(["---:"] * (len(LIFT_HEADER) - 2)) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in lift_rows(a)]
    cup = [x for x in a.lifts if x.cuped]
    if cup:
        lines += ["", "CUPED removed " + ", ".join(f"{x.metric} {x.variance_reduction:.0%}" for x in cup
                                                  if x.arm == a.arms[1]) + " of the variance."]
    lines += ["", f"![lifts]({chart_rel})"]
    if a.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in a.notes]
    return "\n".join(lines) + "\n"


def write_report(a: Analysis, path: str | os.PathLike) -> list[str]:
    """Write the analysis as .json, .html (self-contained) or .md (with an SVG chart beside it).
    Returns the files written."""
    pages.check_report_path(path)
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".json":
        with atomic_path(p) as tmp:
            Path(tmp).write_text(json.dumps(analysis_to_dict(a), indent=2, allow_nan=False) + "\n", encoding="utf-8")
        return [str(p)]
    if suffix in (".html", ".htm"):
        pages.write_page(p, "vrec A/B analysis", pages.ab_html(a))
        return [str(p)]
    chart = p.with_name(p.stem + "_charts") / "lifts.svg"
    with atomic_path(chart) as tmp:
        Path(tmp).write_text(pages.ab_lifts_svg(a), encoding="utf-8")
    with atomic_path(p) as tmp:
        Path(tmp).write_text(report_markdown(a, f"{chart.parent.name}/{chart.name}"), encoding="utf-8")
    return [str(p), str(chart)]


def check_report(path: str | os.PathLike) -> None:
    """Refuse an unusable report path before the analysis (same rules as vrec eval's reports)."""
    pages.check_report_path(path)
