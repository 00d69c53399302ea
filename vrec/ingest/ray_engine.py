"""The Ray engine for ``vrec embed``: the same pipeline, spread over a Ray cluster with Ray Data.

Read + decode + preprocess run as CPU tasks (vrec's own :func:`vrec.ingest.pipeline.process_file`), encoding
runs in an actor pool (vrec's own encoders, each model loaded once per actor, ``num_gpus`` only
when GPUs are asked for), and the driver streams the results into the same store through the same
:class:`vrec.ingest.pipeline.Recorder` as the local engine. Ray does not keep row order, so ids and paths
travel with every row and results are joined on them.

Known Ray Data trap handled here: actors that hold every CPU starve the decode tasks and the
pipeline deadlocks on small machines, so CPU actors always leave at least one CPU free.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter

import numpy as np

from vrec.base.errors import VrecError
from vrec.ingest.catalog import ImageRef

log = logging.getLogger(__name__)

META_COLUMNS = ("id", "path", "hash", "size", "mtime", "width", "height", "error")


class RayError(VrecError):
    """Ray is missing, unreachable, or cannot run what was asked."""


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise RayError("The Ray engine needs Ray; install it with: pip install 'vrec[ray]'") from None
    return ray


def _connect(ray, address: str | None) -> bool:
    """Join the cluster at ``address`` (or RAY_ADDRESS), or start a local Ray. True if this call connected
    (run_ray then disconnects), False if Ray was already initialised by the caller."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    import logging

    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if address is None:
        # a local Ray started here does all of vrec's work in its workers: at Ray's default niceness (15)
        # any other busy process on the machine would starve them (minutes instead of seconds)
        os.environ.setdefault("RAY_worker_niceness", "0")
    try:
        ray.init(address=address, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                 configure_logging=True)
    except Exception as e:  # ConnectionError, TimeoutError, RuntimeError... all mean the same here
        refused = _auth_refusal(e, address)
        if refused:
            raise RayError(refused) from None
        if "ray[client]" in str(e):
            raise RayError(f"A ray:// address ({address!r}) needs Ray Client: pip install 'ray[client]', or give the "
                           f"head's HEAD_IP:PORT address (6379 unless 'ray start --head --port' said otherwise).") from None
        raise RayError(f"Cannot reach the Ray cluster at {address!r} ({type(e).__name__}: {str(e).splitlines()[0]}); "
                       f"check the address, or start one with 'ray start --head'.") from None
    return True


def _auth_refusal(error: BaseException, address: str | None) -> str | None:
    """The message for a cluster that refused this driver's token (or the lack of one); None for other failures.

    Ray 2.60 reads RAY_AUTH_MODE, then the token from RAY_AUTH_TOKEN, the file named by
    RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token, in that order. A driver that joins by address never
    turns token mode on by itself, so against a cluster with token auth it needs RAY_AUTH_MODE=token.
    Ray reports a refusal as a ConnectionError caused by an AuthenticationError (or only its text).
    """
    chain, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        chain.append(error)
        error = error.__cause__ or error.__context__
    text = " ".join(f"{type(x).__name__}: {x}" for x in chain)
    if not any(k in text for k in ("AuthenticationError", "InvalidAuthToken", "Unauthenticated")):
        return None
    where = f"The Ray cluster at {address!r}" if address else "The Ray cluster"
    give = ("put the head's token ('ray get-auth-token' on the head prints it) in RAY_AUTH_TOKEN, in a file named by "
            "RAY_AUTH_TOKEN_PATH, or in ~/.ray/auth_token")
    if os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
        return f"{where} requires token authentication; set RAY_AUTH_MODE=token and {give}."
    if "no authentication token was found" in text:
        return f"RAY_AUTH_MODE=token is set but no Ray token was found here; {give}."
    source = ("RAY_AUTH_TOKEN" if os.environ.get("RAY_AUTH_TOKEN") else
              f"RAY_AUTH_TOKEN_PATH={os.environ['RAY_AUTH_TOKEN_PATH']}" if os.environ.get("RAY_AUTH_TOKEN_PATH") else
              "~/.ray/auth_token")
    return f"{where} refused the token from {source}; {give}."


def _decode_stage(source, specs: dict, min_size: int):
    """A Ray Data batch function: read, decode and preprocess the rows' files for the models they need."""

    def decode(batch: dict) -> dict:
        import ray

        from vrec.ingest.pipeline import process_file

        n = len(batch["id"])
        out = {c: [] for c in META_COLUMNS}
        px = {k: np.zeros((n, s.size, s.size, 3), np.uint8) for k, s in specs.items()}
        need = {k: np.zeros(n, bool) for k in specs}
        for i in range(n):
            ref = ImageRef(id=str(batch["id"][i]), path=str(batch["path"][i]))
            keys = [k for k in str(batch["need"][i]).split(",") if k]
            known = json.loads(str(batch["known"][i])) or None
            d = process_file(source, ref, {k: specs[k] for k in keys}, min_size, known)
            for c, v in (("id", ref.id), ("path", ref.path), ("hash", d.hash), ("size", d.size), ("mtime", d.mtime),
                         ("width", d.width), ("height", d.height), ("error", d.error or "")):
                out[c].append(v)
            for k, p in d.pixels.items():
                px[k][i] = p
                need[k][i] = True
        result = {c: np.asarray(v) for c, v in out.items()}
        result["decoded_on"] = np.full(n, ray.get_runtime_context().get_node_id())
        for k in specs:
            result[f"px_{k}"] = px[k]
            result[f"need_{k}"] = need[k]
        return result

    return decode


