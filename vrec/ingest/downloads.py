"""Photos behind http(s) URLs: downloaded concurrently into a content cache on disk.

Product feeds list their photos as URLs on a CDN. ``PhotoCache`` downloads them with httpx, many
at once (``fetch_many``: asyncio, at most ``per_host`` requests to one host and ``connections`` in
all; a redirect to another host counts against the host of the URL asked for), and keeps each
body in a cache folder keyed by the URL::

    <folder>/<h[:2]>/<h>.img     the body, exactly as served (h = sha256 of the URL)
    <folder>/<h[:2]>/<h>.json    url, etag, last_modified, size, sha256, content_type, fetched

Both files are written to a temporary name and renamed over the final one only when whole (the
body first, then its sidecar), so an interrupted run (Ctrl-C, a crash) leaves no half photo under
a final name; the next run downloads what was missing and keeps what was complete. A body is
used only when its sidecar names the same URL and size.

What is refused (status "failed", with one short reason; nothing is cached, so a later run tries
again): an HTTP error status; a body that is no image whatever its Content-Type says (an HTML error
page served as image/jpeg; a JPEG served as application/octet-stream is fine); a body larger than
``max_bytes`` (refused from Content-Length before any of it is read, else when the stream passes
the limit); a body shorter than its Content-Length; more than ``max_redirects`` redirects, a
redirect loop, a redirect to something else than http(s); a server too slow (see ``timeout``).
Failures are returned, never raised.

Retries: 429, 500, 502, 503, 504, connection errors and truncated bodies are tried again up to
``retries`` times, a timeout only once (``MAX_TIMEOUT_RETRIES``: a stuck server holds a URL for two
timeouts, not four), after ``backoff * 2**n`` seconds plus a little jitter, or after the
server's ``Retry-After`` (seconds or an HTTP date), never more than ``MAX_RETRY_WAIT`` seconds.

Timeouts: ``timeout`` seconds to connect and to receive the response headers (redirects
included), and at most ``timeout`` seconds of silence between two pieces of the body; past
``timeout`` seconds a body must also arrive at ``MIN_RATE`` bytes a second on average, so a server
that trickles a few bytes at a time fails ("timed out after N s") rather than holding a
connection for ever.

Revalidation: with ``revalidate=True`` (the default) a cached photo is asked for again with
``If-None-Match`` / ``If-Modified-Since``. A 304 leaves the cached file untouched (status
"not-modified", same ``mtime_ns``); a 200 replaces it (status "downloaded"; when the new bytes
equal the cached ones the file is kept as it was, with the same ``mtime_ns``). When revalidation
fails, the server's answer decides: 404 or 410 say the photo is gone, so the cached copy is
deleted and the result is "failed"; any other failure (network errors, timeouts, 5xx or 429 after
retries, other 4xx such as an expired signed URL, a bad new body) keeps the cached copy, returned
with status "cached" and the failure in ``error``. With ``revalidate=False`` a cached photo is
returned at once, without a request.

The cache folder is ``default_cache_dir()`` unless one is given. Nothing is logged per photo
above DEBUG.
"""
from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import io
import json
import logging
import os
import random
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx

from vrec.base.errors import VrecError, check_number
from vrec.base.files import atomic_path, now, write_json
from vrec.ingest.catalog import MAX_PHOTO_BYTES

log = logging.getLogger("vrec")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
GONE_STATUSES = frozenset({404, 410})
MAX_RETRY_WAIT = 60.0  # seconds: the longest a Retry-After (or back-off) is waited for
MIN_RATE = 16 << 10  # bytes a second: past `timeout` seconds, a slower body is a timeout
SNIFF_BYTES = 64 << 10  # the head of a body that must show it is an image
STALE_TMP = 3600  # seconds: a temporary file this old belongs to no running download

# Magic numbers of the image formats product photos come in (Pillow decides for anything else)
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")


def default_cache_dir() -> Path:
    """Where downloaded photos are kept (unless ``vrec embed --cache`` says otherwise): ``photos`` under
    $VREC_CACHE_DIR (vrec's cache root, as for the ONNX text exports) if set, else the user cache
    folder's ``vrec/photos`` (platformdirs: ~/.cache/vrec/photos on Linux)."""
    if os.environ.get("VREC_CACHE_DIR"):
        return Path(os.environ["VREC_CACHE_DIR"]).expanduser() / "photos"
    import platformdirs

    return platformdirs.user_cache_path("vrec") / "photos"


