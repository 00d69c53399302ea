"""Thumbnails of catalog photos for ``/thumb/ID``: by catalog id only, never from outside the catalog.

A request names an item id, never a path: the id is looked up in the snapshot, and its photo is
read only when it lies inside the catalog folder once links are followed (``photo_path``, also
the rule for photos inlined into a saved gallery). Photos are decoded as the catalog decodes
them (``vrec.ingest.catalog.decode_image``; one that cannot be read or decoded is a 404 with the reason;
in a server, through ``vrec.serve.decodes``: a few at a time, shrunk while decoding), shrunk to ``THUMB_SIZE`` pixels on the longest side and kept as JPEG bytes in a small LRU cache,
keyed by the photo's hash and mtime so a re-embedded photo gets a new thumbnail.
"""
import io
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from vrec.base.errors import UnknownItem
from vrec.serve.live import Snapshot

THUMB_SIZE = 384  # longest side of /thumb/ pictures, in pixels
THUMB_CACHE = 512  # thumbnails kept in memory (about 30 KB each)


class Thumbnails:
    """Resized JPEGs of catalog photos, by catalog id only, kept in a small LRU cache."""

    def __init__(self, size: int = THUMB_SIZE, capacity: int = THUMB_CACHE, decodes=None):
        self.size, self.capacity, self.decodes = size, capacity, decodes
        self._cache: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, snap: Snapshot, models: Sequence[str], item_id: str) -> bytes:
        from vrec.ingest.catalog import BadImage, decode_image, read_regular

        for model in models:
            pos = snap.position(model, item_id)
            if pos is not None:
                row = snap.table(model).iloc[pos]
                break
        else:
            raise UnknownItem(f"No item {item_id!r} in the store.")
        key = (item_id, str(row["hash"]), str(row["mtime"]))
        with self._lock:
            data = self._cache.get(key)
            if data is not None:
                self._cache.move_to_end(key)
                return data
        path = self.photo_path(snap, str(row["path"]), item_id)
        try:
            data = read_regular(path)
            img = self.decodes.photo(data, self.size) if self.decodes else decode_image(data, min_size=self.size)
        except OSError as e:
            raise UnknownItem(f"The photo of {item_id!r} is no longer readable ({e.strerror or e}).") from None
        except BadImage as e:
            raise UnknownItem(f"The photo of {item_id!r} cannot be shown: {e}.") from None
        img.thumbnail((self.size, self.size))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=85)
        data = buf.getvalue()
        with self._lock:
            self._cache[key] = data
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return data

    @staticmethod
    def photo_path(snap: Snapshot, rel: str, item_id: str) -> Path:
        """The photo's file, only when it lies inside the catalog folder (after following links)."""
        root_text = str(snap.info().get("root", ""))
        if "://" in root_text:
            raise UnknownItem(f"The photo of {item_id!r} is not on this machine (the catalog is remote).")
        root = Path(root_text).resolve()
        if not rel or Path(rel).is_absolute():
            raise UnknownItem(f"No photo for {item_id!r} in the catalog.")
        path = (root / rel).resolve()
        if not path.is_relative_to(root):
            raise UnknownItem(f"The photo of {item_id!r} lies outside the catalog folder; it is not served.")
        return path
