"""A region of a query photo: "search only this part" (the page's crop, ``crop=x,y,w,h``).

The box is given in fractions of the photo's width and height (``0,0,0.5,1`` is its left half), so it
means the same region whatever size the photo was decoded or shrunk to.
"""
from __future__ import annotations

import math

from vrec.base.errors import QueryError

MIN_PIXELS = 8  # the smallest side of a cropped region, in pixels of the decoded photo
CROP_PATTERN = r"^\s*[0-9.eE+-]+\s*(,\s*[0-9.eE+-]+\s*){3}$"
CROP_HELP = ("Search only a region of the photo: x,y,w,h as fractions of its width and height "
             "(0,0,0.5,1 is its left half); absent: the whole photo.")


def parse_crop(text: str | None) -> tuple[float, float, float, float] | None:
    """The box ``x,y,w,h`` (fractions, 0 to 1) of a crop= value; None for none or blank; QueryError when it
    is not four numbers describing a region inside the photo."""
    if text is None or not text.strip():
        return None
    try:
        box = tuple(float(part) for part in text.split(","))
    except ValueError:
        box = ()
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        raise QueryError(f"crop={text!r} is not a region: give x,y,w,h as four fractions of the photo's width and "
                         "height, e.g. crop=0,0,0.5,1 for its left half.")
    x, y, w, h = box
    eps = 1e-6
    if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > 1 + eps or y + h > 1 + eps:
        raise QueryError(f"crop={text!r} reaches outside the photo: x and y from 0, w and h above 0, x+w and y+h "
                         "at most 1 (e.g. crop=0.25,0.25,0.5,0.5 for its middle).")
    return x, y, min(w, 1 - x), min(h, 1 - y)


def crop(picture, box: tuple[float, float, float, float] | None):
    """The region ``box`` (from parse_crop) of a PIL picture; the picture itself when box is None."""
    if box is None:
        return picture
    x, y, w, h = box
    width, height = picture.size
    left, top = round(x * width), round(y * height)
    right, bottom = min(width, round((x + w) * width)), min(height, round((y + h) * height))
    if right - left < MIN_PIXELS or bottom - top < MIN_PIXELS:
        raise QueryError(f"The region is {right - left}x{bottom - top} pixels of a {width}x{height} photo; choose a "
                         f"region of at least {MIN_PIXELS}x{MIN_PIXELS}.")
    return picture.crop((left, top, right, bottom))
