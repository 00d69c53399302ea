"""Render vrec's drawn test catalog: simple product pictures drawn with Pillow, deterministically.

Run ``python tests/data/drawn_catalog/render.py`` to (re)create the images and catalog.csv. No photo
from elsewhere is used: every picture is a silhouette of a product on a light studio background.
The unit tests use these (tests/conftest.py ``SAMPLE``); the demo's real photos are in sample_catalog/.
"""
from __future__ import annotations

import csv
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

SIZE = 256
HERE = Path(__file__).resolve().parent
COLOURS = {
    "red": (196, 30, 45),
    "black": (28, 28, 30),
    "navy": (24, 40, 92),
    "tan": (196, 150, 100),
    "green": (46, 120, 70),
    "pink": (230, 140, 170),
}
BASE_PRICE = {"bags": 120, "shoes": 90, "shirts": 40, "dresses": 80, "watches": 150}


def shade(c, f):
    return tuple(max(0, min(255, int(v * f))) for v in c)


def bag(d: ImageDraw.ImageDraw, c, style: str) -> None:
    if style == "tote":
        d.polygon([(70, 100), (186, 100), (206, 210), (50, 210)], fill=c)
        d.arc((90, 50, 166, 140), 180, 360, fill=shade(c, 0.7), width=8)
    elif style == "clutch":
        d.rounded_rectangle((48, 110, 208, 180), 14, fill=c)
        d.polygon([(48, 112), (208, 112), (128, 150)], fill=shade(c, 0.8))
        d.ellipse((122, 142, 134, 154), fill=(212, 175, 55))
    else:  # backpack
        d.rounded_rectangle((72, 70, 184, 214), 30, fill=c)
        d.rounded_rectangle((92, 140, 164, 200), 10, fill=shade(c, 0.8))
        d.arc((100, 40, 156, 100), 180, 360, fill=shade(c, 0.6), width=7)


def shoe(d, c, style: str) -> None:
    if style == "sneaker":
        d.polygon([(40, 170), (60, 120), (120, 110), (170, 140), (220, 150), (224, 180), (40, 182)], fill=c)
        d.rectangle((40, 180, 224, 196), fill=(245, 245, 245))
        for x in range(90, 140, 14):
            d.line((x, 122, x + 8, 140), fill=(240, 240, 240), width=3)
    elif style == "heel":
        d.polygon([(50, 130), (80, 120), (200, 170), (210, 186), (150, 186), (70, 150)], fill=c)
        d.polygon([(60, 140), (72, 140), (70, 206), (64, 206)], fill=shade(c, 0.6))
    else:  # boot
        d.polygon([(80, 40), (140, 40), (146, 150), (214, 170), (216, 200), (76, 200)], fill=c)
        d.rectangle((76, 196, 216, 206), fill=shade(c, 0.5))


def shirt(d, c, style: str) -> None:
    body = [(88, 60), (168, 60), (214, 96), (192, 124), (176, 112), (176, 214), (80, 214), (80, 112), (64, 124), (42, 96)]
    d.polygon(body, fill=c)
    if style == "polo":
        d.polygon([(108, 60), (128, 90), (148, 60)], fill=shade(c, 0.7))
        for y in (96, 112):
            d.ellipse((124, y, 132, y + 8), fill=(240, 240, 240))
    elif style == "striped":
        for y in range(74, 210, 18):
            d.line((82, y, 174, y), fill=(245, 245, 245), width=6)
    else:  # tee
        d.arc((104, 46, 152, 76), 0, 180, fill=shade(c, 0.6), width=5)


def dress(d, c, style: str) -> None:
    if style == "a-line":
        d.polygon([(104, 50), (152, 50), (160, 110), (212, 222), (44, 222), (96, 110)], fill=c)
    elif style == "sheath":
        d.polygon([(104, 44), (152, 44), (158, 110), (150, 226), (106, 226), (98, 110)], fill=c)
    else:  # wrap
        d.polygon([(100, 46), (156, 46), (164, 108), (196, 220), (60, 220), (92, 108)], fill=c)
        d.line((100, 46, 170, 150), fill=shade(c, 0.7), width=6)
        d.rectangle((94, 104, 162, 114), fill=shade(c, 0.75))


def watch(d, c, style: str) -> None:
    d.rounded_rectangle((108, 20, 148, 236), 8, fill=c)
    if style == "square":
        d.rounded_rectangle((82, 84, 174, 172), 12, fill=(200, 200, 205))
        d.rounded_rectangle((92, 94, 164, 162), 8, fill=(250, 250, 250))
    else:
        d.ellipse((78, 80, 178, 180), fill=(200, 200, 205))
        d.ellipse((88, 90, 168, 170), fill=(250, 250, 250) if style == "classic" else (20, 20, 24))
    hand = (30, 30, 30) if style != "sport" else (255, 120, 0)
    d.line((128, 130, 128, 100), fill=hand, width=4)
    d.line((128, 130, 150, 136), fill=hand, width=3)


PRODUCTS = {
    "bags": (bag, ["tote", "clutch", "backpack"]),
    "shoes": (shoe, ["sneaker", "heel", "boot"]),
    "shirts": (shirt, ["tee", "polo", "striped"]),
    "dresses": (dress, ["a-line", "sheath", "wrap"]),
    "watches": (watch, ["classic", "sport", "square"]),
}
NOUNS = {"bags": "bag", "shoes": "shoes", "shirts": "shirt", "dresses": "dress", "watches": "watch"}
SINGULAR = {"bags": "bag", "shoes": "shoe", "shirts": "shirt", "dresses": "dress", "watches": "watch"}


def render_all(out: Path = HERE) -> list[dict]:
    rng = random.Random(7)
    rows = []
    colours = list(COLOURS)
    for c_i, (category, (draw_fn, styles)) in enumerate(PRODUCTS.items()):
        for s_i, style in enumerate(styles):
            for j in range(4):
                colour = colours[(c_i + 2 * s_i + j) % len(colours)]
                bg = (238 + rng.randint(0, 12),) * 3
                img = Image.new("RGB", (SIZE, SIZE), bg)
                d = ImageDraw.Draw(img)
                draw_fn(d, COLOURS[colour], style)
                img = img.filter(ImageFilter.SMOOTH)
                pid = f"{SINGULAR[category]}-{style}-{colour}"
                folder = out / category
                folder.mkdir(parents=True, exist_ok=True)
                file = f"{category}/{pid}.jpg"
                img.save(out / file, quality=88, optimize=True)
                price = BASE_PRICE[category] + rng.randint(-20, 60)
                title = f"{colour.capitalize()} {style} {NOUNS[category]}"
                rows.append({"id": pid, "file": file, "title": title, "category": category,
                             "colour": colour, "style": style, "price": price})
    with open(out / "catalog.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return rows


if __name__ == "__main__":
    print(f"rendered {len(render_all())} products into {HERE}")
