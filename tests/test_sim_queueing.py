"""The simulator against queueing theory: M/D/1 waiting time, Little's law, conservation."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from melange.core import BucketGrid, EngineConfig, LinearStepModel, Plan, Slo, Workload
from melange.sim import Simulation, make_arrivals, simulate

ONE_TOKEN = BucketGrid((1, 2), (1, 2))  # every request: 1 input token, 1 output token
SERVICE_S = 1.0  # constant step time = service time
SLO = Slo(tpot_ms=1e9)


@functools.cache  # the rho = 0.8 run serves two tests
def md1(rho: float, requests: int, seed: int = 7):
    """One instance, batch size 1, every request one prefill step of SERVICE_S: an M/D/1 queue."""
    workload = Workload(ONE_TOKEN, np.ones((1, 1)), rate=rho / SERVICE_S)
    model = LinearStepModel(SERVICE_S, 0.0, 0.0, 0.0, kv_capacity_tokens=10_000)
    plan = Plan({"G": 1}, {"G": np.ones((1, 1))}, cost=1.0)
    return simulate(plan, workload, {"G": model}, {"G": EngineConfig(max_num_seqs=1)}, SLO,
                    requests=requests, seed=seed)


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_md1_mean_wait_matches_pollaczek_khinchine(rho):
    result = md1(rho, 200_000)
    mu = 1 / SERVICE_S
    expected = rho / (2 * mu * (1 - rho))
    wait = result.records["queue_s"].mean()
    assert abs(wait - expected) / expected < 0.05, (wait, expected)
    # Service is deterministic: TTFT = e2e = wait + D for every request.
    assert np.allclose(result.records["e2e_s"] - result.records["queue_s"], SERVICE_S)


def test_littles_law():
    rho, n = 0.8, 200_000
    result = md1(rho, n)
    s = result.summary
    # L from the instance's own time-integral of requests in system; lambda*W from the records.
    mean_in_system = s["instances"][0]["mean_in_system"]
    lam = n / s["sim_time_s"]
    w = result.records["e2e_s"].mean()
    assert abs(mean_in_system - lam * w) / (lam * w) < 0.01
    # and with the nominal arrival rate, within sampling error
    assert abs(mean_in_system - rho * w) / (rho * w) < 0.03


small_configs = st.fixed_dictionaries({
    "rate": st.floats(0.5, 40.0),
    "counts": st.lists(st.integers(1, 3), min_size=1, max_size=2),
    "max_num_seqs": st.integers(1, 8),
    "kv": st.integers(64, 3000),
    "block": st.sampled_from([1, 4, 16]),
    "budget": st.one_of(st.none(), st.integers(4, 128)),
    "requests": st.integers(0, 150),
    "horizon": st.one_of(st.none(), st.floats(0.1, 30.0)),
    "router": st.sampled_from(["least_work", "round_robin", "random"]),
    "exact": st.booleans(),
    "seed": st.integers(0, 2**16),
})


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_configs)
def test_conservation_nothing_lost_or_duplicated(cfg):
    grid = BucketGrid((1, 20, 200), (1, 10, 100))  # long ones may not fit a small KV cache
    workload = Workload(grid, np.full((2, 2), 0.25), rate=cfg["rate"])
    names = [f"g{k}" for k in range(len(cfg["counts"]))]
    share = np.full((2, 2), 1.0 / len(names))
    plan = Plan(dict(zip(names, cfg["counts"])), {g: share for g in names}, cost=1.0)
    model = LinearStepModel(0.01, 1e-4, 1e-4, 1e-6, kv_capacity_tokens=cfg["kv"])
    engine = EngineConfig(max_num_seqs=cfg["max_num_seqs"], block_size=cfg["block"],
                          max_num_batched_tokens=cfg["budget"])
    rng = np.random.default_rng(cfg["seed"])
    arrivals = make_arrivals(workload, rng, requests=cfg["requests"])
    sim = Simulation(plan, arrivals, workload, {g: model for g in names}, {g: engine for g in names},
                     rng, router=cfg["router"], exact=cfg["exact"])
    sim.run(until=cfg["horizon"])
    result = sim.result(SLO)
    s, rec = result.summary, result.records
    assert s["n_requests"] == s["completed"] + s["failed"] + s["in_flight_at_end"]
    assert rec["request_id"].is_unique
    assert len(rec) == s["completed"] + s["failed"]
    if cfg["horizon"] is None:
        assert s["in_flight_at_end"] == 0 and s["n_requests"] == cfg["requests"]
    ok = rec[rec["error"].isna()]
    assert (ok["queue_s"] >= -1e-9).all()
    assert (ok["ttft_s"] >= ok["queue_s"]).all() and (ok["e2e_s"] >= ok["ttft_s"]).all()
    assert (rec.loc[rec["error"].notna(), "error"] == "too_long").all()
    for inst in s["instances"]:
        assert 0 <= inst["kv_peak"] <= 1
