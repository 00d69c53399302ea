"""``vrec cost``: figures consistent with ``vrec embed``'s measured rate, each with its source."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from clihelp import fails, vrec

from vrec.ingest import cost

ROOT = Path(__file__).resolve().parents[1]


def _figures(result) -> dict:
    data = json.loads(result.stdout)
    return {m["model"]: {f["what"]: f for f in m["figures"]} for m in data["models"]}


def test_cost_calibrates_on_the_catalogs_own_photos(fashion, tmp_path):
    # what is asserted is the arithmetic from the measured rate, never the rate against another run's:
    # two timings taken minutes apart on a shared machine say nothing about correctness
    photos = sorted((fashion / "images").glob("*.jpg"))[:72]
    listing = tmp_path / "photos.csv"
    pd.DataFrame({"path": [str(p) for p in photos]}).to_csv(listing, index=False)
    store = tmp_path / "store"
    vrec("embed", listing, "--model", "effnet-lite0", "--store", store)

    r = vrec("cost", "--images", "1000000", "--model", "effnet-lite0", "--store", store, "--price-per-hour", "0.5",
             "--new-per-week", "0.02", "--format", "json")
    f = _figures(r)["effnet-lite0"]
    rate = f["throughput"]["value"]
    assert "calibrated now" in f["throughput"]["source"] and "this catalog's photos" in f["throughput"]["source"]
    assert rate > 0
    hours = f["embed time"]["value"]
    assert hours == pytest.approx(1_000_000 / rate / 3600)
    assert f["embed cost"]["value"] == pytest.approx(hours * 0.5)
    assert f["vectors float32"]["value"] == 1_000_000 * 1280 * 4
    assert f["vectors float16"]["value"] == 1_000_000 * 1280 * 2
    assert f["new images per week"]["value"] == 20_000
    assert f["weekly embed time"]["value"] == pytest.approx(20_000 / rate / 3600)
    assert f["weekly cost"]["value"] == pytest.approx(f["weekly embed time"]["value"] * 0.5)
    assert all(x["source"] for x in f.values())
    assert (store / "calibration.json").is_file()

    # kept in the store and re-used; --recalibrate measures again
    again = _figures(vrec("cost", "--images", "1000", "--model", "effnet-lite0", "--store", store, "--format", "json"))
    assert again["effnet-lite0"]["throughput"]["value"] == rate
    assert "re-used" in again["effnet-lite0"]["throughput"]["source"]
    fresh = _figures(vrec("cost", "--images", "1000", "--model", "effnet-lite0", "--store", store, "--recalibrate",
                          "--format", "json"))
    assert "calibrated now" in fresh["effnet-lite0"]["throughput"]["source"]

    table = vrec("cost", "--images", "1000000", "--model", "effnet-lite0", "--store", store).stdout
    for what in ("throughput", "embed time", "vectors float16", "index size", "index build time", "source"):
        assert what in table


def test_gpu_figures_come_from_the_gpu_benchmark(tmp_path, tiny_store):
    bench = tmp_path / "BENCHMARKS-gpu.json"
    bench.write_text(json.dumps({"date": "2026-01-01", "machine": {"gpu": "NVIDIA H100", "cores": 16},
                                 "gpu": {"embed": [
                                     {"model": "siglip", "precision": "fp16", "device": "cuda", "photos": "fashion photos",
                                      "embed_img_s": 900.0},
                                     {"model": "siglip", "precision": "fp32", "device": "cuda", "photos": "fashion photos",
                                      "embed_img_s": 400.0},
                                     {"model": "siglip", "precision": "fp32", "device": "cuda", "photos": "1500 px photos",
                                      "embed_img_s": 150.0}]}}))
    f = _figures(vrec("cost", "--images", "3600000", "--model", "siglip", "--device", "cuda", "--benchmarks", bench,
                      "--format", "json", "--store", tiny_store))["siglip"]
    assert f["throughput"]["value"] == 400.0 and "NVIDIA H100" in f["throughput"]["source"]
    assert f["embed time"]["value"] == pytest.approx(2.5)
    half = _figures(vrec("cost", "--images", "10", "--model", "siglip", "--device", "cuda", "--precision", "fp16",
                         "--benchmarks", bench, "--format", "json"))["siglip"]
    assert half["throughput"]["value"] == 900.0
    if not cost._cuda_here():
        fails("cost", "--images", "10", "--model", "cnn", "--device", "cuda", "--benchmarks", bench,
              says="No GPU figure for 'cnn'")


def test_without_a_store_the_benchmark_machine_stands_in_and_says_so(tmp_path):
    r = vrec("cost", "--images", "50000", "--model", "cnn", "--store", tmp_path / "none", "--format", "json",
             "--benchmarks", ROOT / "BENCHMARKS.json")
    f = _figures(r)["cnn"]
    assert "BENCHMARKS.json" in f["throughput"]["source"] and f["throughput"]["value"] > 0
    assert "not yours" in r.stderr


def test_index_size_formula_matches_the_measured_benchmark_sizes():
    data = json.loads((ROOT / "BENCHMARKS.json").read_text())
    rows = [r for r in data["search"] if r.get("m") == 16]
    assert rows
    for r in rows:
        assert cost.hnsw_bytes(r["n"], r["dim"], 16) == pytest.approx(r["index_mb"] * 1e6, rel=0.01)


def test_calibration_on_a_tiny_store(tiny_store):
    rate = cost.calibrate("tiny-cnn", tiny_store, photos=8)
    assert rate.images_per_second > 0 and not rate.reused
    assert cost.calibrate("tiny-cnn", tiny_store, photos=8).reused
    est = cost.estimate(100, ["tiny-cnn"], store=tiny_store)
    assert est.models[0].rate.reused and any("exactly" in n for n in est.notes)


def test_bad_options_give_one_clear_error(tmp_path):
    fails("cost", "--images", "0", says="--images")
    fails("cost", "--images", "10", "--new-per-week", "2", says="--new-per-week")
    fails("cost", "--images", "10", "--device", "tpu", says="cpu or cuda")
    fails("cost", "--images", "10", "--price-per-hour", "-1", says="--price-per-hour")
    fails("cost", "--images", "10", "--model", "bert", says="Unknown model")
    fails("cost", "--images", "10", "--device", "cuda", "--benchmarks", tmp_path / "nope.json", says="does not exist")
