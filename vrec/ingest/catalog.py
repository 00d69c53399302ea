"""Finding, reading and decoding catalog images, and joining product metadata.

These are the first stages of the embedding pipeline (find -> read -> decode -> preprocess):
plain functions over plain data, free of torch, so that threads, worker processes or a Ray
cluster can all call them.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import stat
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from vrec.base.errors import CatalogError
from vrec.base.userfiles import describe, kind_of
from vrec.ingest.metadata import FILE_COLUMNS, read_csv_file, read_parquet_file

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})

# Pillow warns above MAX_IMAGE_PIXELS (~89 Mpx) and only raises at twice that; a product photo
# is never that large, so refuse at the warning threshold.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
# A photo file is read whole into memory to be decoded: a file larger than this is no product photo
# (an 89-megapixel uncompressed RGBA TIFF, at Pillow's own limit, is 356 MB), so it is skipped unread.
MAX_PHOTO_BYTES = 512 << 20
DRAFT_MIN = 256  # JPEG draft decoding keeps at least this short side (above every 224-256 px model input)


@dataclass(frozen=True)
class ImageRef:
    """One photo of a catalog: its stable id, where it lies, and the product it shows."""

    id: str
    path: str  # relative to the catalog root, with forward slashes; or an absolute path or URL (feeds, lists)
    product: str = ""  # the product's id; "" for a product of this one photo (its id is the photo's)
    position: int = 1  # 1 = the product's main photo, then its further photos in order


class BadImage(Exception):
    """An image file that cannot be used; the message is the reason recorded in the store."""


def stat_regular(path: str | os.PathLike) -> os.stat_result:
    """``os.stat`` that refuses anything but a regular file (following symlinks).

    Reading a named pipe or a device called ``x.jpg`` would block forever, so such entries are
    refused with an OSError whose text says what they are; broken or looping symlinks raise
    OSError here too. Callers skip and list the file.
    """
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.EINVAL, f"not a regular file: {kind_of(st.st_mode)}")
    return st


def check_photo_size(size: int) -> None:
    """Refuse a file too large to be a photo before any of it is read (OSError, EFBIG)."""
    if size > MAX_PHOTO_BYTES:
        raise OSError(errno.EFBIG, f"{size / 1e9:.1f} GB, larger than any photo vrec reads "
                                   f"({MAX_PHOTO_BYTES >> 20} MB)")


def read_regular(path: str | os.PathLike) -> bytes:
    """A regular file's bytes; never blocks on a pipe or device that replaced the file meanwhile, and
    never reads a file too large to be a photo (``MAX_PHOTO_BYTES``)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"not a regular file: {kind_of(st.st_mode)}")
        check_photo_size(st.st_size)
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)


def find_images(root: str | os.PathLike) -> list[ImageRef]:
    """All images below ``root``, recursively, in a stable (sorted) order.

    Hidden folders (such as a ``.vrec`` store kept beside the photos) and hidden files are
    skipped (:func:`scan_images` also counts them). An image's id is its relative path without
    extension, so ``bags/tote-01.jpg`` is ``bags/tote-01``; where two files differ only by
    extension, both keep their extension to stay unique.
    """
    return scan_images(root)[0]


def scan_images(root: str | os.PathLike) -> tuple[list[ImageRef], Hidden]:
    """:func:`find_images`, plus what was skipped for being hidden (a name starting with '.')."""
    base = Path(root)
    if not base.is_dir():
        why = describe(base) or "is a file, not a folder"
        raise CatalogError(f"{str(root)!r} {why}; pass the folder that holds your product photos.")
    paths: list[str] = []
    hidden = Hidden()
    for dirpath, dirnames, filenames in os.walk(base):
        rel_dir = Path(dirpath).relative_to(base)
        hidden.folders += [(rel_dir / d).as_posix() for d in dirnames
                           if d.startswith(".") and _has_images(Path(dirpath, d))]
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                if name.startswith("."):
                    hidden.files += 1
                else:
                    paths.append((rel_dir / name).as_posix())
    return _refs_from_paths(sorted(paths)), hidden