def is_url(location: str) -> bool:
    """True for an http:// or https:// URL (any case), the locations ``PhotoCache`` downloads."""
    return str(location)[:8].lower().startswith(("http://", "https://"))


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be downloaded as it is written, or None."""
    if not is_url(url):
        return "not an http(s) URL"
    try:
        parsed = httpx.URL(url)
        parsed.host  # noqa: B018 - decodes an IDNA host, which may fail
    except (httpx.InvalidURL, ValueError) as e:
        return f"invalid URL ({str(e)[:100]})"
    if not parsed.raw_host:
        return "invalid URL (no host)"
    if parsed.port is not None and not 0 < parsed.port < 65536:
        return f"invalid URL (port {parsed.port})"
    return None


MAX_TIMEOUT_RETRIES = 1  # a URL that timed out is tried once more, not ``retries`` times


@dataclass
class Fetched:
    """What became of one URL."""

    url: str
    path: Path | None  # the cached body file when usable
    status: str  # "downloaded" | "not-modified" (304) | "cached" (no request, or one that failed) | "failed"
    error: str | None = None  # one short reason for a failure
    size: int = 0  # bytes of the cached body
    mtime_ns: int = 0  # the cached body's mtime: unchanged while the file is


class _Failure(Exception):
    """One attempt's failure: its reason, whether another attempt may succeed, and how long to wait."""

    def __init__(self, reason: str, *, retry: bool = False, wait: float | None = None, gone: bool = False):
        super().__init__(reason)
        self.reason, self.retry, self.wait, self.gone = reason, retry, wait, gone


class _Unchanged(Exception):
    """A new body with the same bytes as the cached one (its temporary file is dropped)."""


def size_text(n: int) -> str:
    """512 MB, 64 KB, 1000 bytes: a size limit as a person reads it."""
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20} MB"
    if n >= 1 << 10 and n % (1 << 10) == 0:
        return f"{n >> 10} KB"
    return f"{n} bytes"


def looks_like_image(head: bytes) -> bool:
    """Whether the first bytes of a body are an image's (magic numbers, else Pillow's own check)."""
    if head.startswith(_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return True
    if head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis", b"heic", b"heix", b"mif1"):
        return True
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(head)):
                return True
    except Exception:  # Pillow raises many kinds for bytes that are no image
        return False


