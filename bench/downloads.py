"""Photos behind URLs: download rate by connections, and the share of `embed` spent downloading.

    python bench/downloads.py                  # 400 photos, 3 rounds; a feed of 200 photos (about 8 minutes on 2 cores)
    python bench/downloads.py --photos 100 --rounds 1 --embed-photos 48   # a quick run
    python bench/downloads.py --write          # also put the section into BENCHMARKS.md

Real small JPEGs (the shared grocery photos, ../shared/datasets/grocery-products/images; generated
with Pillow where that folder is absent) are served by a local ``http.server.ThreadingHTTPServer``
in a child process of its own (so it does not share the measuring process's GIL), with HTTP/1.1
keep-alive; a path under ``/slow/`` waits ``--latency`` seconds (50 ms) before answering, as a far
CDN would, one under ``/fast/`` does not.

1. Download rate: ``PhotoCache(fresh folder, per_host=c, connections=c).fetch_many(urls)`` of all
   N photos, for c in 1, 8, 32, with and without the latency; photos/s, median over rounds (the
   configurations alternate within each round), and the speed-up over one connection measured in
   the same round.
2. The share of a full ``embed`` spent downloading: a Google-style feed of products of 8 photos
   each (``--embed-photos``, 200) embedded with effnet-lite0 (its real weights, bundled: offline),
   once with its photos as local paths and once as URLs behind the 50 ms latency (vrec's default
   PhotoCache settings: 8 connections to a host), alternating, each into a fresh store and a fresh
   photo cache (``FeedOptions(cache=...)``). Reports the median wall times, their difference, and
   the time before the model starts loading (downloads, stat, planning: ``on_model``'s call).
   New photos download on a background thread while the model loads and the photos are embedded,
   so the wall-time difference is what the pipeline does not hide.

Prints a Markdown section and the raw figures as JSON; with --write it also puts the section into
BENCHMARKS.md (between its markers, replacing an earlier one). Not part of `make test`.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, log
from sections import publish

GROCERY = ROOT.parent / "shared" / "datasets" / "grocery-products" / "images"
CONNECTIONS = (1, 8, 32)
PER_PRODUCT = 8
MODEL = "effnet-lite0"

# argv: folder to serve, latency (s). Prints its port, then serves until killed.
SERVER = """
import functools, http.server, sys, time
root, latency = sys.argv[1], float(sys.argv[2])

class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a CDN answers
    disable_nagle_algorithm = True  # else headers and body, two writes, wait for a delayed ACK (40 ms)

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/slow/"):
            time.sleep(latency)
        self.path = self.path[5:]
        return super().do_GET()

class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 256  # 32 connections at once must not overflow the listen backlog
    daemon_threads = True

server = Server(("127.0.0.1", 0), functools.partial(Handler, directory=root))
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def photo_folder(folder: Path, n: int) -> str:
    """``n`` small JPEGs as folder/00000.jpg ...: the grocery photos (repeated under new names past
    their number), else generated ones. Returns where they came from."""
    folder.mkdir(parents=True)
    src = sorted(GROCERY.rglob("*.jpg")) if GROCERY.is_dir() else []
    if src:
        for i in range(n):
            shutil.copy(src[i % len(src)], folder / f"{i:05d}.jpg")
        return f"the shared grocery photos ({len(src)} JPEGs" + (", repeated under new names" if n > len(src) else "") + ")"
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        base = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((320, 320), Image.BICUBIC)
        img.save(folder / f"{i:05d}.jpg", quality=85)
    return "JPEGs generated with Pillow (320 x 320; the shared grocery photos were absent)"


class PhotoServer:
    """The child process serving ``root``; ``url(prefix, name)``."""

    def __init__(self, root: Path, latency: float):
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER, str(root), str(latency)], stdout=subprocess.PIPE,
                                     text=True)
        self.base = f"http://127.0.0.1:{int(self.proc.stdout.readline())}"

    def url(self, prefix: str, name: str) -> str:
        return f"{self.base}/{prefix}/{name}"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@contextlib.contextmanager
def fsync_off():
    """os.fsync a no-op (a diagnostic: how fast the downloads go without waiting for the disk)."""
    real = os.fsync
    os.fsync = lambda fd: None
    try:
        yield
    finally:
        os.fsync = real


def fsync_ms(folder: Path, n: int = 50) -> float:
    """The median time of one fsync of a 20 KB file in ``folder`` (where the cache is), in ms."""
    folder.mkdir(parents=True, exist_ok=True)
    times = []
    for i in range(n):
        with open(folder / f"{i}.tmp", "wb") as f:
            f.write(os.urandom(20_000))
            f.flush()
            t = time.perf_counter()
            os.fsync(f.fileno())
            times.append(time.perf_counter() - t)
    shutil.rmtree(folder)
    return 1000 * statistics.median(times)


