"""Photo decodes in a long-lived server: a pixel cap, a few at a time, memory given back.

A compressed photo can be tiny and its pixels huge: a 79 KB PNG of 9000x9000 pixels decodes to
243 MB of RGB, and every copy made on the way (orientation, colour conversion) costs as much
again. A command pays that once and exits; a server would pay it per request, in parallel, and
-- since glibc keeps freed memory in per-thread arenas -- keep it. So ``Decodes``:

- refuses an upload of more than ``max_pixels`` pixels (default ``MAX_UPLOAD_PIXELS``) from its
  header alone, before anything is decoded (``TooManyPixels``: HTTP 413);
- decodes at most ``DECODE_SLOTS`` photos at a time; a request waits for a slot up to
  ``DECODE_WAIT`` seconds, then gets ``Busy`` (HTTP 503);
- decodes with ``vrec.ingest.catalog.decode_reduced``: a large photo is shrunk right after decoding
  (JPEG: while decoding), so one full-size buffer is the most a decode holds;
- hands freed memory back to the system after a large decode (glibc's ``malloc_trim``).
"""
from __future__ import annotations

import contextlib
import ctypes
import io
import threading

from vrec.base.errors import QueryError, VrecError

MAX_UPLOAD_PIXELS = 40_000_000  # 40 megapixels: above any product photo, far below a decompression bomb
DECODE_SLOTS = 2  # photos decoded at once (decoding is CPU-bound; each may hold one full-size buffer)
DECODE_WAIT = 60.0  # seconds a request waits for a decode slot before it is answered 503
TRIM_ABOVE = 2_000_000  # pixels: after decoding a larger photo, freed memory goes back to the system


class TooManyPixels(QueryError):
    """An upload with more pixels than the server decodes (HTTP 413)."""


class Busy(VrecError):
    """Every decode slot stayed taken for DECODE_WAIT seconds (HTTP 503)."""


def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc; elsewhere there is nothing to trim
    except (OSError, AttributeError):
        return None


_TRIM = _malloc_trim()


def give_back_memory() -> None:
    """Return the memory freed by a large decode to the system (glibc keeps it otherwise)."""
    if _TRIM is not None:
        _TRIM(0)


def megapixels(n: int) -> str:
    return f"{n / 1e6:.3g}"


class Decodes:
    """Photo decodes of a server: capped in pixels, a few at a time, their memory given back."""

    def __init__(self, max_pixels: int = MAX_UPLOAD_PIXELS, slots: int = DECODE_SLOTS, wait: float = DECODE_WAIT):
        self.max_pixels, self.wait = int(max_pixels), float(wait)
        self._slots = threading.BoundedSemaphore(slots)

    @contextlib.contextmanager
    def slot(self):
        """One decode slot, waited for up to ``wait`` seconds (then Busy)."""
        if not self._slots.acquire(timeout=self.wait):
            raise Busy("The server is busy decoding other photos; try again in a moment.")
        try:
            yield
        finally:
            self._slots.release()

    def upload(self, read, min_size: int, name: str):
        """An uploaded photo, decoded (reduced) in a slot: ``read()`` gives its bytes, read only once a
        slot is free, so waiting requests hold no photo in memory. QueryError when it is no image."""
        from vrec.ingest.catalog import BadImage, decode_reduced

        with self.slot():
            data = read()
            pixels = self.check(data)
            try:
                return decode_reduced(data, min_size=min_size)
            except BadImage as e:
                raise QueryError(f"Cannot use {name!r} as a query image: {e}.") from None
            finally:
                del data
                if pixels > TRIM_ABOVE:
                    give_back_memory()

    def photo(self, data: bytes, min_size: int):
        """A catalog photo (a thumbnail's source), decoded (reduced) in a slot; BadImage when it cannot be."""
        from vrec.ingest.catalog import decode_reduced

        with self.slot():
            pixels = self.pixels(data) or 0
            try:
                return decode_reduced(data, min_size=min_size)
            finally:
                if pixels > TRIM_ABOVE:
                    give_back_memory()

    def check(self, data: bytes) -> int:
        """The photo's pixel count from its header; TooManyPixels above the cap."""
        from vrec.ingest.catalog import MAX_PIXELS

        n = self.pixels(data)
        if n is None or n > self.max_pixels:
            size = (f"{megapixels(n)} megapixels" if n is not None else
                    f"more than {megapixels(2 * MAX_PIXELS)} megapixels (a possible decompression bomb)")
            raise TooManyPixels(
                f"The photo has {size}, more than this server's limit of {megapixels(self.max_pixels)} megapixels; "
                f"send a smaller photo (or start vrec serve with a larger --max-upload-pixels).")
        return n

    @staticmethod
    def pixels(data: bytes) -> int | None:
        """Width x height from the header alone: 0 when it is no image Pillow knows (decoding says why),
        None when Pillow refuses to open it as a decompression bomb."""
        import warnings

        from PIL import Image

        try:  # Pillow refuses to open more than twice its MAX_IMAGE_PIXELS
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(io.BytesIO(data)) as img:
                    return int(img.width) * int(img.height)
        except Image.DecompressionBombError:
            return None
        except Exception:  # noqa: BLE001  (not an image, or a damaged header: decode_reduced says which)
            return 0
