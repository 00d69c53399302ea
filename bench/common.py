"""What every benchmark shares: where things are, logging, timing the parts of a run, the machine
it ran on, and child processes that answer in JSON.

The bench scripts run as ``python bench/NAME.py``, so their folder is first on ``sys.path`` and
they import each other by bare name (``import common``).
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
FASHION = ROOT.parent / "shared" / "datasets" / "fashion-sample" / "images"
FAKE_HUB = ROOT.parent / "shared" / "tools" / "fake_siglip_hub.py"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # vrec from this checkout, installed or not


def log(*a) -> None:
    """Progress, on stderr (stdout is for what a script prints as its result)."""
    print(*a, file=sys.stderr, flush=True)


class Parts:
    """Logs each part of a run as it starts and records how long it took (to keep the run short):
    ``part("search")`` ends the part before, ``part("")`` the last one."""

    def __init__(self, seconds: dict):
        self.seconds, self.name, self.t0 = seconds, None, time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        if self.name:
            self.seconds[self.name] = round(now - self.t0, 1)
        self.name, self.t0 = name, now
        log(name)


def run_json(code: str, *args, env: dict | None = None):
    """Run ``python -c code args...`` in a fresh process (from the repository's root) and return
    what it printed as JSON on the last line of its stdout."""
    p = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                       env=env)
    if p.returncode != 0:
        raise RuntimeError(f"a benchmark's child process failed (exit {p.returncode}):\n{p.stderr}")
    lines = p.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"a benchmark's child process printed no result:\n{p.stderr}")
    return json.loads(lines[-1])


def machine() -> dict:
    """The CPU, memory, GPU and library versions, as the document's header states them."""
    from importlib.metadata import version

    import hnswlib  # noqa: F401
    import numpy as np
    import open_clip
    import timm
    import torch

    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1), "python": platform.python_version(),
            "torch": torch.__version__, "open_clip": open_clip.__version__, "timm": timm.__version__,
            "hnswlib": version("hnswlib"), "numpy": np.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"}
