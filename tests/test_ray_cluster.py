"""Issue 16: a sweep on a two-node Ray cluster (both nodes on this machine, loopback only) where
the worker node has no access to the driver's files gives the local pool's table. Skipped
without Ray."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from melange.study import LocalExecutor, Sweep, run_sweep

TIMING = ["wall_s", "solve_s", "sim_s"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def two_nodes(tmp_path, monkeypatch):
    """A head node with no CPUs (so every task runs on the other node) and a worker node started
    in another directory with another HOME: it sees none of the driver's files. The cluster uses
    Ray's token authentication (RAY_AUTH_MODE=token), the token shared as a cluster's operator would."""
    import importlib.util
    import secrets

    if importlib.util.find_spec("ray") is None:  # not imported here: Ray reads its auth settings on import
        pytest.skip("ray is not installed")
    port = _free_port()
    token = tmp_path / "auth_token"
    token.write_text(secrets.token_hex(32))
    for name, value in (("RAY_AUTH_MODE", "token"), ("RAY_AUTH_TOKEN_PATH", str(token)),
                        ("RAY_USAGE_STATS_ENABLED", "0")):
        monkeypatch.setenv(name, value)  # the driver joins with the same token
    env = dict(os.environ)
    ray = ["ray", "start", "--disable-usage-stats"]
    subprocess.run([*ray, "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=0",
                    "--include-dashboard=false"], check=True, env=env, capture_output=True, timeout=120)
    elsewhere = tmp_path / "worker-home"
    elsewhere.mkdir()
    try:
        subprocess.run([*ray, f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1", "--num-cpus=2"],
                       check=True, env={**env, "HOME": str(elsewhere)}, cwd=elsewhere, capture_output=True,
                       timeout=120)
        yield f"127.0.0.1:{port}"
    finally:
        import ray as ray_module

        ray_module.shutdown()
        subprocess.run(["ray", "stop", "--force"], env=env, capture_output=True, timeout=120)


@pytest.mark.slow
def test_a_two_node_sweep_gives_the_local_pools_table(two_nodes, tmp_path):
    import melange
    from melange.scenario import BUILTIN_SCENARIOS

    scenario = tmp_path / "driver-only" / "chat.yaml"  # a scenario file only the driver has
    scenario.parent.mkdir()
    profiles = os.path.join(melange.__path__[0], "scenarios", "profiles")
    scenario.write_text((BUILTIN_SCENARIOS / "chat-120ms.yaml").read_text().replace("profile: profiles/",
                                                                                   f"profile: {profiles}/"))
    args = ["--rate", "2,8", "--only", "all,A10G", "--validate", "--requests", "1000"]
    sweep = Sweep.create(scenario, {"rate": [2.0, 8.0], "only": ["all", "A10G"]}, validate=True, requests=1000)
    run_sweep(sweep, tmp_path / "pool", executor=LocalExecutor(2))
    # The driver in its own process, as a user runs it (Ray reads the token settings when imported).
    done = subprocess.run(["melange", "sweep", str(scenario), *args, "--executor", "ray", "--address", two_nodes,
                           "-o", str(tmp_path / "ray")], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    import pandas as pd

    cluster = pd.read_csv(tmp_path / "ray" / "table.csv")
    local = pd.read_csv(tmp_path / "pool" / "table.csv")
    assert list(cluster["status"]) == ["ok"] * 4, cluster["message"].tolist()
    assert cluster.drop(columns=TIMING).equals(local.drop(columns=TIMING))
