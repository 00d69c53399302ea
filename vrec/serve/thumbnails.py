"""Thumbnails of catalog photos for ``/thumb/ID``: by catalog id only, never a path a client names.

A request names an id, never a path: an item's id (in a catalog of products, a product's id: its
main photo) or a photo's id (``PRODUCT/3``, the photo a search result matched best). The id is
looked up in the snapshot, and the photo the store recorded for it is read only when
(``photo_path``, also the rule for photos inlined into a saved gallery):

- a path relative to the catalog folder (a photo folder, or a feed or list's relative paths) lies
  inside that folder once links are followed: a link or ``..`` leading out of it is refused;
- an absolute path is read as the store recorded it: only a feed or list file can name one, so it
  was written there by whoever ran ``vrec embed`` (never by a client), and it is the file that was
  embedded. Relative paths are never turned into absolute ones, so only paths stored as absolute
  are read outside the catalog folder;
- a photo behind an http(s) URL is read from the photo cache the store recorded
  (``vrec.ingest.feed_source.local_photo``); nothing is ever downloaded in a request, so a photo not
  cached on this machine is a 404 saying so. A remote catalog (``s3://...``) has no photos here.

Whatever the file, only a thumbnail decoded from it is sent (a file that is no photo is a 404), so
no bytes of a file are ever passed through. Photos are decoded as the catalog decodes them
(``vrec.ingest.catalog.decode_image``; one that cannot be read or decoded is a 404 with the reason;
in a server, through ``vrec.serve.decodes``: a few at a time, shrunk while decoding), shrunk to
``THUMB_SIZE`` pixels on the longest side and kept as JPEG bytes in a small LRU cache, keyed by the
photo's hash and mtime so a re-embedded photo gets a new thumbnail.
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

        row = self.find(snap, models, item_id)
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
    def find(snap: Snapshot, models: Sequence[str], item_id: str):
        """The row (id, path, hash, mtime...) of an item or product (its main photo), or of a photo by
        its own id, in the first of ``models`` that has it; UnknownItem when none does."""
        for model in models:
            pos = snap.position(model, item_id)
            if pos is not None:
                return snap.table(model).iloc[pos]
        for model in models:
            if snap.has_products(model):
                pos = snap.photo_position(model, item_id)
                if pos is not None:
                    return snap.photos(model).items().iloc[pos]
        raise UnknownItem(f"No item {item_id!r} in the store.")

    @staticmethod
    def photo_path(snap: Snapshot, stored: str, item_id: str) -> Path:
        """The photo's file on this machine by the rules above: inside the catalog folder (after
        following links), an absolute path as stored, or a photo behind a URL from the photo cache."""
        from vrec.ingest.feed_source import is_url, local_photo

        if not stored:
            raise UnknownItem(f"No photo for {item_id!r} in the catalog.")
        if is_url(stored):
            cached = local_photo(snap.info(), stored)
            if cached is None:
                raise UnknownItem(f"The photo of {item_id!r} is behind a URL and not in this machine's photo cache; "
                                  "run 'vrec embed' on the feed again to download it.")
            return cached
        if "://" in stored:
            raise UnknownItem(f"The photo of {item_id!r} is not on this machine (it lies at a remote address).")
        if Path(stored).is_absolute():  # named so by the feed or list that was embedded (see above)
            return Path(stored)
        root_text = str(snap.info().get("root", ""))
        if "://" in root_text:
            raise UnknownItem(f"The photo of {item_id!r} is not on this machine (the catalog is remote).")
        root = Path(root_text).resolve()
        path = (root / stored).resolve()
        if not path.is_relative_to(root):
            raise UnknownItem(f"The photo of {item_id!r} lies outside the catalog folder; it is not served.")
        return path
