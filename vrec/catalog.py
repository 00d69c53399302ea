"""Finding, reading and decoding catalog images, and joining product metadata.

These are the first stages of the embedding pipeline (find -> read -> decode -> preprocess):
plain functions over plain data, free of torch, so that threads, worker processes or a Ray
cluster can all call them.
"""
from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageFile, ImageOps

from .errors import CatalogError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})

# Pillow warns above MAX_IMAGE_PIXELS (~89 Mpx) and only raises at twice that; a product photo
# is never that large, so refuse at the warning threshold.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
DRAFT_MIN = 448  # JPEG draft decoding keeps at least this short side (2x a 224 model input)


@dataclass(frozen=True)
class ImageRef:
    """One image file of a catalog: its stable id and where it lies."""

    id: str
    path: str  # relative to the catalog root, with forward slashes


class BadImage(Exception):
    """An image file that cannot be used; the message is the reason recorded in the store."""


def find_images(root: str | os.PathLike) -> list[ImageRef]:
    """All images below ``root``, recursively, in a stable (sorted) order.

    Hidden folders (such as a ``.vrec`` store kept beside the photos) are skipped. An image's id
    is its relative path without extension, so ``bags/tote-01.jpg`` is ``bags/tote-01``; where two
    files differ only by extension, both keep their extension to stay unique.
    """
    base = Path(root)
    if not base.exists():
        raise CatalogError(f"Folder {str(root)!r} does not exist; pass the folder that holds your product photos.")
    if not base.is_dir():
        raise CatalogError(f"{str(root)!r} is not a folder; pass the folder that holds your product photos.")
    paths: list[str] = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = Path(dirpath).relative_to(base)
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                paths.append((rel_dir / name).as_posix())
    paths.sort()
    stems: dict[str, int] = {}
    for p in paths:
        stem = p.rsplit(".", 1)[0]
        stems[stem] = stems.get(stem, 0) + 1
    return [ImageRef(id=p.rsplit(".", 1)[0] if stems[p.rsplit(".", 1)[0]] == 1 else p, path=p) for p in paths]


def content_hash(data: bytes) -> str:
    """A short content fingerprint: what incremental runs compare to find changed files."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def read_bytes(root: str | os.PathLike, ref: ImageRef) -> bytes:
    with open(Path(root) / ref.path, "rb") as f:
        return f.read()


def decode_image(data: bytes, min_size: int = 0) -> Image.Image:
    """Decode bytes into an upright 8-bit RGB picture, the way a shopper would see it.

    EXIF orientation is applied; transparency is composited on white (product cut-outs would
    otherwise turn black); CMYK, 16-bit, palette and greyscale become RGB; animations give their
    first frame. With ``min_size``, a JPEG much larger than that is decoded at reduced scale
    (JPEG draft mode), which is several times faster and loses nothing the model would see. The
    draft size does not depend on ``min_size`` below DRAFT_MIN, so a photo decodes the same
    whichever models share the decode.
    Raises BadImage with a short reason for anything unusable.
    """
    if not data:
        raise BadImage("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if img.width * img.height > MAX_PIXELS:
                raise BadImage(f"too large ({img.width}x{img.height} pixels): refused as a possible decompression bomb")
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            full = img.size
            target = max(DRAFT_MIN, min_size)
            if min_size and img.format == "JPEG" and min(img.size) >= 2 * target:
                img.draft("RGB", (target, target))
            img.load()
            before = img.size
            img = ImageOps.exif_transpose(img)
            if img.size != before:  # rotated upright by EXIF: width and height swap
                full = full[::-1]
            img = to_rgb(img)
            img.info["full_size"] = full  # the photo's upright size before any draft-mode scaling
            return img
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImage(f"refused as a possible decompression bomb ({e})") from None
    except Image.UnidentifiedImageError:
        raise BadImage("not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise BadImage(f"damaged or truncated image ({e})") from None


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB, compositing transparency on white."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        a = np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def load_image(path: str | os.PathLike, min_size: int = 0) -> Image.Image:
    """Open one image file as RGB (for queries); raises BadImage when it cannot be used."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise BadImage(f"cannot read {str(path)!r} ({e.strerror})") from None
    return decode_image(data, min_size=min_size)


# --- product metadata -------------------------------------------------------------------------

FILE_COLUMNS = ("file", "filename", "path", "image", "image_path")


def read_metadata(csv_path: str | os.PathLike, refs: Sequence[ImageRef]) -> tuple["pd.DataFrame", dict]:
    """Read a product CSV and key it by item id.

    Rows are matched by an ``id`` column equal to the item id (the file name without extension),
    or by a file column (``file``, ``filename``, ``path``, ``image``) equal to the relative path
    or the file name. Returns the table indexed by ``id`` and a small report of what matched.
    """
    import pandas as pd

    try:
        df = pd.read_csv(csv_path, dtype={"id": str})
    except FileNotFoundError:
        raise CatalogError(f"Metadata file {str(csv_path)!r} does not exist.") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise CatalogError(f"Cannot read metadata file {str(csv_path)!r} as CSV ({e}).") from None
    ids = {r.id for r in refs}
    by_path = {r.path: r.id for r in refs}
    by_name: dict[str, str] = {}
    for r in refs:
        by_name.setdefault(Path(r.path).name, r.id)
    file_col = next((c for c in df.columns if c.lower() in FILE_COLUMNS), None)
    keys = None
    if file_col is not None:
        f = df[file_col].astype(str).str.replace("\\", "/", regex=False)
        keys = f.map(lambda s: by_path.get(s) or by_path.get(s.lstrip("./")) or by_name.get(Path(s).name))
    if "id" in df.columns:
        id_keys = df["id"].astype(str).where(df["id"].astype(str).isin(ids))
        keys = id_keys if keys is None else keys.fillna(id_keys)
    if keys is None:
        raise CatalogError(
            f"Metadata file {str(csv_path)!r} needs an 'id' column (the file name without extension) "
            f"or a file column ({', '.join(FILE_COLUMNS)})."
        )
    df = df.drop(columns=[c for c in ("id",) if c in df.columns])
    df.insert(0, "id", keys)
    unmatched = int(df["id"].isna().sum())
    df = df.dropna(subset=["id"]).drop_duplicates(subset=["id"], keep="last").set_index("id")
    report = {"rows": int(len(df) + unmatched), "matched": int(len(df)), "unmatched_rows": unmatched,
              "items_without_metadata": int(len(ids - set(df.index)))}
    return df, report


def chunked(seq: Sequence, size: int) -> Iterable[Sequence]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]