class EncodeActor:
    """Holds the models (loaded once per actor) and turns pixel columns into vector columns."""

    def __init__(self, names: dict, weights: dict, device: str, precision: str, threads: int):
        import ray
        import torch

        from vrec.models.encoders import create_encoder

        if threads:
            torch.set_num_threads(threads)
        self.node = ray.get_runtime_context().get_node_id()
        self.encoders = {k: create_encoder(n, weights=weights.get(n), device=device, precision=precision)
                         for k, n in names.items()}

    def __call__(self, batch: dict) -> dict:
        out = {c: batch[c] for c in META_COLUMNS + ("decoded_on",)}
        out["encoded_on"] = np.full(len(batch["id"]), self.node)
        for k, enc in self.encoders.items():
            mask = batch[f"need_{k}"] & (batch["error"] == "")
            vec = np.zeros((len(mask), enc.dim), np.float32)
            if mask.any():
                vec[mask] = enc.encode_pixels(batch[f"px_{k}"][mask])
            out[f"vec_{k}"] = vec
            out[f"need_{k}"] = mask
        return out


def _work_note(work: dict, nodes: list) -> str:
    """One line: which nodes decoded and encoded how many photos, of how many nodes in the cluster."""
    ip = {n["NodeID"]: n.get("NodeManagerAddress", "?") for n in nodes}
    parts = []
    for stage, counts in work.items():
        where = ", ".join(f"{ip.get(node, '?')} {node[:8]}: {k}" for node, k in sorted(counts.items()))
        parts.append(f"{stage} on {len(counts)} node(s) ({where})")
    alive = sum(1 for n in nodes if n.get("Alive", True))
    return f"Ray: {'; '.join(parts)}; the cluster has {alive} node(s)."


def plan_workers(cpus: float, gpus: float, concurrency: int | None, gpus_per_worker: float) -> tuple[int, int]:
    """(actors, CPUs per actor), leaving CPUs for decoding and refusing GPUs that are not there."""
    if gpus_per_worker:
        if gpus < gpus_per_worker:
            raise RayError(f"--gpus-per-worker {gpus_per_worker:g} asks for GPUs, but the Ray cluster has "
                           f"{gpus:g}; Ray would wait forever to schedule the encoders. Drop the option to "
                           f"encode on CPUs, or add GPU nodes.")
        actors = concurrency or max(1, int(gpus // gpus_per_worker))
        return actors, 1
    free = max(1, int(cpus) - 1)  # at least one CPU stays with the read/decode tasks
    actors = min(concurrency or max(1, free // 4), free)
    return actors, max(1, free // actors)


def run_ray(job, recorder, batch_size: int, weights: dict, precision: str, options: dict, progress) -> tuple[float, float]:
    """Run the job on Ray; results are recorded into the store on the driver."""
    from vrec.ingest.pipeline import Decoded

    ray = _import_ray()
    joined = bool(options.get("address") or os.environ.get("RAY_ADDRESS"))
    started = _connect(ray, options.get("address"))
    t0 = time.perf_counter()
    try:
        if not job.to_read:
            return t0, t0
        resources = ray.cluster_resources()
        gpw = float(options.get("gpus_per_worker") or 0)
        actors, cpus_per_actor = plan_workers(resources.get("CPU", 1), resources.get("GPU", 0),
                                              options.get("concurrency"), gpw)
        device = "cuda" if gpw else "cpu"
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        rows = [{"id": r.id, "path": r.path, "need": ",".join(job.needs(r)), "known": json.dumps(job.maybe.get(r.id, {}))}
                for r in job.to_read]
        blocks = max(1, min(len(rows) // max(1, batch_size), int(resources.get("CPU", 1)) * 8))
        ds = ray.data.from_items(rows, override_num_blocks=blocks)
        # decode as tasks of their own (a fractional CPU keeps Ray from fusing them into the actors,
        # where they would wait for the model instead of running beside it)
        ds = ds.map_batches(_decode_stage(job.source, job.specs, job.min_size), batch_size=batch_size,
                            batch_format="numpy", num_cpus=0.5)
        ds = ds.map_batches(EncodeActor, fn_constructor_kwargs={"names": job.names, "weights": weights, "device": device,
                                                                "precision": precision, "threads": 0 if gpw else cpus_per_actor},
                            batch_size=batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors),
                            num_cpus=cpus_per_actor, **({"num_gpus": gpw} if gpw else {}))
        done, total = 0, len(rows)
        refs = {r.id: r for r in job.to_read}  # with each photo's product and position
        work = {"decoded": Counter(), "encoded": Counter()}  # node id -> photos
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            work["decoded"].update(str(n) for n in batch["decoded_on"])
            work["encoded"].update(str(n) for n in batch["encoded_on"])
            per_model: dict[str, tuple[list, list]] = {}
            for i in range(len(batch["id"])):
                d = Decoded(refs[str(batch["id"][i])], hash=str(batch["hash"][i]),
                            size=int(batch["size"][i]), mtime=int(batch["mtime"][i]), width=int(batch["width"][i]),
                            height=int(batch["height"][i]), error=str(batch["error"][i]) or None)
                for k in recorder.accept(d):
                    rows_k, vecs_k = per_model.setdefault(k, ([], []))
                    rows_k.append(d)
                    vecs_k.append(batch[f"vec_{k}"][i])
            for k, (rows_k, vecs_k) in per_model.items():
                recorder.write(k, rows_k, np.stack(vecs_k))
            recorder.tick()
            done += len(batch["id"])
            if progress:
                progress(done, total)
        nodes = ray.nodes()
        if joined or len(nodes) > 1:  # on a cluster, say which nodes did the work (one missing did not join or got none)
            log.info(_work_note(work, nodes))
        return t0, t0
    finally:
        if started:
            ray.shutdown()