def download_rates(server: PhotoServer, names: list[str], tmp: Path, rounds: int, latency: float) -> list[dict]:
    """photos/s for each (connections, latency), every configuration once per round; plus 32
    connections with fsync a no-op (a diagnostic)."""
    from vrec.ingest.downloads import PhotoCache

    configs = [(c, lat, True) for lat in (0.0, latency) for c in CONNECTIONS] + [(32, latency, False)]
    runs = {cfg: [] for cfg in configs}
    for r in range(rounds):
        for c, lat, sync in (configs if r % 2 == 0 else configs[::-1]):
            urls = [server.url("slow" if lat else "fast", n) for n in names]
            cache = tmp / f"cache-{c}-{lat}-{sync}-{r}"
            with contextlib.nullcontext() if sync else fsync_off():
                t = time.perf_counter()
                got = PhotoCache(cache, per_host=c, connections=c).fetch_many(urls)
                seconds = time.perf_counter() - t
            failed = [f for f in got.values() if f.path is None]
            if failed:
                raise RuntimeError(f"{len(failed)} downloads failed, e.g. {failed[0].url}: {failed[0].error}")
            runs[(c, lat, sync)].append(seconds)
            shutil.rmtree(cache)
            log(f"  round {r + 1}: {c:>2} connection(s), latency {1000 * lat:.0f} ms{'' if sync else ', no fsync'}: "
                f"{len(urls) / seconds:.0f} photos/s")
    rows = []
    for c, lat, sync in configs:
        one = runs[(1, lat, True)]
        rows.append({"connections": c, "latency_ms": 1000 * lat, "fsync": sync, "photos": len(names),
                     "photos_per_s": statistics.median(len(names) / s for s in runs[(c, lat, sync)]),
                     "seconds": runs[(c, lat, sync)],
                     "speedup_vs_1": statistics.median(a / b for a, b in zip(one, runs[(c, lat, sync)]))})
    return rows


