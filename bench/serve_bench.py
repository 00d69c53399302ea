"""Latency and throughput of `vrec serve` on a 100,000-item store of SigLIP-shaped vectors.

    python bench/serve_bench.py [--items 100000] [--seconds 8] [--write]

What it does (a few minutes on a 2-core CPU):

1. fills a Hugging Face cache with the real ViT-B-16-SigLIP architecture at random weights
   (../shared/tools/fake_siglip_hub.py; speed does not depend on the weights' values), so the
   server loads `siglip` exactly as on a machine that downloaded it, offline;
2. writes a store of clustered synthetic unit vectors (768-d, as bench/inputs.py makes them for the
   search benchmark) under model `siglip`, with metadata (title, category, price), and builds its
   HNSW index (`vrec index`);
3. starts `vrec serve` in a process of its own on a free loopback port and times process start ->
   first answer (/api/health) and -> first text answer (the text tower loading);
4. times single requests one after another: GET /api/similar/{id}, GET /api/search/text, POST
   /api/search/image (p50 / p95, wall time at the client);
5. counts requests per second with 1, 4 and 8 concurrent clients (threads in this process, which
   share the CPU with the server: on 2 cores the clients' own work is part of the figure).

``--write`` replaces the `vrec serve` section of BENCHMARKS.md with the figures.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from common import ROOT, log
from inputs import clustered, fake_siglip_hub, write_vectors

PHOTO = next(iter(sorted((ROOT / "sample_catalog").rglob("*.jpg"))), None)
COLOURS = ["red", "black", "navy", "white", "olive", "beige", "pink", "grey", "mustard", "burgundy", "teal", "cream"]
MATERIALS = ["leather", "denim", "linen", "wool", "silk", "canvas", "suede", "knitted", "striped", "floral"]
ITEMS = ["bag", "running shoes", "summer dress", "watch", "shirt", "backpack", "tote", "sneakers", "jacket", "scarf",
         "belt", "hat", "skirt", "boots", "coat", "sandals"]
CATEGORIES = ["bags", "shoes", "dresses", "shirts", "watches", "jackets", "belts", "hats"]
TARGETS = {"similar": 20.0, "text": 150.0, "image": 600.0}  # p50, ms
BEGIN, END = "<!-- serve-bench:begin -->", "<!-- serve-bench:end -->"
_asked = iter(range(10**9))


def new_text() -> str:
    """A text no request asked before (1,920 of them): the server keeps the vectors of texts it has
    seen, so a text asked again measures the search, not the encoding."""
    i = next(_asked) % (len(COLOURS) * len(MATERIALS) * len(ITEMS))
    return f"{COLOURS[i % 12]} {MATERIALS[i // 12 % 10]} {ITEMS[i // 120]}"


def item_id(j: int) -> str:
    return f"{CATEGORIES[j % len(CATEGORIES)]}/item-{j:06d}"


def make_store(path: Path, n: int, dim: int) -> None:
    """n clustered unit vectors under model 'siglip' (the real configuration), metadata, an HNSW index."""
    import pandas as pd

    from vrec.models.registry import resolve
    from vrec.models.weights import expected_config
    from vrec.store.index import build_index

    vectors, _ = clustered(n, dim, seed=3)
    ids = [item_id(j) for j in range(n)]
    st = write_vectors(path, "siglip", expected_config(resolve("siglip")), ids, vectors, path.parent / "photos")
    st.write_metadata(pd.DataFrame({"id": ids, "title": [f"Item {j}" for j in range(n)],
                                    "category": [CATEGORIES[j % len(CATEGORIES)] for j in range(n)],
                                    "price": (np.arange(n) * 37) % 400}).set_index("id"))
    t = time.perf_counter()
    s = build_index(st.model("siglip"))
    log(f"  index: {n:,} items, ef {s.ef}, recall@10 {s.recall_at_10:.3f}, {time.perf_counter() - t:.0f} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, p) -> float:
    return float(np.percentile(np.asarray(values) * 1000, p))


class Server:
    def __init__(self, store: Path, env: dict):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-c", "from vrec.cli import main; main()", "serve", "--store", str(store),
               "--model", "siglip", "--port", str(self.port)]
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def cold_start(server: Server, client) -> dict:
    """Seconds from process start to the first /api/health answer and to the first text answer."""
    deadline = time.monotonic() + 300
    while True:
        try:
            if client.get(server.base + "/api/health").status_code == 200:
                break
        except Exception:  # noqa: BLE001  (not listening yet)
            pass
        if server.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("vrec serve did not start: " + server.proc.stderr.read())
        time.sleep(0.05)
    health = time.perf_counter() - server.t0
    r = client.get(server.base + "/api/search/text", params={"q": "red bag"})
    r.raise_for_status()
    return {"first_answer_s": health, "first_text_answer_s": time.perf_counter() - server.t0}


def timed(fn, n: int, warm: int = 2) -> list[float]:
    for i in range(warm):
        fn(i)
    out = []
    for i in range(n):
        t = time.perf_counter()
        fn(i + warm)
        out.append(time.perf_counter() - t)
    return out


def throughput(base: str, make_request, clients: int, seconds: float) -> float:
    import httpx

    done = [0] * clients
    stop_at = time.monotonic() + seconds

    def run(c: int) -> None:
        with httpx.Client(base_url=base, timeout=120) as h:
            i = c * 1000
            while time.monotonic() < stop_at:
                make_request(h, i).raise_for_status()
                done[c] += 1
                i += 1

    t = time.perf_counter()
    threads = [threading.Thread(target=run, args=(c,)) for c in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return sum(done) / (time.perf_counter() - t)


def bench(args) -> dict:
    tmp = Path(args.tmp or tempfile.mkdtemp(prefix="vrec-serve-bench-"))
    hub = Path(args.hub) if args.hub else tmp / "hf"
    env = {**os.environ, "HF_HOME": str(hub), "HF_HUB_OFFLINE": "1"}
    os.environ.update({"HF_HOME": str(hub), "HF_HUB_OFFLINE": "1"})  # before vrec resolves 'siglip'
    t_all = time.perf_counter()
    load_before = _loadavg()
    try:
        store = prepare(args, tmp, hub, env)
        log("serve_bench: vrec serve with the text tower on torch (VREC_TEXT_ONNX=0), cold start only ...")
        cold_torch = cold_start_only(store, {**env, "VREC_TEXT_ONNX": "0"})
        log(f"  cold start on torch: first answer {cold_torch['first_answer_s']:.1f} s, "
            f"first text answer {cold_torch['first_text_answer_s']:.1f} s")
        log("serve_bench: vrec serve ...")
        figures = serve_figures(store, env, args)
    finally:
        if not args.keep and not args.tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return {"date": _dt.date.today().isoformat(), "items": args.items, "dim": args.dim, "cold": figures["cold"],
            "cold_torch": cold_torch, "latency_ms": figures["latency_ms"], "inside_ms": figures["inside_ms"],
            "throughput": figures["throughput"], "photo": _photo_text(), "server_rss_mb": figures["server_rss_mb"],
            "seconds": time.perf_counter() - t_all, "load_average": [load_before, _loadavg()],
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"}


def prepare(args, tmp: Path, hub: Path, env: dict) -> Path:
    """The fake SigLIP hub, the store (unless ``tmp`` holds it from an earlier run) and the ONNX text tower."""
    log("serve_bench: fake SigLIP hub ...")
    fake_siglip_hub(hub)
    store = tmp / "store"
    if not (store / "models").is_dir():
        log(f"serve_bench: a store of {args.items:,} x {args.dim} vectors ...")
        make_store(store, args.items, args.dim)
    log("serve_bench: the ONNX text tower (vrec models download siglip; once per weights) ...")
    subprocess.run([sys.executable, "-c", "from vrec.cli import main; main()", "models", "download", "siglip"],
                   env=env, check=True, capture_output=True)
    return store


def cold_start_only(store: Path, env: dict) -> dict:
    import httpx

    server = Server(store, env)
    try:
        with httpx.Client(timeout=300) as h:
            return cold_start(server, h)
    finally:
        server.stop()


def serve_figures(store: Path, env: dict, args) -> dict:
    """One server: its cold start, the latency of single requests, throughput, memory after."""
    import httpx

    server = Server(store, env)
    try:
        with httpx.Client(timeout=300) as h:
            cold = cold_start(server, h)
            log(f"  cold start: first answer {cold['first_answer_s']:.1f} s, "
                f"first text answer {cold['first_text_answer_s']:.1f} s")
            picks = np.random.default_rng(0).integers(0, args.items, 10_000)

            def item(i: int) -> str:
                return item_id(int(picks[i % len(picks)]))

            lat, inside = latencies(server.base, h, item, args)
        rates = {}
        for kind, fn in (("similar", lambda c, i: c.get(f"/api/similar/{item(i)}", params={"k": 12})),
                         ("text", lambda c, i: c.get("/api/search/text", params={"q": new_text(), "k": 12}))):
            rates[kind] = {}
            for clients in (1, 4, 8):
                rates[kind][clients] = throughput(server.base, fn, clients, args.seconds)
                log(f"  {kind}: {clients} client(s) {rates[kind][clients]:.1f} requests/s")
        rss = _rss_mb(server.proc.pid)
    finally:
        server.stop()
    return {"cold": cold, "latency_ms": {k: {"p50": percentile(v, 50), "p95": percentile(v, 95), "n": len(v)}
                                         for k, v in lat.items()},
            "inside_ms": inside, "throughput": rates, "server_rss_mb": rss}


def latencies(base: str, h, item, args) -> tuple[dict, dict]:
    """Seconds per request, one at a time, for each kind of request; and the median time the
    server itself reported (`took_ms`) for each."""
    photo = PHOTO.read_bytes()

    def similar(i):
        return h.get(base + f"/api/similar/{item(i)}", params={"k": 12})

    def text(i):
        return h.get(base + "/api/search/text", params={"q": new_text(), "k": 12})

    def text_again(i):
        return h.get(base + "/api/search/text", params={"q": "red leather bag", "k": 12})

    def image(i):
        return h.post(base + "/api/search/image", files={"file": ("q.jpg", photo)}, data={"k": "12"})

    took = {"similar": [], "text": [], "text_again": [], "image": []}

    def checked(fn):
        def run(i):
            r = fn(i)
            r.raise_for_status()
            took[fn.__name__].append(r.json()["took_ms"])
            return r
        return run

    lat = {"similar": timed(checked(similar), args.similar_n, warm=5),
           "text": timed(checked(text), args.text_n, warm=3),
           "text_again": timed(checked(text_again), args.text_n, warm=1),
           "image": timed(checked(image), args.image_n, warm=2)}  # the first upload loads the image tower
    for k, v in lat.items():
        log(f"  {k}: p50 {percentile(v, 50):.1f} ms, p95 {percentile(v, 95):.1f} ms ({len(v)} requests)")
    return lat, {k: float(np.median(v[-len(lat[k]):])) for k, v in took.items()}


def _loadavg() -> float | None:
    """The 1-minute load average: how busy the (shared) machine was."""
    try:
        return float(open("/proc/loadavg").read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _photo_text() -> str:
    from PIL import Image

    with Image.open(PHOTO) as img:
        return f"a {img.width}x{img.height} JPEG of {PHOTO.stat().st_size / 1024:.0f} KB"


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS"))
    except (OSError, StopIteration):
        return None


def markdown(r: dict) -> str:
    lat = r["latency_ms"]
    ok = lambda kind: "—" if kind not in TARGETS else "yes" if lat[kind]["p50"] <= TARGETS[kind] else "**no**"  # noqa: E731
    lines = [BEGIN, "## vrec serve", "",
             f"Measured by `python bench/serve_bench.py --write` on {r['date']} ({r['seconds']:.0f} s), "
             f"{r['machine']}; **2-core CPU, shared** with other work (load average {_fmt_load(r)} at the start / "
             "end of the run), so figures drift between runs: the model-bound ones (text, image) by up to 3x -- the "
             "same image encoding took 0.65 s and 2.4 s minutes apart on this machine. "
             f"A store of {r['items']:,} clustered synthetic {r['dim']}-d unit vectors under model `siglip` "
             "(HNSW index, as `vrec index` builds it) with metadata; the real ViT-B-16-SigLIP architecture at random "
             "weights, offline (`../shared/tools/fake_siglip_hub.py`). `vrec serve` runs in its own process; times "
             "are wall time at an HTTP client on the same machine, one request at a time, k = 12. "
             "**Targets: similar p50 ≤ 20 ms, text p50 ≤ 150 ms, image upload p50 ≤ 600 ms.**", "",
             "| request | requests | p50 ms | p95 ms | target p50 ms | met |",
             "| --- | ---: | ---: | ---: | ---: | --- |"]
    names = {"similar": "GET /api/similar/{id}", "text": "GET /api/search/text (a new text each time)",
             "text_again": "GET /api/search/text (a text asked before)",
             "image": f"POST /api/search/image ({r['photo']})"}
    for kind in [k for k in ("similar", "text", "text_again", "image") if k in lat]:
        target = f"{TARGETS[kind]:.0f}" if kind in TARGETS else "—"
        lines.append(f"| {names[kind]} | {lat[kind]['n']} | {lat[kind]['p50']:.1f} | {lat[kind]['p95']:.1f} | "
                     f"{target} | {ok(kind)} |")
    inside = r["inside_ms"]
    lines += ["", f"Inside the server (median of the answers' `took_ms`, the library call): similar "
              f"{inside['similar']:.1f} ms, text {inside['text']:.1f} ms, image {inside['image']:.1f} ms; the rest is "
              "HTTP, multipart, JSON and the client. Text queries go through the ONNX text tower (as `vrec "
              "search-text` does); the server keeps the vectors of the last 1,024 texts, so a text asked again "
              "(refining filters, changing k, going back) costs only the search.", "",
              "Why text and image miss their targets here: the model's arithmetic is the floor on this CPU. Encoding a "
              "64-token text with ViT-B-16-SigLIP's text tower is about 11 GFLOP and a 224-px photo with its image "
              "tower about 35 GFLOP; this machine's 2 cores (AMD EPYC, Zen 1: AVX2 with 128-bit FMA units, about 2 "
              "GHz) peak near 64 GFLOP/s in fp32, so about 170 ms per text and 550 ms per photo before any "
              "overhead. A dynamically quantised int8 ONNX text tower measured no faster here (225 vs 227 ms per "
              "text; this CPU has no VNNI) at cosine 0.9991 to fp32, so it is not used. A recent CPU with more "
              "cores (or a GPU) has the arithmetic to meet the targets; no such machine was lent to the sessions "
              "that measured this.", "",
              "Throughput, requests/s, with concurrent clients (threads in the benchmark process, sharing the 2 cores "
              "with the server):", "",
              "| request | 1 client | 4 clients | 8 clients |", "| --- | ---: | ---: | ---: |"]
    for kind, rates in r["throughput"].items():
        lines.append(f"| {names[kind]} | " + " | ".join(f"{rates.get(c, rates.get(str(c))):.1f}" for c in (1, 4, 8)) + " |")
    lines += ["", f"Cold start of `vrec serve` (process start to answer): first answer (/api/health) "
              f"{r['cold']['first_answer_s']:.1f} s; first text answer {r['cold']['first_text_answer_s']:.1f} s "
              "(loading the text tower as vrec loads it for queries, which the server starts in the background as "
              f"soon as it listens, and the index and catalog table on the first query)"
              + (f"; with the text tower on torch instead (`VREC_TEXT_ONNX=0`) {r['cold_torch']['first_answer_s']:.1f} s "
                 f"and {r['cold_torch']['first_text_answer_s']:.1f} s, so the server uses the ONNX export too"
                 if r.get("cold_torch") else "") + f". Server memory after the run: {r['server_rss_mb']:.0f} MB RSS (both towers, the "
              "index and the memory-mapped vectors it touched).", "",
              "Regenerate: `.venv/bin/python bench/serve_bench.py --write` (about 4 minutes; needs ../shared/tools, "
              "writes about 1.5 GB under a temporary folder and removes it).", END]
    return "\n".join(lines)


def _fmt_load(r: dict) -> str:
    return " / ".join("?" if v is None else f"{v:.1f}" for v in r.get("load_average", [None, None]))


def write_section(text: str, path: Path = ROOT / "BENCHMARKS.md") -> None:
    """Replace this bench's section of BENCHMARKS.md (see bench/sections.py)."""
    from sections import replace_section

    replace_section(path, BEGIN, END, text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--seconds", type=float, default=8.0, help="per throughput level (default 8)")
    p.add_argument("--similar-n", type=int, default=200)
    p.add_argument("--text-n", type=int, default=60)
    p.add_argument("--image-n", type=int, default=20)
    p.add_argument("--tmp", help="work folder to keep and reuse (store, hub) instead of a temporary one")
    p.add_argument("--hub", help="an existing fake SigLIP HF_HOME to reuse")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.add_argument("--write", action="store_true", help="replace the vrec serve section of BENCHMARKS.md")
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.add_argument("--from-json", help="render (and with --write, write) the figures of an earlier --json run")
    args = p.parse_args()
    if PHOTO is None:
        sys.exit("serve_bench: sample_catalog/ has no photo to upload.")
    results = json.loads(Path(args.from_json).read_text()) if args.from_json else bench(args)
    if args.from_json:
        args.json = None
    text = markdown(results)
    print(text)
    if args.json:
        from vrec.base.files import atomic_path
        with atomic_path(args.json) as tmp:
            Path(tmp).write_text(json.dumps(results, indent=2) + "\n")
    if args.write:
        write_section(text)
        log("serve_bench: wrote the vrec serve section of BENCHMARKS.md")


if __name__ == "__main__":
    main()