def _has_images(folder: Path) -> bool:
    """Whether a folder holds image files itself (a hidden .thumbs does; .git or a vrec store do not)."""
    try:
        return any(Path(e.name).suffix.lower() in IMAGE_EXTENSIONS for e in os.scandir(folder))
    except OSError:
        return False


@dataclass
class Hidden:
    """Images and folders a scan skipped because their names start with '.' (vrec stores aside)."""

    files: int = 0
    folders: list = field(default_factory=list)

    def note(self) -> str | None:
        """One sentence for the user, or None when nothing was skipped."""
        parts = []
        if self.files:
            parts.append(f"{self.files} hidden image file{'s' if self.files != 1 else ''}")
        if self.folders:
            names = ", ".join(sorted(self.folders)[:3]) + (f" and {len(self.folders) - 3} more"
                                                          if len(self.folders) > 3 else "")
            parts.append(f"the hidden folder{'s' if len(self.folders) != 1 else ''} {names}")
        if not parts:
            return None
        return (f"Skipped {' and '.join(parts)} (names starting with '.'); rename them without the dot "
                "to embed them.")


# --- sources: where photos live ---------------------------------------------------------------

LIST_SUFFIXES = (".csv", ".parquet")


class Source:
    """Where a catalog's photos live. Picklable, so worker processes and Ray tasks can read too.

    ``root`` is what the store records as the catalog; item paths are relative to it (or absolute
    paths and URIs, for a list file).
    """

    root: str
    metadata = None  # a DataFrame keyed by id, when the source carries product data
    hidden = None  # a Hidden: what refs() skipped for a name starting with '.' (folders and URIs)

    def refs(self) -> list[ImageRef]:
        raise NotImplementedError

    def stat(self, ref: ImageRef) -> tuple[int, int]:
        """(size in bytes, modification time in ns): the cheap check before hashing."""
        raise NotImplementedError

    def read(self, ref: ImageRef) -> bytes:
        raise NotImplementedError


class FolderSource(Source):
    """A local folder, searched recursively."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.root = str(self.folder.resolve())

    def refs(self) -> list[ImageRef]:
        refs, self.hidden = scan_images(self.folder)
        return refs

    def stat(self, ref: ImageRef) -> tuple[int, int]:
        st = stat_regular(self.folder / ref.path)
        return st.st_size, st.st_mtime_ns

    def read(self, ref: ImageRef) -> bytes:
        return read_regular(self.folder / ref.path)


def _filesystem(uri: str):
    """A pyarrow filesystem and the path inside it for a URI (file://, s3://, gs://, ...)."""
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(uri)
    except (getattr(pafs, "ArrowInvalid", ValueError), OSError, ValueError) as e:  # noqa: B030  (pyarrow's own, where it has one)
        raise CatalogError(f"Cannot open {uri!r} ({e}); use a folder, or a file://, s3:// or gs:// URI.") from None


def _file_type():
    import pyarrow.fs as pafs

    return pafs.FileType


class FileSystemSource(Source):
    """A folder behind a URI that pyarrow filesystems understand (file://, s3://, gs://, hdfs://)."""

    def __init__(self, uri: str):
        self.uri = uri.rstrip("/")
        self.fs, self.base = _filesystem(self.uri)
        self.root = self.uri

    def refs(self) -> list[ImageRef]:
        import pyarrow.fs as pafs

        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.base, recursive=True))
        except (FileNotFoundError, OSError) as e:
            raise CatalogError(f"Cannot list {self.uri!r} ({e}).") from None
        self._stats = {}
        paths = []
        self.hidden = Hidden()
        for info in infos:
            rel = info.path[len(self.base):].lstrip("/")
            if info.type == pafs.FileType.File and Path(rel).suffix.lower() in IMAGE_EXTENSIONS:
                if any(part.startswith(".") for part in rel.split("/")):
                    self.hidden.files += 1
                    continue
                paths.append(rel)
                self._stats[rel] = (info.size, info.mtime_ns or 0)
        return _refs_from_paths(sorted(paths))

    def stat(self, ref: ImageRef) -> tuple[int, int]:
        if ref.path in getattr(self, "_stats", {}):
            return self._stats[ref.path]
        info = self.fs.get_file_info(f"{self.base}/{ref.path}")
        return info.size, info.mtime_ns or 0

    def read(self, ref: ImageRef) -> bytes:
        check_photo_size(self.stat(ref)[0])
        with self.fs.open_input_stream(f"{self.base}/{ref.path}") as f:
            return f.read(MAX_PHOTO_BYTES + 1)


