"""Uploaded photos kept for a while, so a photo search has an address: ``/?photo=ID`` reloads it and
can be shared while the server runs.

Each upload, decoded and reduced to what the models need (``vrec.serve.decodes``), is kept under a
random id for ``KEEP_SECONDS``, as JPEG bytes (a few tens of kilobytes, not the megabytes of the
decoded picture); at most ``KEEP_PHOTOS`` are kept, the least recently used leaving first, so memory
stays bounded and small. Nothing is written to disk: a restart forgets them, and the page then asks
for the photo again.
"""
import io
import secrets
import threading
import time
from collections import OrderedDict

KEEP_PHOTOS = 32
KEEP_SECONDS = 30 * 60


class Uploads:
    """Recent uploads by id: (name, picture), each for KEEP_SECONDS at most, KEEP_PHOTOS at most."""

    def __init__(self, photos: int = KEEP_PHOTOS, seconds: float = KEEP_SECONDS):
        self.photos, self.seconds = photos, seconds
        self._kept: OrderedDict = OrderedDict()  # id -> (time kept, name, picture)
        self._lock = threading.Lock()

    def keep(self, name: str, picture) -> str:
        """Keep an uploaded picture (a PIL image); returns its id (unguessable: an address shares only
        what it names)."""
        photo_id = secrets.token_urlsafe(9)
        data = _jpeg(picture)
        with self._lock:
            self._kept[photo_id] = (time.monotonic(), name, data)
            self._forget_old()
        return photo_id

    def get(self, photo_id: str):
        """(name, picture) of a kept upload, or None when it is unknown or expired."""
        with self._lock:
            self._forget_old()
            kept = self._kept.get(photo_id)
            if kept is None:
                return None
            self._kept.move_to_end(photo_id)
        from PIL import Image

        return kept[1], Image.open(io.BytesIO(kept[2])).convert("RGB")

    def _forget_old(self) -> None:
        now = time.monotonic()
        for photo_id in [i for i, (t, _, _) in self._kept.items() if now - t > self.seconds]:
            del self._kept[photo_id]
        while len(self._kept) > self.photos:
            self._kept.popitem(last=False)


def _jpeg(picture) -> bytes:
    buf = io.BytesIO()
    picture.convert("RGB").save(buf, format="JPEG", quality=92)
    return buf.getvalue()