def retry_after(value: str | None) -> float | None:
    """A Retry-After header's wait in seconds (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _content_length(response) -> int | None:
    try:
        n = int(response.headers.get("content-length", ""))
    except ValueError:
        return None
    return n if n >= 0 else None


def _content_type(response) -> str:
    return response.headers.get("content-type", "").split(";")[0].strip() or "no Content-Type"


def _transport_reason(e: Exception) -> str:
    """A short reason for an httpx transport error."""
    kinds = {httpx.ConnectError: "cannot connect", httpx.ReadError: "connection lost",
             httpx.WriteError: "connection lost", httpx.RemoteProtocolError: "broken response",
             httpx.ProxyError: "proxy error", httpx.UnsupportedProtocol: "unsupported URL"}
    kind = next((text for cls, text in kinds.items() if isinstance(e, cls)), "network error")
    detail = str(e).strip()
    return f"{kind} ({detail[:100]})" if detail else kind


class _Limits:
    """The overall and per-host request limits of one ``fetch_many`` (bound to its event loop)."""

    def __init__(self, per_host: int, connections: int):
        self.per_host = per_host
        self.total = asyncio.Semaphore(connections)
        self.hosts: dict[str, asyncio.Semaphore] = {}

    def host(self, url: str) -> asyncio.Semaphore:
        parsed = httpx.URL(url)
        host = f"{parsed.raw_host.decode('ascii', 'replace').lower()}:{parsed.port or ''}"
        if host not in self.hosts:
            self.hosts[host] = asyncio.Semaphore(self.per_host)
        return self.hosts[host]


class PhotoCache:
    """Downloads photos behind URLs into a cache folder (see the module docstring for the rules).

    The object holds settings only, so it can be pickled (to Ray workers) and used from several
    threads or processes at once: files are replaced atomically. ``fetch`` starts an event loop and
    an HTTP client per call; a worker with many URLs should call ``fetch_many`` on a batch.
    """

    def __init__(self, folder: str | os.PathLike | None = None, *, per_host: int = 8, connections: int = 32,
                 timeout: float = 30.0, retries: int = 3, max_bytes: int = MAX_PHOTO_BYTES,
                 max_redirects: int = 5, revalidate: bool = True, backoff: float = 0.5):
        check_number("per_host", per_host, min=1, integer=True)
        check_number("connections", connections, min=1, integer=True)
        check_number("timeout", timeout, min=0.001)
        check_number("retries", retries, min=0, integer=True)
        check_number("max_bytes", max_bytes, min=1, integer=True)
        check_number("max_redirects", max_redirects, min=0, integer=True)
        check_number("backoff", backoff, min=0)
        self.folder = Path(folder).expanduser() if folder is not None else default_cache_dir()
        self.per_host, self.connections = int(per_host), int(connections)
        self.timeout, self.retries, self.backoff = float(timeout), int(retries), float(backoff)
        self.max_bytes, self.max_redirects = int(max_bytes), int(max_redirects)
        self.revalidate = bool(revalidate)

    # --- the cache on disk ---------------------------------------------------------------------

    def _paths(self, url: str) -> tuple[Path, Path]:
        key = hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()
        base = self.folder / key[:2] / key
        return base.with_suffix(".img"), base.with_suffix(".json")

    def _meta(self, url: str) -> dict | None:
        """The sidecar of ``url``'s cached body, or None when missing, damaged or of another URL."""
        try:
            with open(self._paths(url)[1]) as f:
                meta = json.load(f)
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or meta.get("url") != url or not isinstance(meta.get("size"), int):
            return None
        return meta

    def lookup(self, url: str) -> Fetched | None:
        """What the cache holds for ``url`` (status "cached"), or None; makes no request."""
        url = str(url)
        meta = self._meta(url)
        if meta is None:
            return None
        body = self._paths(url)[0]
        try:
            st = os.stat(body)
        except OSError:
            return None
        if st.st_size != meta["size"]:  # a body replaced without its sidecar (a crash between the two)
            return None
        return Fetched(url, body, "cached", None, st.st_size, st.st_mtime_ns)

    def _sweep(self, url: str) -> None:
        """Remove ``url``'s temporary files left by a process killed outright (SIGKILL, power loss)
        more than ``STALE_TMP`` seconds ago; an interrupted run removes its own."""
        body = self._paths(url)[0]
        with contextlib.suppress(OSError):
            for tmp in body.parent.glob(f".{body.stem}.*.tmp"):
                with contextlib.suppress(OSError):
                    if time.time() - tmp.stat().st_mtime > STALE_TMP:
                        tmp.unlink()

    def _forget(self, url: str) -> None:
        for p in self._paths(url):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)

    # --- public entry points ---------------------------------------------------------------------

    def fetch(self, url: str) -> Fetched:
        """Download (or revalidate) one URL, synchronously."""
        return self.fetch_many([url])[str(url)]

    def fetch_many(self, urls: Iterable[str], progress: Callable[[int, int], None] | None = None,
                   on_result: Callable[[Fetched], None] | None = None) -> dict[str, Fetched]:
        """Download (or revalidate) ``urls`` concurrently; one ``Fetched`` per distinct URL, in their
        first order. ``progress(done, total)`` is called as each distinct URL is settled, and
        ``on_result(fetched)`` with its result (so a reader can use a photo before the rest are in).

        Works from synchronous code (its own event loop) and from a thread whose event loop is
        running (then in a worker thread); async code can await ``fetch_many_async`` instead.
        """
        urls = list(dict.fromkeys(str(u) for u in urls))
        if not urls:
            return {}
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.fetch_many_async(urls, progress, on_result))
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1, thread_name_prefix="vrec-downloads") as pool:
            return pool.submit(asyncio.run, self.fetch_many_async(urls, progress, on_result)).result()

    async def fetch_many_async(self, urls: Iterable[str], progress: Callable[[int, int], None] | None = None,
                               on_result: Callable[[Fetched], None] | None = None) -> dict[str, Fetched]:
        """``fetch_many`` for code that already runs an event loop."""
        urls = list(dict.fromkeys(str(u) for u in urls))
        results: dict[str, Fetched] = {}
        todo = []
        for url in urls:
            cached = None if self.revalidate or not is_url(url) else self.lookup(url)
            if cached is not None:
                results[url] = cached
                if on_result:
                    on_result(cached)
            else:
                todo.append(url)
        done, total = len(results), len(urls)
        if progress and done:
            progress(done, total)
        if todo:
            limits = _Limits(self.per_host, self.connections)
            timeouts = httpx.Timeout(self.timeout)
            pool = httpx.Limits(max_connections=self.connections, max_keepalive_connections=self.connections)
            async with httpx.AsyncClient(timeout=timeouts, limits=pool, follow_redirects=False) as client:
                queue, running = iter(todo), set()
                window = 4 * self.connections  # tasks alive at once: a feed of a million URLs is not a million tasks
                try:
                    while True:
                        for url in queue:
                            running.add(asyncio.ensure_future(self._fetch_one(client, limits, url)))
                            if len(running) >= window:
                                break
                        if not running:
                            break
                        finished, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                        for task in finished:
                            fetched = task.result()
                            results[fetched.url] = fetched
                            if on_result:
                                on_result(fetched)
                            done += 1
                            if progress:
                                progress(done, total)
                finally:  # an interruption (Ctrl-C, cancellation) stops every download, removing its temporary file
                    for task in running:
                        task.cancel()
                    await asyncio.gather(*running, return_exceptions=True)
        return {url: results[url] for url in urls}

    # --- one URL ---------------------------------------------------------------------------------

    async def _fetch_one(self, client, limits: _Limits, url: str) -> Fetched:
        problem = url_problem(url)
        if problem:
            return Fetched(url, None, "failed", problem)
        try:
            return await self._fetch_checked(client, limits, url)
        except Exception as e:  # failures are returned, never raised: what the cases below missed as well
            log.debug("photo failed unexpectedly: %s", url, exc_info=True)
            return Fetched(url, None, "failed", f"unexpected error ({type(e).__name__}: {str(e)[:100]})")

    async def _fetch_checked(self, client, limits: _Limits, url: str) -> Fetched:
        cached = self.lookup(url)
        if cached is not None and not self.revalidate:
            return cached
        meta = self._meta(url) if cached is not None else None
        failure = _Failure("not tried")
        started, timeouts = time.monotonic(), 0
        for attempt in range(self.retries + 1):
            try:
                async with limits.host(url), limits.total:  # the host's turn first: never hold a slot while queueing
                    fetched = await self._attempt(client, url, meta, cached)
                log.debug("photo %s: %s", fetched.status, url)
                return fetched
            except _Failure as f:
                failure = f
            except (OSError, VrecError, httpx.InvalidURL) as e:  # a full disk, an unwritable cache, a malformed URL
                failure = _Failure(str(e) or type(e).__name__)
            timeouts += failure.reason.startswith("timed out")
            if not failure.retry or attempt == self.retries or timeouts > MAX_TIMEOUT_RETRIES:
                break
            wait = failure.wait if failure.wait is not None else self.backoff * 2 ** attempt
            wait = min(wait, MAX_RETRY_WAIT)
            await asyncio.sleep(wait + random.uniform(0, 0.1 * wait + 0.01))
        if timeouts > 1:  # say how long the URL held the run, not one attempt's limit
            failure.reason += f"; {timeouts} tries, {time.monotonic() - started:.0f} s in all"
        return self._failed(url, cached, failure)

    def _failed(self, url: str, cached: Fetched | None, failure: _Failure) -> Fetched:
        log.debug("photo failed (%s): %s", failure.reason, url)
        if cached is None:
            return Fetched(url, None, "failed", failure.reason)
        if failure.gone:  # the server says the photo is no more: so is its cached copy
            self._forget(url)
            return Fetched(url, None, "failed", failure.reason)
        return Fetched(url, cached.path, "cached", failure.reason, cached.size, cached.mtime_ns)

    async def _attempt(self, client, url: str, meta: dict | None, cached: Fetched | None) -> Fetched:
        headers = {"Accept": "image/*,*/*;q=0.8", "Accept-Encoding": "identity"}
        if meta is not None:
            for name, key in (("If-None-Match", "etag"), ("If-Modified-Since", "last_modified")):
                if isinstance(meta.get(key), str) and meta[key]:
                    headers[name] = meta[key]
        response = await self._open(client, url, headers)
        try:
            code = response.status_code
            if code == 304 and cached is not None:
                return Fetched(url, cached.path, "not-modified", None, cached.size, cached.mtime_ns)
            if code in RETRY_STATUSES:
                raise _Failure(f"HTTP {code}", retry=True, wait=retry_after(response.headers.get("retry-after")))
            if code not in (200, 203):
                raise _Failure(f"HTTP {code}", gone=code in GONE_STATUSES)
            return await self._save(url, response, meta)
        finally:
            await response.aclose()

    async def _open(self, client, url: str, headers: dict):
        """The response to GET ``url`` once redirects are followed (its body not read yet)."""
        seen = [url]
        while True:
            request = client.build_request("GET", seen[-1], headers=headers)
            try:
                response = await asyncio.wait_for(client.send(request, stream=True), self.timeout)
            except (asyncio.TimeoutError, httpx.TimeoutException):
                raise _Failure(f"timed out after {self.timeout:g} s", retry=True) from None
            except httpx.UnsupportedProtocol as e:
                raise _Failure(_transport_reason(e)) from None
            except httpx.TransportError as e:
                raise _Failure(_transport_reason(e), retry=True) from None
            if not (response.is_redirect and response.headers.get("location")):
                return response
            await response.aclose()
            target = str(response.url.join(response.headers["location"]))
            if url_problem(target):
                raise _Failure(f"redirect to {url_problem(target)}: {target[:100]}")
            if target in seen:
                raise _Failure(f"redirect loop ({len(seen)} URLs)")
            if len(seen) > self.max_redirects:
                raise _Failure(f"too many redirects (more than {self.max_redirects})")
            seen.append(target)

    async def _save(self, url: str, response, meta: dict | None) -> Fetched:
        """Stream the body into the cache, checked; its sidecar after it."""
        length = _content_length(response)
        too_large = f"larger than {size_text(self.max_bytes)}"
        if length is not None and length > self.max_bytes:
            raise _Failure(too_large)
        body, sidecar = self._paths(url)
        self._sweep(url)
        digest, head, size = hashlib.sha256(), bytearray(), 0
        checked = False
        start = time.monotonic()
        try:
            with atomic_path(body) as tmp, open(tmp, "wb") as f:
                try:
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > self.max_bytes:
                            raise _Failure(too_large)
                        if not checked and len(head) < SNIFF_BYTES:
                            head += chunk[:SNIFF_BYTES - len(head)]
                        if not checked and len(head) >= SNIFF_BYTES:
                            self._check_image(bytes(head), response)
                            checked = True
                        f.write(chunk)
                        digest.update(chunk)
                        elapsed = time.monotonic() - start
                        if elapsed > self.timeout and size / elapsed < MIN_RATE:
                            raise _Failure(f"timed out after {self.timeout:g} s (too slow: {size / elapsed:.0f} bytes/s)",
                                           retry=True)
                except httpx.TimeoutException:
                    raise _Failure(f"timed out after {self.timeout:g} s", retry=True) from None
                except httpx.TransportError as e:
                    got = response.num_bytes_downloaded
                    if length is not None and got < length:
                        raise _Failure(f"truncated (got {got} of {length} bytes)", retry=True) from None
                    raise _Failure(_transport_reason(e), retry=True) from None
                if length is not None and response.num_bytes_downloaded < length:
                    raise _Failure(f"truncated (got {response.num_bytes_downloaded} of {length} bytes)", retry=True)
                if not checked:
                    self._check_image(bytes(head), response)
                if meta is not None and meta.get("sha256") == digest.hexdigest() and meta.get("size") == size:
                    raise _Unchanged
                f.flush()
                os.fsync(f.fileno())
        except _Unchanged:
            pass
        st = os.stat(body)
        write_json(sidecar, {"url": url, "etag": response.headers.get("etag"),
                             "last_modified": response.headers.get("last-modified"),
                             "size": st.st_size, "sha256": digest.hexdigest(),
                             "content_type": response.headers.get("content-type"),
                             "final_url": str(response.url), "fetched": now()})
        return Fetched(url, body, "downloaded", None, st.st_size, st.st_mtime_ns)

    @staticmethod
    def _check_image(head: bytes, response) -> None:
        if not head:
            raise _Failure("not an image (empty body)")
        if not looks_like_image(head):
            raise _Failure(f"not an image ({_content_type(response)})")
