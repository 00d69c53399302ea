"""A product feed as a catalog source: its products' photos, on disk or behind http(s) URLs.

``vrec embed feed.csv`` reads the feed (``vrec.ingest.feeds``), and each product's photos become
photos of the store, with the product's id and their position (``PRODUCT/1`` is the main photo,
``PRODUCT/2`` the next...). Relative paths are relative to the feed's folder. Photos behind URLs
are downloaded into the photo cache (``vrec.ingest.downloads``) before the photos are read:
:meth:`FeedSource.prefetch` fetches them all concurrently (the local engine), and :meth:`read`
fetches a photo the cache lacks (Ray workers). A photo's size and modification time are those of
its cached copy, which a re-run's conditional request leaves untouched when the server says
"not modified": nothing is embedded again.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vrec.base.errors import CatalogError
from vrec.base.userfiles import describe
from vrec.ingest.catalog import ImageRef, Source, read_regular, stat_regular
from vrec.ingest.downloads import Fetched, is_url


@dataclass(frozen=True)
class FeedOptions:
    """How to read a feed whose columns vrec does not recognise (or to override those it does)."""

    id_column: str | None = None
    image_columns: tuple[str, ...] = ()
    group_column: str | None = None
    title_column: str | None = None
    cache: str | None = None  # where downloaded photos are kept [default: the user cache folder]

    def given(self) -> bool:
        return bool(self.id_column or self.image_columns or self.group_column or self.title_column)


class FeedSource(Source):
    """The photos of a product feed (one ImageRef per photo, with its product and position)."""

    def __init__(self, path: str | os.PathLike, options: FeedOptions = FeedOptions()):
        from vrec.ingest.feeds import read_feed

        feed = read_feed(path, id_column=options.id_column, image_columns=options.image_columns,
                         group_column=options.group_column, title_column=options.title_column)
        self.feed_file = str(path)
        self.root = str(Path(path).resolve().parent)
        self.options = options
        self.format = feed.format
        self.notes = list(feed.notes)
        if feed.without_photos:
            shown = ", ".join(map(repr, feed.without_photos[:5]))
            more = f" and {len(feed.without_photos) - 5} more" if len(feed.without_photos) > 5 else ""
            self.notes.append(f"{len(feed.without_photos)} product(s) of the feed have no photo and are left out: "
                              f"{shown}{more}.")
        self.metadata = feed.products if len(feed.products.columns) else None
        self._refs = [ImageRef(f"{p.product}/{p.position}", p.location, p.product, p.position) for p in feed.photos]
        self._cache = None
        self._pending: dict = {}  # URL -> threading.Event, set once its background download settled
        self._fetched: dict = {}  # URL -> Fetched, for the background downloads

    def refs(self) -> list[ImageRef]:
        return list(self._refs)

    @property
    def has_urls(self) -> bool:
        return any(is_url(r.path) for r in self._refs)

    def cache(self):
        """The photo cache (made on first use, also in a Ray worker after unpickling)."""
        if self._cache is None:
            from vrec.ingest.downloads import PhotoCache

            folder = self.options.cache
            if folder is not None and os.path.lexists(folder) and not os.path.isdir(folder):
                raise CatalogError(f"--cache {str(folder)!r} {describe(folder) or 'is a file'}, not a folder; pass a "
                                   "folder for the downloaded photos (it is created if missing).")
            cache = PhotoCache(folder)
            try:
                cache.folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise CatalogError(f"Cannot make the photo cache folder {str(cache.folder)!r} ({e.strerror or e}); pass "
                                   "--cache with a folder you can write to.") from None
            self._cache = cache
        return self._cache

    def __getstate__(self) -> dict:  # a client, its event loop and threads' events do not travel to workers
        return {**self.__dict__, "_cache": None, "_pending": {}, "_fetched": {}, "_downloads": None}

    def _local(self, ref: ImageRef) -> str:
        scheme = ref.path.split("://", 1)[0] if "://" in ref.path else ""
        if scheme or ref.path.lower().startswith(("javascript:", "data:")):
            raise OSError(errno.EINVAL, f"unsupported location {scheme or ref.path.split(':', 1)[0]!r}: photo "
                                        "locations in a feed are paths or http(s) URLs")
        return ref.path if os.path.isabs(ref.path) else str(Path(self.root) / ref.path)

    def peek(self, ref: ImageRef) -> tuple[int, int]:
        """``stat`` that never waits for a download: (0, 0) for a photo not in the cache yet, which
        then counts as new (or is read and hashed before deciding)."""
        if not is_url(ref.path):
            return self.stat(ref)
        got = self._settled(ref.path, wait=False)
        return (got.size, got.mtime_ns) if got is not None and got.path is not None else (0, 0)

    def stat(self, ref: ImageRef) -> tuple[int, int]:
        if not is_url(ref.path):
            st = stat_regular(self._local(ref))
            return st.st_size, st.st_mtime_ns
        got = self._settled(ref.path, wait=True)
        if got is None or got.path is None:
            return 0, 0  # not downloaded yet (a Ray worker fetches it on reading)
        return got.size, got.mtime_ns

    def read(self, ref: ImageRef) -> bytes:
        if not is_url(ref.path):
            return read_regular(self._local(ref))
        got = self._settled(ref.path, wait=True)
        if got is None:
            got = self.cache().fetch(ref.path)
        if got.path is None:
            raise OSError(errno.EIO, got.error or "download failed")
        return read_regular(got.path)

    def _settled(self, url: str, wait: bool):
        """The cached copy of a URL (None: not cached); with ``wait``, a download in progress first ends."""
        pending = self._pending.get(url) if self._pending else None
        if pending is not None:
            if not wait and not pending.is_set():
                return None
            pending.wait()
            got = self._fetched.get(url)
            return got if got is not None else Fetched(url, None, "failed", "the download did not finish")
        return self.cache().lookup(url)

    def prefetch(self, refs: Sequence[ImageRef], progress: Callable[[int, int], None] | None = None,
                 pipeline: bool = False) -> Prefetched:
        """Download every photo behind a URL (new ones, and changed ones by conditional requests).

        With ``pipeline``, only photos already cached are revalidated now; the others download on
        a background thread while the photos are embedded, ``read`` waiting for each one's turn.
        """
        urls = list(dict.fromkeys(r.path for r in refs if is_url(r.path)))
        report = Prefetched(total=len(urls))
        cached = [u for u in urls if not pipeline or self.cache().lookup(u) is not None]
        for url, got in self.cache().fetch_many(cached, progress=progress).items():
            report.count(got.status)
            if got.path is None:
                report.failed[url] = got.error or "download failed"
        revalidated = set(cached)
        later = [u for u in urls if u not in revalidated]
        if later:
            self._download_in_background(later, report)
        return report

    def _download_in_background(self, urls: list[str], report: Prefetched) -> None:
        """Fetch ``urls`` on a thread of their own, counting each outcome into ``report`` as it settles."""
        import threading

        self._fetched: dict = {}
        self._pending = {u: threading.Event() for u in urls}

        def settled(got) -> None:
            self._fetched[got.url] = got
            report.count(got.status)
            self._pending[got.url].set()

        loop = asyncio.new_event_loop()
        task = loop.create_task(self.cache().fetch_many_async(urls, on_result=settled))

        def run() -> None:
            try:
                loop.run_until_complete(task)
            except BaseException:  # cancelled by stop_downloads, or failed: the photos left fail
                pass
            finally:  # nothing waits forever (a photo without a result fails)
                for event in self._pending.values():
                    event.set()
                loop.close()

        self._downloads = (loop, task, threading.Thread(target=run, daemon=True, name="vrec-downloads"))
        self._downloads[2].start()

    def stop_downloads(self, timeout: float = 10.0) -> None:
        """Cancel the background downloads (Ctrl-C): each removes its temporary file; finished photos stay."""
        downloads = getattr(self, "_downloads", None)
        if downloads is None:
            return
        loop, task, thread = downloads
        if thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing left to stop
                loop.call_soon_threadsafe(task.cancel)
            thread.join(timeout)


def local_photo(info: dict, path: str) -> Path | None:
    """Where a stored photo lies on this machine: under the catalog root, at its absolute path, or (a
    photo behind a URL) its copy in the photo cache the store recorded (None when not cached).

    ``info`` is the store's ``store.json`` (``Store.info()``); nothing is downloaded here.
    """
    if is_url(path):
        from vrec.ingest.downloads import PhotoCache

        got = PhotoCache(info.get("photo_cache")).lookup(path)
        return None if got is None or got.path is None else Path(got.path)
    if os.path.isabs(path):
        return Path(path)
    root = str(info.get("root", ""))
    return None if "://" in root else Path(root) / path


@dataclass
class Prefetched:
    """What fetching a feed's photos did: counts per outcome, and the URLs that failed with why."""

    total: int = 0
    statuses: dict = field(default_factory=dict)  # downloaded / not-modified / cached / failed -> count
    failed: dict = field(default_factory=dict)  # url -> reason

    def count(self, status: str, n: int = 1) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + n

    def note(self) -> str | None:
        """One line for the user: how the photos behind URLs fared (read it once the run is over)."""
        if not self.total:
            return None
        parts = [f"{n} {s}" for s, n in sorted(self.statuses.items())]
        return f"photos behind URLs: {self.total} ({', '.join(parts)})."
