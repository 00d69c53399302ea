"""``vrec embed --engine ray`` on a real two-node Ray cluster: ``ray start --head`` plus a second node
that joins it with ``ray start --address``, token authentication on, as on a real cluster.

The cluster is this test's own: its own ports (none of Ray's defaults), temp folder and token, and
every process it starts carries a marker in its environment, so teardown stops exactly those (never
``ray stop``, which would stop every Ray on the machine) and checks that none is left.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import catalog_copy

from vrec.ingest.embed import embed
from vrec.store.store import Store

pytest.importorskip("ray")
RAY = Path(sys.executable).with_name("ray")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds its processes in /proc (Linux)"),
              pytest.mark.skipif(not RAY.exists(), reason=f"no 'ray' command next to {sys.executable}")]
MARK = "VREC_TEST_RAY_CLUSTER"  # environment variable that tags the processes of this test's cluster
CLI = "import sys; from vrec.cli import main; sys.argv[0] = 'vrec'; main()"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def our_processes(tag: str, groups: list[int]) -> list[tuple[int, str]]:
    """Live processes (pid, command) in one of ``groups`` or whose environment carries ``MARK=tag``.

    Ray's own services stay in the process group of the ``ray start`` that launched them (some with
    a cleaned environment), its worker processes leave it (each leads a group of its own) but
    inherit the environment: between the two, every process of the cluster, and no other.
    """
    found, needle = [], f"{MARK}={tag}".encode() + b"\0"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            state, _, group = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:3]
            if state == "Z":  # a zombie: already dead, only waiting for its parent to reap it
                continue
            if int(group) in groups or needle in (entry / "environ").read_bytes():
                found.append((int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:160]))
        except (OSError, ValueError):  # gone meanwhile, or not ours to read
            continue
    return found


def ray_client_installed() -> bool:
    try:
        from ray._private.utils import get_ray_client_dependency_error
    except ImportError:
        return False
    return get_ray_client_dependency_error() is None


class Cluster:
    def __init__(self):
        # short: Ray's socket paths live under the temp folder and must stay below 108 characters
        self.dir = Path(tempfile.mkdtemp(prefix="vrc", dir="/tmp"))
        self.tag = self.dir.name
        self.token = self.dir / "token"
        self.token.write_text(secrets.token_hex(32))
        self.token.chmod(0o600)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.groups: list[int] = []
        # nothing of the caller's Ray settings (a RAY_ADDRESS, a token) may leak into this cluster
        self.bare = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        # workers at the driver's niceness: on a busy machine Ray's default (15) starves them
        self.bare.update({MARK: self.tag, "RAY_USAGE_STATS_ENABLED": "0", "RAY_worker_niceness": "0"})
        self.auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token)}

    def ray_start(self, *args: str) -> None:
        """``ray start`` (without --block it returns once the node is up) in a process group of its own."""
        p = subprocess.Popen([str(RAY), "start", "--disable-usage-stats", "--min-worker-port=0", "--max-worker-port=0",
                              f"--dashboard-agent-listen-port={free_port()}", "--object-store-memory=100000000",
                              "--include-log-monitor=false", *args],
                             env={**self.bare, **self.auth}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
        self.groups.append(p.pid)
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, f"ray start {' '.join(args)} failed:\n{out}"

    def start(self) -> None:
        # the head has one CPU and the second node two: the encoder actor (2 CPUs, see plan_workers) fits
        # only on the second node and, once it holds them, the decode tasks fit only on the head
        client = [f"--ray-client-server-port={free_port()}"] if ray_client_installed() else []  # else 10001
        self.ray_start("--head", f"--port={self.port}", f"--temp-dir={self.dir / 'ray'}", "--num-cpus=1",
                       "--include-dashboard=false", f"--dashboard-port={free_port()}", *client)
        self.ray_start(f"--address={self.address}", "--num-cpus=2")

    def vrec(self, *args, **env) -> subprocess.CompletedProcess:
        """The CLI, as a separate driver process; ``env`` on top of a Ray-free environment."""
        return subprocess.run([sys.executable, "-c", CLI, *map(str, args)], env={**self.bare, **env},
                              capture_output=True, text=True, timeout=600)

    def stop(self) -> list[tuple[int, str]]:
        """Kill every process of this cluster; return those still alive (none, or the test fails)."""
        for group in self.groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        left = our_processes(self.tag, self.groups)
        for _ in range(100):  # anything that left the process groups; then wait until the kernel has them all
            for pid, _ in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if not left:
                break
            time.sleep(0.1)
            left = our_processes(self.tag, self.groups)
        return left


@pytest.fixture(scope="module")
def cluster():
    c = Cluster()
    try:
        c.start()
        yield c
    finally:
        left = c.stop()
        shutil.rmtree(c.dir, ignore_errors=True)
        assert not left, f"Ray processes of the test cluster are still running: {left}"


def by_id(store: Path, model: str) -> tuple[list, np.ndarray]:
    ms = Store(store).model(model)
    ids = list(ms.items()["id"])
    order = np.argsort(ids)
    return [ids[i] for i in order], ms.vectors()[order]


def test_embed_on_a_two_node_cluster_with_token_auth(cluster, tmp_path):
    photos = catalog_copy(tmp_path, 16)
    # The actor pool waits for its encoder before decoding starts (a Ray Data setting, here only to
    # make the placement certain: see Cluster.start), so each node's share of the work is known.
    r = cluster.vrec("embed", photos, "--engine", "ray", "--ray-address", cluster.address, "--model", "tiny-cnn",
                     "--store", tmp_path / "ray", "--batch-size", "8", "--quiet",
                     **cluster.auth, RAY_DATA_DEFAULT_WAIT_FOR_MIN_ACTORS_S="600")
    assert r.returncode == 0, r.stderr
    note = re.search(r"Ray: decoded on 1 node\(s\) \(\S+ (\w{8}): 16\); encoded on 1 node\(s\) \(\S+ (\w{8}): 16\); "
                     r"the cluster has 2 node\(s\)\.", r.stderr)
    assert note, r.stderr
    assert note[1] != note[2]  # decoded on one node, encoded on the other: both did real work

    embed(photos, models=["tiny-cnn"], store=tmp_path / "local", batch_size=8)
    ids_ray, vec_ray = by_id(tmp_path / "ray", "tiny-cnn")
    ids_local, vec_local = by_id(tmp_path / "local", "tiny-cnn")
    assert ids_ray == ids_local and len(ids_ray) == 16
    assert np.allclose(vec_ray, vec_local, atol=1e-5)


def test_a_driver_without_the_clusters_token_is_told_what_to_set(cluster, tmp_path):
    # what a user who has only the address runs (a wrong token is tested in test_ray.py)
    r = cluster.vrec("embed", catalog_copy(tmp_path, 2), "--engine", "ray", "--ray-address", cluster.address,
                     "--model", "tiny-cnn", "--store", tmp_path / "s", "--quiet",
                     RAY_NUM_REDIS_GET_RETRIES="1")  # Ray retries a refused connection 20 times, a second apart
    assert r.returncode == 1
    assert (f"Error: The Ray cluster at '{cluster.address}' requires token authentication; set RAY_AUTH_MODE=token "
            "and put the head's token") in r.stderr
    assert "RAY_AUTH_TOKEN_PATH" in r.stderr and "Cannot reach" not in r.stderr and "Traceback" not in r.stderr