class NotAList(CatalogError):
    """A CSV or parquet file without a column of photo paths: perhaps a product feed."""


class ListSource(Source):
    """A CSV or parquet file listing image paths (column ``path``; ``id``, ``product`` and metadata
    optional). With a ``product`` column, rows naming the same product are its photos, in file order;
    the metadata of a product is taken from its first row.

    Relative paths are relative to the list file's folder; absolute paths and URIs are kept.
    """

    def __init__(self, list_file: str | os.PathLike):
        self.list_file = Path(list_file)
        self.root = str(self.list_file.resolve().parent)
        self.notes: list[str] = []
        want = "give a CSV or parquet file listing the photos"
        if self.list_file.suffix.lower() == ".parquet":
            df = read_parquet_file(list_file, "List file", "list", want)
        else:
            df = read_csv_file(list_file, "List file", "list", want, self.notes, dtype={"id": str})
        col = next((c for c in df.columns if c.lower() in ("path",) + FILE_COLUMNS), None)
        if col is None:
            raise NotAList(f"List file {str(list_file)!r} needs a 'path' column with the image paths or URIs, or "
                           "the columns of a product feed (Google Merchant: id, image_link; Shopify: Handle, Image "
                           "Src; any other layout: --id-column and --image-column).")
        df = df.rename(columns={col: "path"})
        df["path"] = df["path"].astype(str)
        if "id" not in df.columns and "product" in df.columns:  # a product's photos: PRODUCT/1, PRODUCT/2, ...
            df["id"] = df["product"].astype(str) + "/" + (df.groupby("product", sort=False).cumcount() + 1).astype(str)
        if "id" not in df.columns:
            df["id"] = [r.id for r in _refs_from_paths(list(df["path"]), keep_order=True)]
        df["id"] = df["id"].astype(str)
        dup = df["id"][df["id"].duplicated()]
        if len(dup):
            raise CatalogError(f"List file {str(list_file)!r} names id {dup.iloc[0]!r} twice; ids must be unique.")
        self._paths = dict(zip(df["id"], df["path"]))
        self._products = {}
        if "product" in df.columns:  # several photos per product: one row per photo, the product's id on each
            df = df.assign(product=df["product"].astype(str), position=df.groupby("product", sort=False).cumcount() + 1)
            self._products = {i: (p, int(n)) for i, p, n in zip(df["id"], df["product"], df["position"])}
            df = df.drop(columns=["position"]).drop_duplicates("product").drop(columns=["id"]).rename(
                columns={"product": "id"})
        meta = df.drop(columns=["path"]).set_index("id")
        self.metadata = meta if len(meta.columns) else None

    def refs(self) -> list[ImageRef]:
        return [ImageRef(i, p, *self._products.get(i, ("", 1))) for i, p in sorted(self._paths.items())]

    def _where(self, ref: ImageRef):
        if "://" in ref.path:
            return _filesystem(ref.path)
        return None, str(Path(self.root) / ref.path)

    def stat(self, ref: ImageRef) -> tuple[int, int]:
        fs, path = self._where(ref)
        if fs is None:
            st = stat_regular(path)
            return st.st_size, st.st_mtime_ns
        info = fs.get_file_info(path)
        if info.type != _file_type().File:
            raise OSError(errno.ENOENT, "no such file" if info.type == _file_type().NotFound else "not a regular file")
        return info.size or 0, info.mtime_ns or 0

    def read(self, ref: ImageRef) -> bytes:
        fs, path = self._where(ref)
        if fs is None:
            return read_regular(path)
        check_photo_size(fs.get_file_info(path).size or 0)
        with fs.open_input_stream(path) as f:
            return f.read(MAX_PHOTO_BYTES + 1)


