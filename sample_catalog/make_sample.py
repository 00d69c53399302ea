"""Choose the demo catalog's real product photos and write catalog.csv, reproducibly.

    python sample_catalog/make_sample.py [SOURCE]

SOURCE is the shared "fashion-sample" data set (default: ../shared/datasets/fashion-sample next to
the repository): images/<id>.jpg and labels.csv. The photos come from the public "Fashion Product
Images" catalogue (Param Aggarwal, Kaggle, MIT licence; see LICENSE and README.md beside this file).

For each article type in PLAN, the script takes that many products, spreading them over the type's
colours (round robin: most common colour first, lowest product id first within a colour), and copies
the JPEGs unchanged to <type>/<id>.jpg. Re-running it with the same source gives the same files.
"""
from __future__ import annotations

import csv
import shutil
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parent.parent / "shared" / "datasets" / "fashion-sample"

# article type -> how many photos (several of each, so every query has neighbours of its own kind)
PLAN = {
    "Tshirts": 12, "Shirts": 12, "Tops": 10, "Kurtas": 8, "Dresses": 8, "Jeans": 8,
    "Casual Shoes": 10, "Sports Shoes": 10, "Heels": 10,
    "Handbags": 12, "Backpacks": 8, "Wallets": 8, "Belts": 8,
    "Watches": 12, "Sunglasses": 10,
}
COLUMNS = ["id", "file", "title", "category", "group", "colour", "gender", "usage", "season", "year"]


def folder_name(article_type: str) -> str:
    return article_type.lower().replace(" ", "-")


def choose(rows: list[dict], n: int) -> list[dict]:
    """n rows spread over colours: one of each colour in turn, most common colour first."""
    by_colour: dict[str, list[dict]] = defaultdict(list)
    for r in sorted(rows, key=lambda r: int(r["id"])):
        by_colour[r["baseColour"]].append(r)
    order = sorted(by_colour, key=lambda c: (-len(by_colour[c]), c))
    picked: list[dict] = []
    while len(picked) < n and any(by_colour.values()):
        for c in order:
            if by_colour[c] and len(picked) < n:
                picked.append(by_colour[c].pop(0))
    if len(picked) < n:
        raise SystemExit(f"only {len(picked)} {rows[0]['articleType']} photos in the source; PLAN asks for {n}")
    return sorted(picked, key=lambda r: int(r["id"]))


def main(source: Path = DEFAULT_SOURCE) -> list[dict]:
    labels = source / "labels.csv"
    if not labels.is_file():
        raise SystemExit(f"{labels} not found; pass the fashion-sample folder (images/ and labels.csv).")
    with open(labels, newline="", encoding="utf-8") as f:
        by_type: dict[str, list[dict]] = defaultdict(list)
        for r in csv.DictReader(f):
            by_type[r["articleType"]].append(r)
    for old in HERE.glob("*/*.jpg"):  # the previous choice; everything else here stays
        old.unlink()
    out = []
    for article_type, n in PLAN.items():
        folder = HERE / folder_name(article_type)
        folder.mkdir(exist_ok=True)
        for r in choose(by_type[article_type], n):
            file = f"{folder.name}/{r['id']}.jpg"
            shutil.copyfile(source / "images" / f"{r['id']}.jpg", HERE / file)
            out.append({"id": r["id"], "file": file, "title": r["productDisplayName"].strip(),
                        "category": article_type, "group": r["subCategory"], "colour": r["baseColour"],
                        "gender": r["gender"], "usage": r["usage"], "season": r["season"], "year": r["year"]})
    for empty in (d for d in HERE.iterdir() if d.is_dir() and not any(d.iterdir())):
        empty.rmdir()
    with open(HERE / "catalog.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(out)
    return out


if __name__ == "__main__":
    rows = main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SOURCE)
    size = sum((HERE / r["file"]).stat().st_size for r in rows)
    print(f"{len(rows)} photos ({size / 1e6:.1f} MB) in {len(PLAN)} article types, and catalog.csv, in {HERE}")