def write_feed(path: Path, locations: list[str]) -> Path:
    """A Google-style feed: products of PER_PRODUCT photos each, at ``locations`` in order."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "title", "image_link", "additional_image_link"])
        for p in range(len(locations) // PER_PRODUCT):
            mine = locations[p * PER_PRODUCT:(p + 1) * PER_PRODUCT]
            w.writerow([f"p{p:04d}", f"product {p}", mine[0], ",".join(mine[1:])])
    return path


def embed_share(server: PhotoServer, folder: Path, names: list[str], tmp: Path, pairs: int) -> dict:
    """A feed embedded from local paths and from URLs (with the latency), alternating."""
    from vrec.ingest.embed import embed
    from vrec.ingest.feed_source import FeedOptions

    feeds = {"local": write_feed(tmp / "feed-local.csv", [str(folder / n) for n in names]),
             "urls": write_feed(tmp / "feed-urls.csv", [server.url("slow", n) for n in names])}
    runs = {k: [] for k in feeds}
    for i in range(pairs + 1):  # the first pair warms up (imports, the model's first load), and is not kept
        for kind in (("local", "urls") if i % 2 == 0 else ("urls", "local")):
            store, cache = tmp / f"store-{kind}-{i}", tmp / f"photo-cache-{kind}-{i}"
            t0 = time.perf_counter()
            marks = {}
            report = embed(feeds[kind], models=[MODEL], store=store, feed=FeedOptions(cache=str(cache)),
                           on_model=lambda _name, marks=marks: marks.setdefault("model", time.perf_counter()))
            wall = time.perf_counter() - t0
            done = max(m.embedded for m in report.models)
            if done != len(names):
                raise RuntimeError(f"embedded {done} of {len(names)} photos ({kind}): {report.skipped[:3]}")
            if i:
                runs[kind].append({"wall_s": wall, "before_model_s": marks["model"] - t0,
                                   "load_s": report.load_seconds, "embed_s": report.embed_seconds})
            log(f"  embed {kind:>5} {'(warm-up) ' if not i else ''}{wall:.2f} s, "
                f"{marks['model'] - t0:.2f} s before the model loads")
            shutil.rmtree(store)
            shutil.rmtree(cache, ignore_errors=True)
    med = {k: {f: statistics.median(r[f] for r in v) for f in v[0]} for k, v in runs.items()}
    extra = [u["wall_s"] - lo["wall_s"] for u, lo in zip(runs["urls"], runs["local"])]
    return {"photos": len(names), "products": len(names) // PER_PRODUCT, "pairs": pairs, "median": med,
            "runs": runs, "url_extra_s": statistics.median(extra),
            "url_extra_share": statistics.median(x / u["wall_s"] for x, u in zip(extra, runs["urls"])),
            "download_share": statistics.median((u["before_model_s"] - lo["before_model_s"]) / u["wall_s"]
                                                for u, lo in zip(runs["urls"], runs["local"]))}


def measure(n: int, rounds: int, latency: float, n_embed: int, pairs: int, tmp: Path) -> dict:
    root = tmp / "served"
    source = photo_folder(root, max(n, n_embed))
    names = sorted(p.name for p in root.iterdir())
    sizes = [(root / x).stat().st_size for x in names[:n]]
    server = PhotoServer(root, latency)
    try:
        log(f"download rates: {n} photos, connections {CONNECTIONS}, latency 0 and {1000 * latency:.0f} ms")
        rates = download_rates(server, names[:n], tmp, rounds, latency)
        sync_ms = fsync_ms(tmp / "fsync")
        log(f"embed: a feed of {n_embed} photos, local paths against URLs")
        share = embed_share(server, root, names[:n_embed - n_embed % PER_PRODUCT], tmp, pairs) if n_embed else None
    finally:
        server.close()
    return {"date": dt.date.today().isoformat(), "photos": n, "rounds": rounds, "latency_ms": 1000 * latency,
            "source": source, "mean_kb": sum(sizes) / len(sizes) / 1000, "rates": rates, "embed": share,
            "fsync_ms": sync_ms}


# --- report -----------------------------------------------------------------------------------

START, END = "<!-- bench/downloads.py: start -->", "<!-- bench/downloads.py: end -->"
TITLE = "## Photos behind URLs: download rate, and the share of embed spent downloading"


def markdown(r: dict) -> str:
    lat = r["latency_ms"]
    lines = [f"{r['photos']} small real JPEGs ({r['source']}; {r['mean_kb']:.0f} KB on average) served by a local "
             "`ThreadingHTTPServer` in a process of its own (HTTP/1.1 keep-alive), downloaded with "
             "`PhotoCache(fresh folder, per_host=c, connections=c).fetch_many(urls)`; with the server answering at "
             f"once, and waiting {lat:.0f} ms before each answer (a far CDN). Measured {r['date']} on this 2-core CPU "
             f"shared with other work: median of {r['rounds']} rounds (configurations alternating within a round); "
             "speed-up: over one connection, in the same round.", "",
             "| connections | latency | photos/s | speed-up over 1 connection |", "| ---: | ---: | ---: | ---: |"]
    for x in r["rates"]:
        c = x["connections"] if x["fsync"] else f"{x['connections']}, fsync a no-op (diagnostic)"
        lines.append(f"| {c} | {x['latency_ms']:.0f} ms | {x['photos_per_s']:.0f} | {x['speedup_vs_1']:.1f}x |")
    lines += ["", f"- `PhotoCache` fsyncs each body and each sidecar (two per photo) on the event loop's own thread, so "
                  f"no other download progresses meanwhile; one fsync of a 20 KB file took {r['fsync_ms']:.2f} ms "
                  "(median) on this disk during the run. The diagnostic row replaces `os.fsync` by a no-op: how much "
                  "of the rate the disk waits cost. The client, the server (a Python process) and other users share "
                  "the 2 cores, so rates past a few connections measure this machine's CPU, not the network: compare "
                  "the speed-ups with the ideal (the latency-bound rate of 1 connection times the connections)."]
    e = r["embed"]
    if e:
        loc, url = e["median"]["local"], e["median"]["urls"]
        lines += ["", f"A full `embed` (effnet-lite0, its real weights) of a feed of {e['products']} products x "
                      f"{PER_PRODUCT} photos ({e['photos']} photos): the same photos as local paths and as URLs behind "
                      f"the {lat:.0f} ms latency (vrec's default PhotoCache: 8 connections to a host), each into a "
                      f"fresh store and photo cache, alternating; median of {e['pairs']} pairs after a warm-up pair. "
                      "\"Before the model loads\": from the call to `on_model` (the feed read, downloads, stat, "
                      "planning).", "",
                  "| feed | wall s | before the model loads s | model load s | decode + embed s |",
                  "| --- | ---: | ---: | ---: | ---: |",
                  f"| local paths | {loc['wall_s']:.2f} | {loc['before_model_s']:.2f} | {loc['load_s']:.2f} | "
                  f"{loc['embed_s']:.2f} |",
                  f"| URLs, {lat:.0f} ms latency | {url['wall_s']:.2f} | {url['before_model_s']:.2f} | "
                  f"{url['load_s']:.2f} | {url['embed_s']:.2f} |", "",
                  f"- Before the model loads the URL run spent {url['before_model_s']:.2f} s, the local one "
                  f"{loc['before_model_s']:.2f} s (reading the feed, starting the downloads). New photos download on a background thread while the model loads and the "
                  "photos are decoded and embedded (each read waits for its photo), so the latency is hidden as "
                  "far as the downloads keep ahead of the model.",
                  f"- Wall times: from URLs {e['url_extra_s']:+.2f} s against local paths (median of the pairs' "
                  f"differences, {100 * e['url_extra_share']:+.0f}% of the URL wall): what the pipeline does not "
                  "hide, within this shared machine's noise."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=400, help="photos downloaded per configuration [400]")
    ap.add_argument("--rounds", type=int, default=3, help="rounds over the configurations [3]")
    ap.add_argument("--latency", type=float, default=0.05, help="the slow server's wait per request, s [0.05]")
    ap.add_argument("--embed-photos", type=int, default=200, help="photos of the embedded feed (0: skip) [200]")
    ap.add_argument("--pairs", type=int, default=3, help="local/URL embed pairs, after a warm-up pair [3]")
    ap.add_argument("--write", action="store_true", help="put the section into BENCHMARKS.md")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vrec-downloads-"))
    try:
        result = measure(args.photos, args.rounds, args.latency, args.embed_photos, args.pairs, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    publish(result, markdown(result), args.write, START, END, TITLE)


if __name__ == "__main__":
    main()