def _refs_from_paths(paths: list[str], keep_order: bool = False) -> list[ImageRef]:
    """Ids for paths: the path without extension, keeping the extension where two would clash."""
    stems: dict[str, int] = {}
    base = [p.split("://", 1)[-1].rsplit(".", 1)[0] if "://" in p else p.rsplit(".", 1)[0] for p in paths]
    base = [b.split("/")[-1] if ("://" in p or p.startswith("/")) else b for b, p in zip(base, paths)]
    for b in base:
        stems[b] = stems.get(b, 0) + 1
    return [ImageRef(id=b if stems[b] == 1 else p, path=p) for b, p in zip(base, paths)]


def content_hash(data: bytes) -> str:
    """A short content fingerprint: what incremental runs compare to find changed files."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


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
    with _decoding():
        img = _opened(data)
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


@contextlib.contextmanager
def _decoding():
    """Pillow's failures while decoding as one BadImage each, with a short reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImage(f"refused as a possible decompression bomb ({e})") from None
    except Image.UnidentifiedImageError:
        raise BadImage("not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise BadImage(f"damaged or truncated image ({e})") from None


def _opened(data: bytes) -> Image.Image:
    """The photo opened (not decoded yet) at its first frame; refused when empty or too many pixels."""
    if not data:
        raise BadImage("empty file")
    img = Image.open(io.BytesIO(data))
    if img.width * img.height > MAX_PIXELS:
        raise BadImage(f"too large ({img.width}x{img.height} pixels): refused as a possible decompression bomb")
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)
    return img


def decode_reduced(data: bytes, min_size: int = 0) -> Image.Image:
    """``decode_image`` for a long-lived server: the same upright RGB picture, never kept at full size.

    Right after decoding, a photo whose short side is at least twice ``max(DRAFT_MIN, min_size)``
    is shrunk by a whole factor (JPEG: while decoding, by draft mode, as decode_image does; other
    formats: ``Image.reduce``, a box filter) so that its short side stays at least that size --
    before the copies that orientation and colour conversion make. A 40-megapixel PNG thus costs
    one full-size buffer instead of three or four. Raises BadImage as decode_image does.
    """
    with _decoding():
        img = _opened(data)
        full, target = img.size, max(DRAFT_MIN, min_size)
        if img.format == "JPEG" and min(img.size) >= 2 * target:
            img.draft("RGB", (target, target))
        img.load()
        before = img.size
        ImageOps.exif_transpose(img, in_place=True)  # a copy only when the photo is rotated
        if img.size != before:
            full = full[::-1]
        img = to_rgb(_reduce(img, target))
        img.info["full_size"] = full
        return img


def _reduce(img: Image.Image, target: int) -> Image.Image:
    """The picture shrunk by the largest whole factor that keeps its short side >= target."""
    factor = min(img.size) // max(target, 1)
    if factor < 2:
        return img
    if img.mode == "1":
        img = img.convert("L")
    elif img.mode in ("P", "PA"):  # palette indexes cannot be averaged
        img = img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else "RGB")
    elif img.mode.startswith("I;16"):
        return img.convert("I").reduce(factor).convert("I;16")
    return img.reduce(factor)


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
        data = read_regular(path)
    except OSError as e:
        raise BadImage(f"cannot read {str(path)!r} ({e.strerror or e})") from None
    return decode_image(data, min_size=min_size)


def chunked(seq: Sequence, size: int) -> Iterable[Sequence]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]
