"""Photos behind URLs (vrec/ingest/downloads.py) against a real HTTP server on 127.0.0.1, its faults
injected by path: errors, retries, Retry-After, timeouts, truncated and oversized bodies, wrong
content types, redirects, conditional requests, per-host limits, and an interrupted run."""
from __future__ import annotations

import asyncio
import email.utils
import http.server
import io
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vrec.ingest.downloads import Fetched, PhotoCache, default_cache_dir, is_url, retry_after

ROOT = Path(__file__).resolve().parents[1]
LAST_MODIFIED = email.utils.formatdate(time.time() - 3600, usegmt=True)


def jpeg(colour=(200, 30, 30), size=(32, 24)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG")
    return buf.getvalue()


def noisy_png(side=64) -> bytes:
    """A PNG of a few KB that does not compress (for the size limits)."""
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


PHOTO = jpeg()
BIG = noisy_png()
HTML = b"<!DOCTYPE html><html><body><h1>Service unavailable</h1></body></html>"


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.hits: dict[str, list[float]] = defaultdict(list)  # path -> request times
        self.bodies: dict[str, int] = defaultdict(int)  # path -> full bodies sent
        self.headers_seen: dict[str, list[dict]] = defaultdict(list)
        self.active = self.most_active = 0
        self.versions: dict[str, bytes] = {}
        self.release = threading.Event()  # lets /interrupt send the rest of its body
        self.half_sent = threading.Event()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def handle_error(self, request, client_address):  # a client gone mid-body: expected here
        pass


class Handler(http.server.BaseHTTPRequestHandler):
    server: Server

    def log_message(self, *args):
        pass

    def send(self, code=200, body=b"", ctype="image/jpeg", headers=(), length=None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        if length is not False:
            self.send_header("Content-Length", str(len(body) if length is None else length))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        if code == 200 and body:
            with self.server.lock:
                self.server.bodies[self.path] += 1

    def do_GET(self):
        s, path = self.server, self.path
        with s.lock:
            s.hits[path].append(time.monotonic())
            s.headers_seen[path].append(dict(self.headers))
            n = len(s.hits[path])
        if not path.startswith("/slowok/"):
            return self.route(path, n)
        with s.lock:  # concurrency is counted on /slowok/ alone (other tests' slow handlers may linger)
            s.active += 1
            s.most_active = max(s.most_active, s.active)
        try:
            return self.route(path, n)
        finally:
            with s.lock:
                s.active -= 1

    def route(self, path, n):
        s = self.server
        if path.startswith("/ok/"):
            etag = f'"{path}"'
            if self.headers.get("If-None-Match") == etag:
                return self.send(304, length=False, headers=[("ETag", etag)])
            return self.send(body=PHOTO, headers=[("ETag", etag)])
        if path.startswith("/lm/"):
            if self.headers.get("If-Modified-Since") == LAST_MODIFIED:
                return self.send(304, length=False)
            return self.send(body=PHOTO, headers=[("Last-Modified", LAST_MODIFIED)])
        if path.startswith("/versioned/"):
            body = s.versions.get(path)
            return self.send(404, b"gone", "text/plain") if body is None else self.send(body=body)
        if path.startswith("/slowok/"):
            time.sleep(0.2)
            return self.send(body=PHOTO)
        if path == "/missing.jpg":
            return self.send(404, b"not found", "text/plain")
        if path == "/flaky.jpg":
            return self.send(500, b"oops", "text/plain") if n == 1 else self.send(body=PHOTO)
        if path == "/always500.jpg":
            return self.send(503, b"oops", "text/plain")
        if path == "/ratelimited.jpg":
            return self.send(429, b"slow down", "text/plain", headers=[("Retry-After", "1")]) if n == 1 else self.send(body=PHOTO)
        if path == "/slow.jpg":
            time.sleep(3)
            return self.send(body=PHOTO)
        if path == "/trickle.jpg":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(PHOTO)))
            self.end_headers()
            for i in range(0, 30):
                self.wfile.write(PHOTO[i:i + 1])
                self.wfile.flush()
                time.sleep(0.1)
            return None
        if path == "/truncated.jpg":
            self.send(body=BIG[:1000], length=len(BIG))
            self.close_connection = True
            return None
        if path == "/jpeg-as-text.txt":
            return self.send(body=PHOTO, ctype="text/plain")
        if path == "/jpeg-as-octets":
            return self.send(body=PHOTO, ctype="application/octet-stream")
        if path == "/html-as-jpeg.jpg":
            return self.send(body=HTML)
        if path in ("/loop/a", "/loop/b"):
            other = "/loop/b" if path == "/loop/a" else "/loop/a"
            return self.send(302, length=0, headers=[("Location", other)])
        if path.startswith("/chain/"):
            left = int(path.rsplit("/", 1)[1])
            if left == 0:
                return self.send(body=PHOTO)
            return self.send(301, length=0, headers=[("Location", f"/chain/{left - 1}")])
        if path == "/big.png":
            return self.send(body=BIG, ctype="image/png")
        if path == "/big-no-length.png":
            return self.send(body=BIG, ctype="image/png", length=False)
        if path == "/interrupt.png":
            if s.release.is_set():
                return self.send(body=BIG, ctype="image/png")
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(BIG)))
            self.end_headers()
            self.wfile.write(BIG[: len(BIG) // 2])
            self.wfile.flush()
            s.half_sent.set()
            s.release.wait(20)
            self.wfile.write(BIG[len(BIG) // 2:])
            return None
        return self.send(404, b"no such test path", "text/plain")


@pytest.fixture(scope="module")
def server():
    srv = Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()


def cache(tmp_path, **kw) -> PhotoCache:
    kw.setdefault("backoff", 0.05)
    return PhotoCache(tmp_path / "photos", **kw)


def tmp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


# --- the plain cases ---------------------------------------------------------------------------

def test_is_url_and_default_folder(monkeypatch, tmp_path):
    assert is_url("https://cdn.example.com/a.jpg") and is_url("HTTP://x/y")
    assert not is_url("photos/a.jpg") and not is_url("ftp://x/y") and not is_url("file:///a.jpg")
    assert not is_url("http:/x") and not is_url(" http://x/y")
    monkeypatch.setenv("VREC_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c" / "photos"
    monkeypatch.delenv("VREC_CACHE_DIR")
    assert default_cache_dir().name == "photos"


def test_retry_after_in_seconds_or_as_a_date():
    assert retry_after("7") == 7 and retry_after(None) is None and retry_after("soon") is None
    assert 29 <= retry_after(email.utils.formatdate(time.time() + 30, usegmt=True)) <= 30
    assert retry_after(email.utils.formatdate(time.time() - 30, usegmt=True)) == 0


def test_the_cache_object_pickles_for_workers(tmp_path):
    import pickle

    c = pickle.loads(pickle.dumps(cache(tmp_path, per_host=2)))
    assert (c.folder, c.per_host, c.revalidate) == (tmp_path / "photos", 2, True)


def test_200_is_downloaded_cached_and_looked_up(server, tmp_path):
    c = cache(tmp_path)
    url = server.url("/ok/plain.jpg")
    assert c.lookup(url) is None
    done = []
    got = c.fetch_many([url, url], progress=lambda d, t: done.append((d, t)))
    assert list(got) == [url] and done == [(1, 1)]
    f = got[url]
    assert f.status == "downloaded" and f.error is None
    assert f.path.read_bytes() == PHOTO and f.size == len(PHOTO) and f.mtime_ns == f.path.stat().st_mtime_ns
    assert c.lookup(url) == Fetched(url, f.path, "cached", None, f.size, f.mtime_ns)
    assert tmp_files(c.folder) == []
    # no revalidation: no request at all
    before = len(server.hits["/ok/plain.jpg"])
    assert PhotoCache(c.folder, revalidate=False).fetch(url).status == "cached"
    assert len(server.hits["/ok/plain.jpg"]) == before


def test_stale_temporary_files_of_a_killed_run_are_swept(server, tmp_path):
    import os

    c = cache(tmp_path)
    url = server.url("/ok/swept.jpg")
    body = c._paths(url)[0]
    body.parent.mkdir(parents=True)
    old, recent = body.parent / f".{body.name}.abc.tmp", body.parent / f".{body.name}.def.tmp"
    old.write_bytes(b"half")
    recent.write_bytes(b"half")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert c.fetch(url).status == "downloaded"
    assert not old.exists() and recent.exists()  # a recent one may be another process's download


def test_404_fails_and_caches_nothing(server, tmp_path):
    c = cache(tmp_path)
    f = c.fetch(server.url("/missing.jpg"))
    assert (f.status, f.error, f.path) == ("failed", "HTTP 404", None)
    assert c.lookup(server.url("/missing.jpg")) is None
    assert len(server.hits["/missing.jpg"]) == 1  # a 404 is not retried


def test_500_then_200_is_retried(server, tmp_path):
    f = cache(tmp_path).fetch(server.url("/flaky.jpg"))
    assert f.status == "downloaded" and f.path.read_bytes() == PHOTO
    assert len(server.hits["/flaky.jpg"]) == 2


def test_retries_give_up_with_the_last_status(server, tmp_path):
    f = cache(tmp_path, retries=2).fetch(server.url("/always500.jpg"))
    assert (f.status, f.error) == ("failed", "HTTP 503")
    assert len(server.hits["/always500.jpg"]) == 3


def test_429_waits_for_retry_after(server, tmp_path):
    f = cache(tmp_path).fetch(server.url("/ratelimited.jpg"))
    assert f.status == "downloaded"
    first, second = server.hits["/ratelimited.jpg"]
    assert second - first >= 0.95


def test_a_slow_server_times_out(server, tmp_path):
    start = time.monotonic()
    f = cache(tmp_path, timeout=1, retries=0).fetch(server.url("/slow.jpg"))
    assert f.status == "failed" and f.error.startswith("timed out after 1 s")
    assert time.monotonic() - start < 2.5


def test_a_trickling_server_times_out(server, tmp_path):
    f = cache(tmp_path, timeout=1, retries=0).fetch(server.url("/trickle.jpg"))
    assert f.status == "failed" and f.error.startswith("timed out after 1 s"), f.error


def test_a_truncated_body_fails_and_is_not_cached(server, tmp_path):
    c = cache(tmp_path, retries=1)
    f = c.fetch(server.url("/truncated.jpg"))
    assert (f.status, f.error) == ("failed", f"truncated (got 1000 of {len(BIG)} bytes)")
    assert len(server.hits["/truncated.jpg"]) == 2  # retried once
    assert c.lookup(server.url("/truncated.jpg")) is None
    assert [p for p in c.folder.rglob("*") if p.is_file()] == []


def test_the_body_decides_whether_it_is_an_image(server, tmp_path):
    c = cache(tmp_path)
    got = c.fetch_many([server.url(p) for p in ("/jpeg-as-text.txt", "/jpeg-as-octets", "/html-as-jpeg.jpg")])
    as_text, as_octets, html = got.values()
    assert as_text.status == "downloaded" and as_octets.status == "downloaded"
    assert (html.status, html.error) == ("failed", "not an image (image/jpeg)")
    assert c.lookup(server.url("/html-as-jpeg.jpg")) is None


def test_redirects_are_followed_but_limited(server, tmp_path):
    c = cache(tmp_path, max_redirects=3)
    loop = c.fetch(server.url("/loop/a"))
    assert loop.status == "failed" and "redirect loop" in loop.error
    assert c.fetch(server.url("/chain/3")).status == "downloaded"
    far = c.fetch(server.url("/chain/4"))
    assert (far.status, far.error) == ("failed", "too many redirects (more than 3)")


@pytest.mark.parametrize("path", ["/big.png", "/big-no-length.png"])
def test_a_body_over_the_size_limit_is_refused(server, tmp_path, path):
    assert len(BIG) > 5000
    c = cache(tmp_path, max_bytes=4096)
    f = c.fetch(server.url(path))
    assert (f.status, f.error) == ("failed", "larger than 4 KB")
    assert [p for p in c.folder.rglob("*") if p.is_file()] == []
    assert cache(tmp_path, max_bytes=len(BIG)).fetch(server.url(path)).status == "downloaded"


# --- revalidation ----------------------------------------------------------------------------------

def test_etag_304_on_the_second_run(server, tmp_path):
    c = cache(tmp_path)
    urls = [server.url(f"/ok/etag{i}.jpg") for i in range(3)]
    first = c.fetch_many(urls)
    assert {f.status for f in first.values()} == {"downloaded"}
    sent = sum(server.bodies[f"/ok/etag{i}.jpg"] for i in range(3))
    second = c.fetch_many(urls)
    assert {f.status for f in second.values()} == {"not-modified"}
    assert sum(server.bodies[f"/ok/etag{i}.jpg"] for i in range(3)) == sent == 3
    for url in urls:
        assert (second[url].path, second[url].mtime_ns, second[url].size) == (first[url].path, first[url].mtime_ns, first[url].size)
        assert second[url].path.stat().st_mtime_ns == first[url].mtime_ns
    assert server.headers_seen["/ok/etag0.jpg"][-1]["If-None-Match"] == '"/ok/etag0.jpg"'


def test_last_modified_revalidation(server, tmp_path):
    c = cache(tmp_path)
    url = server.url("/lm/photo.jpg")
    first = c.fetch(url)
    second = c.fetch(url)
    assert (first.status, second.status) == ("downloaded", "not-modified")
    assert second.mtime_ns == first.mtime_ns
    assert server.headers_seen["/lm/photo.jpg"][-1]["If-Modified-Since"] == LAST_MODIFIED
    assert server.bodies["/lm/photo.jpg"] == 1


def test_new_bytes_replace_and_gone_photos_are_dropped(server, tmp_path):
    c = cache(tmp_path)
    url = server.url("/versioned/a.jpg")
    server.versions["/versioned/a.jpg"] = jpeg((10, 200, 10))
    first = c.fetch(url)
    same = c.fetch(url)  # no validators: a full body again, equal bytes keep the file as it was
    assert (same.status, same.mtime_ns) == ("downloaded", first.mtime_ns)
    server.versions["/versioned/a.jpg"] = new = jpeg((10, 10, 200), size=(40, 30))
    changed = c.fetch(url)
    assert changed.status == "downloaded" and changed.path.read_bytes() == new and changed.size == len(new)
    server.versions["/versioned/a.jpg"] = HTML  # a bad new body: the cached copy stays, the reason noted
    kept = c.fetch(url)
    assert (kept.status, kept.error, kept.path, kept.mtime_ns) == ("cached", "not an image (image/jpeg)", changed.path, changed.mtime_ns)
    assert kept.path.read_bytes() == new
    del server.versions["/versioned/a.jpg"]  # now a 404: the photo is gone, so is its copy
    gone = c.fetch(url)
    assert (gone.status, gone.error, gone.path) == ("failed", "HTTP 404", None)
    assert c.lookup(url) is None


def test_a_network_error_on_revalidation_keeps_the_cached_copy(server, tmp_path):
    c = cache(tmp_path)
    url = server.url("/ok/keep.jpg")
    first = c.fetch(url)
    # the same cache folder asked through a port where nothing listens: pretend the URL is there
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    dead = f"http://127.0.0.1:{dead_port}/ok/keep.jpg"
    body, sidecar = c._paths(url)
    dead_body, dead_sidecar = c._paths(dead)
    dead_body.parent.mkdir(parents=True, exist_ok=True)
    dead_body.write_bytes(body.read_bytes())
    dead_sidecar.write_text(sidecar.read_text().replace(url, dead))
    f = cache(tmp_path, retries=0).fetch(dead)
    assert f.status == "cached" and f.path == dead_body and f.error.startswith("cannot connect")
    assert first.status == "downloaded"


# --- concurrency, event loops, interruption ---------------------------------------------------

def test_per_host_and_overall_limits(server, tmp_path):
    server.most_active = 0
    c = cache(tmp_path, per_host=3)
    got = c.fetch_many([server.url(f"/slowok/{i}") for i in range(9)])
    assert {f.status for f in got.values()} == {"downloaded"}
    assert server.most_active == 3
    server.most_active = 0
    urls, calls = [server.url(f"/slowok/b{i}") for i in range(10)], []  # more than the 8 tasks alive at once
    got = cache(tmp_path / "b", per_host=8, connections=2).fetch_many(urls, progress=lambda d, t: calls.append((d, t)))
    assert list(got) == urls and {f.status for f in got.values()} == {"downloaded"}
    assert server.most_active == 2
    assert calls == [(d, 10) for d in range(1, 11)]


def test_fetch_many_from_inside_a_running_event_loop(server, tmp_path):
    async def main():
        return cache(tmp_path).fetch_many([server.url("/ok/loop.jpg")])

    got = asyncio.run(main())
    assert got[server.url("/ok/loop.jpg")].status == "downloaded"


def test_bad_urls_fail_without_a_request(tmp_path):
    got = cache(tmp_path).fetch_many(["photos/a.jpg", "http://", "http://127.0.0.1:99999/a.jpg", "https://[::1/a.jpg"])
    assert [f.status for f in got.values()] == ["failed"] * 4
    assert [f.error.split(" (")[0] for f in got.values()] == ["not an http(s) URL"] + ["invalid URL"] * 3


SCRIPT = "import sys; from vrec.ingest.downloads import PhotoCache; PhotoCache(sys.argv[1], retries=0).fetch_many(sys.argv[2:])"


def test_ctrl_c_leaves_no_half_file_and_the_next_run_completes(server, tmp_path):
    folder = tmp_path / "photos"
    ok, slow = server.url("/ok/before-interrupt.jpg"), server.url("/interrupt.png")
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(folder), ok, slow], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        c = PhotoCache(folder)
        deadline = time.monotonic() + 30

        def started():
            return server.half_sent.is_set() and c.lookup(ok) and tmp_files(folder)

        while not started() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started(), "the download did not start (the half photo should be in a temporary file)"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode != 0 and b"KeyboardInterrupt" in err
    body, sidecar = c._paths(slow)
    assert not body.exists() and not sidecar.exists() and c.lookup(slow) is None
    assert tmp_files(folder) == []
    server.release.set()
    got = c.fetch_many([ok, slow])
    assert got[ok].status == "not-modified" and got[slow].status == "downloaded"
    assert got[slow].path.read_bytes() == BIG
