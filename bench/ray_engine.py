"""Ray engine overhead: `vrec embed --engine ray` on a local Ray with all cores against the local
engine, same photos and batch. EfficientNet-Lite0 is light, so the fixed cost of starting Ray Data,
its actors and the model inside them shows rather than hides behind the model."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from common import log

MODEL = "effnet-lite0"


def measure(photos: Path, batch: int, tmp: Path, n: int = 16) -> list[dict]:
    """Both engines on the first ``n`` photos of ``photos``; no rows where Ray is not installed."""
    try:
        import ray
    except ImportError:
        return []
    from vrec.ingest.embed import embed

    folder = tmp / "ray-photos"
    folder.mkdir()
    for f in sorted(photos.glob("*.jpg"))[:n]:
        shutil.copy(f, folder / f.name)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        local = embed(folder, models=[MODEL], store=tmp / f"rl-{MODEL}", batch_size=batch, device="cpu")
        remote = embed(folder, models=[MODEL], store=tmp / f"rr-{MODEL}", batch_size=batch, engine="ray")
        log(f"  {MODEL}: local {local.images_per_second:.2f} img/s, ray {remote.images_per_second:.2f} img/s")
        return [{"model": MODEL, "images": local.models[0].embedded, "local_img_s": local.images_per_second,
                 "ray_img_s": remote.images_per_second, "ratio": remote.images_per_second / local.images_per_second}]
    finally:
        ray.shutdown()


def markdown(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    return (["", "## Ray engine overhead", "",
             "`vrec embed --engine ray` on a local Ray with all cores versus the local engine, same photos and batch. "
             "The Ray figure includes starting Ray Data, its actors and the model inside them: a fixed cost of "
             "seconds that a catalog of thousands of photos amortises and this handful of photos does not "
             "(the Ray engine is for machines and clusters with more cores and GPUs).", "",
             "| model | images | local img/s | ray img/s | ray / local |", "| --- | ---: | ---: | ---: | ---: |"]
            + [f"| {r['model']} | {r['images']} | {r['local_img_s']:.2f} | {r['ray_img_s']:.2f} | {r['ratio']:.2f} |"
               for r in rows])
