"""Several models and SLO classes on one fleet: TP candidates, e2e SLOs, the joint MILP, fleet
files, prices, and the fleet's plan proven per pool."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from melange.cli import cli
from melange.core import EngineConfig, MelangeError, SolveOptions, Slo
from melange.fleet import instance_economics, load_fleet, solve_fleet
from melange.metrics import slo_met, to_frame
from melange.optimizer import make_problem, solve_problem
from melange.optimizer.instances import fleet_instance
from melange.optimizer.joint import Shared, joint_model, solve_joint
from melange.perf import load_catalog
from melange.perf.instances import enumerate_instances
from melange.prices import apply_prices, read_prices
from melange.rate_search import slo_bound_s
from tests.validate_scenarios import STEP

CAT = load_catalog()


# --- SLO classes: an e2e limit per request --------------------------------------------------

def test_a_batch_slo_judges_each_request_by_its_whole_latency():
    slo = Slo(None, e2e_ms=300_000)
    frame = to_frame(__import__("pandas").DataFrame({
        "request_id": [0, 1, 2], "arrival_s": [0.0] * 3, "sent_s": [0.0] * 3, "queue_s": [0.0] * 3,
        "ttft_s": [50.0, 1.0, 1.0], "e2e_s": [299.0, 301.0, np.nan], "input_tokens": [10] * 3,
        "output_tokens": [100] * 3, "gpu": ["G"] * 3, "instance": [0] * 3, "bucket_in": [0] * 3,
        "bucket_out": [0] * 3, "error": [None] * 3, "itl_s": [None] * 3}), slo)
    # A TTFT of 50 s is fine for batch; 301 s is not; an unfinished request never meets it.
    assert slo_met(frame, slo).tolist() == [True, False, False]
    assert slo_bound_s(slo, 500) == 300.0
    assert slo_bound_s(Slo(100, "decode", 3000, e2e_ms=10_000), 500) == 10.0


@pytest.mark.parametrize("kwargs, field", [({"tpot_ms": None}, "slo.tpot_ms"),
                                           ({"tpot_ms": None, "e2e_ms": 1e5, "definition": "mean_itl"}, "slo.tpot_ms"),
                                           ({"tpot_ms": 50, "e2e_ms": 1e5, "definition": "mean_itl"}, "slo.e2e_ms")])
def test_an_slo_without_a_limit_is_refused(kwargs, field):
    with pytest.raises(MelangeError, match=field):
        Slo(**kwargs)


# --- instance types from the catalog ----------------------------------------------------------

def test_tensor_parallel_candidates_follow_memory_heads_and_node_size():
    engine = EngineConfig(max_model_len=4998, max_num_batched_tokens=2048)
    big = {c.name: c for c in enumerate_instances(CAT, CAT.model("llama-2-70b"), engine)}
    assert big["H100"].instance is None and "does not fit" in big["H100"].reason
    assert big["2xH100"].instance is not None and big["2xH100"].instance.cost == pytest.approx(2 * 7.516)
    assert big["8xL4"].instance is not None and big["4xL4"].instance is None
    odd = dataclasses.replace(CAT.model("llama-2-7b"), heads=12, kv_heads=12, name="odd")
    assert "divide" in {c.name: c for c in enumerate_instances(CAT, odd, engine)}["8xH100"].reason
    # A KV cache smaller than one longest request is no instance (vLLM would refuse to start).
    t4 = {c.name: c for c in enumerate_instances(CAT, CAT.model("llama-2-7b"), engine, gpus=["T4"])}
    assert t4["T4"].instance is None and "KV cache" in t4["T4"].reason and t4["2xT4"].instance is not None


def test_a_scenario_expands_its_tensor_parallel_list_and_says_what_it_left_out():
    fleet = load_fleet("two-models")
    sc = fleet.services["llama-2-70b"]
    assert [g.name for g in sc.gpus] == ["8xL4", "8xA10G", "2xA100-80GB", "4xA100-80GB", "8xA100-80GB",
                                         "2xH100", "4xH100", "8xH100"]
    assert {g.name: g.gpus for g in sc.gpus}["4xH100"] == 4
    assert sc.hardware["4xH100"] == "H100" and "H100" in sc.excluded and "4xL4" in sc.excluded
    assert {g.name: g.cost for g in sc.gpus}["8xH100"] == pytest.approx(8 * 7.516)
    # Each type alone may not hold more H100s than the shared cap of 12.
    assert {g.name: g.max_count for g in sc.gpus}["4xH100"] == 3
    assert sc.step_models["4xH100"].kv_capacity_tokens > sc.step_models["2xH100"].kv_capacity_tokens


# --- the joint MILP ---------------------------------------------------------------------------

def _problems(seed: int, **kw):
    services, hw = fleet_instance(np.random.default_rng(seed), **kw)
    opts = SolveOptions(slice_factor=4)
    return {s: make_problem(w, g, p, opts) for s, (w, g, p) in services.items()}, hw, opts


def _usage(hw, plans):
    every = {h for per in hw.values() for h, _ in per.values()}
    return Shared({h: 10 ** 9 for h in every}, None, hw).used({s: p.counts for s, p in plans.items()})


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), frac=st.floats(0.3, 0.9))
def test_joint_plan_keeps_the_caps_and_costs_between_the_separable_bound_and_any_split(seed, frac):
    problems, hw, opts = _problems(seed, models=2, classes=1, types=4, n_in=4, n_out=3)
    free = solve_joint(problems, Shared({}, None, hw), opts)
    assert free.method == "separable"
    assert free.cost == pytest.approx(sum(solve_problem(p, opts).cost for p in problems.values()))
    used = _usage(hw, free.plans)
    caps = {h: int(n * frac) for h, n in used.items() if n}
    shared = Shared(caps, None, hw)
    try:
        joint = solve_joint(problems, shared, opts)
    except MelangeError as exc:
        assert "infeasible" in str(exc)
        return
    assert not shared.broken(joint.counts(), joint.cost)
    assert joint.status == "optimal" and joint.cost >= free.cost - 1e-6
    # Any static split of the caps between the services is a restriction of the joint model.
    names = list(problems)
    half = {h: c // 2 for h, c in caps.items()}
    split = 0.0
    for k, s in enumerate(names):
        mine = half if k == 0 else {h: c - half[h] for h, c in caps.items()}
        try:
            split += solve_joint({s: problems[s]}, Shared(mine, None, hw), opts).cost
        except MelangeError:
            return  # this split cannot serve one of them: nothing to compare
    assert joint.cost <= split + 1e-6


def test_joint_optimum_equals_the_whole_sliced_milp_solved_to_the_end():
    problems, hw, opts = _problems(7, models=2, classes=1, types=4, n_in=3, n_out=2)
    used = _usage(hw, solve_joint(problems, Shared({}, None, hw), opts).plans)
    top = max(used, key=lambda h: used[h])
    caps = {top: used[top] - 2}  # binds: the optimum must move some traffic elsewhere
    joint = solve_joint(problems, Shared(caps, None, hw), opts)
    m, _ = joint_model(problems, Shared(caps, None, hw), 4, "highs", 0.0, {s: 0.0 for s in problems})
    m.optimize(max_seconds=120)
    assert joint.status == "optimal"
    assert joint.cost == pytest.approx(m.objective_value, abs=1e-6)


def test_a_budget_below_the_cheapest_fleet_is_one_line_naming_it():
    problems, hw, opts = _problems(3, models=1, classes=2, types=3, n_in=3, n_out=2)
    free = solve_joint(problems, Shared({}, None, hw), opts)
    with pytest.raises(MelangeError, match=r"over budget \$1/h"):
        solve_joint(problems, Shared({}, 1.0, hw), opts)
    assert solve_joint(problems, Shared({}, free.cost + 1, hw), opts).cost == pytest.approx(free.cost)


# --- fleet files --------------------------------------------------------------------------------

def test_the_built_in_fleet_shares_12_h100s_and_the_joint_plan_beats_a_static_split():
    solved = solve_fleet(load_fleet(None))
    joint = solved.joint
    assert joint.method in ("joint", "joint-sliced") and joint.status == "optimal"
    h100 = Shared({"H100": 12}, None, load_fleet(None).shared.hardware).used(joint.counts())["H100"]
    assert h100 <= 12
    assert joint.separable_cost <= joint.cost < solved.split_cost
    # The TP degree is chosen: 70B runs on H100s of more than one degree, never on one GPU.
    tps = {t for t, n in joint.plans["llama-2-70b"].counts.items() if n}
    assert tps and all(t.split("x")[0] in {"2", "4", "8"} for t in tps)


def _fleet_file(tmp_path, doc: dict) -> str:
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def _service(rate: float, gpus: list[dict]) -> dict:
    return {"grid": {"input_edges": [1, 200], "output_edges": [10, 60]},
            "workload": {"rate": rate, "distribution": [[1.0]]},
            "slo": {"tpot_ms": 60, "attainment": 0.95},
            "gpus": gpus, "solver": {"slice_factor": 4},
            "simulation": {"requests": 1500, "seed": 3, "warmup_s": 5}}


G = {"name": "G", "cost": 1.0, "profile": [[19.5]], "step_time": STEP, "engine": {"max_num_seqs": 32}}
P = {**G, "name": "P", "cost": 3.0}


@pytest.mark.parametrize("change, field", [
    ({"caps": {"H200": 4}}, "caps.H200"),
    ({"models": [{"scenario": "nope.yaml"}]}, "models[0].scenario"),
    ({"models": [{"scenario": "llama-2-7b-chat.yaml",
                  "classes": [{"name": "a", "share": 0.5, "slo": {"tpot_ms": 50}}]}]}, "models.0.classes"),
    ({"budget": -1}, "budget"),
    ({"colour": "red"}, "colour"),
])
def test_bad_fleet_files_are_one_line_naming_the_field(tmp_path, change, field):
    import shutil

    from melange.fleet import BUILTIN_FLEETS

    for f in BUILTIN_FLEETS.glob("*.yaml"):
        shutil.copy(f, tmp_path / f.name)
    doc = {**yaml.safe_load((BUILTIN_FLEETS / "two-models.yaml").read_text()), **change}
    result = CliRunner().invoke(cli, ["fleet", _fleet_file(tmp_path, doc), "--solve-only"])
    assert result.exit_code == 2, result.output
    assert field.replace(".0.", "[0].") in result.output.replace(".0.", "[0].") or field in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_classes_split_a_models_rate_each_with_its_slo_and_profiles(tmp_path):
    doc = {"models": [{"name": "m", "scenario": _service(40, [G, P]), "classes": [
        {"name": "chat", "share": 0.25, "slo": {"tpot_ms": 60, "attainment": 0.95}},
        {"name": "batch", "share": 0.75, "slo": {"e2e_ms": 60000, "attainment": 0.9}}]}]}
    fleet = load_fleet(_fleet_file(tmp_path, doc))
    assert list(fleet.services) == ["m/chat", "m/batch"]
    assert fleet.services["m/chat"].workload.rate == pytest.approx(10)
    assert fleet.services["m/batch"].slo == Slo(None, e2e_ms=60000, attainment=0.9)
    assert fleet.class_of["m/batch"] == "batch" and fleet.models() == ["m"]


def test_plan_fleet_proves_each_pool_and_the_joint_plan_keeps_the_shared_cap(tmp_path):
    from melange.validate.fleet import plan_fleet

    # Each model alone wants 3 G (40 req/s at 19.5 each); only 3 G exist for both: one model
    # must take the dearer P.
    doc = {"caps": {"G": 3}, "models": [{"name": "a", "scenario": _service(40, [G, P])},
                                        {"name": "b", "scenario": _service(40, [G, P])}]}
    fleet = load_fleet(_fleet_file(tmp_path, doc))
    report = plan_fleet(fleet, max_rounds=2, requests=1500)
    assert report.method == "joint" and report.broken and not report.broken_after
    assert report.held
    used = fleet.shared.used({s: r.plan.counts for s, r in report.services.items()})
    assert used["G"] <= 3
    for r in report.services.values():
        assert r.confirmation.attainment >= 0.95 and r.goodput == pytest.approx(40 * r.confirmation.attainment)
        # the reported figures are the last check's: 4 x the traffic, seeds no step tuned on
        assert min(r.confirmation.seeds) >= 1000 and r.confirmation.counted >= 4 * 1500 * 2
    assert report.cost <= report.to_dict()["split_cost"] + 1e-9 and set(report.sources) == {"a", "b"}


def test_instance_economics_ranks_types_by_dollars_per_request_rate():
    sc = load_fleet(None).services["llama-2-7b"]
    ranked = instance_economics(sc)
    assert [e["per_rate"] for e in ranked] == sorted(e["per_rate"] for e in ranked)
    d = sc.workload.distribution
    e = ranked[0]
    cap = sc.profiles[e["type"]].max_rate
    assert e["rate"] == pytest.approx(1 / np.sum(d[d > 0] / cap[d > 0]))


# --- prices ---------------------------------------------------------------------------------

def test_price_snapshots_give_a_price_per_gpu_and_tell_sxm_from_pcie():
    aws, lam = read_prices("aws"), read_prices("lambda")
    assert aws["H100"].instance_type == "p5.48xlarge" and aws["H100"].per_gpu == pytest.approx(98.32 / 8)
    assert lam["H100-PCIe"].per_gpu < lam["H100"].per_gpu  # Lambda's PCIe card is not the SXM price
    assert "A100-80GB" not in aws and "A100-80GB-SXM" in aws  # AWS rents only the SXM module
    assert "L4" not in lam


def test_apply_prices_reprices_by_gpu_count_and_drops_what_the_cloud_does_not_sell():
    fleet = load_fleet("two-models", prices="lambda")
    sc = fleet.services["llama-2-70b"]
    lam = read_prices("lambda")
    assert {g.name: g.cost for g in sc.gpus}["8xH100"] == pytest.approx(8 * lam["H100"].per_gpu, rel=1e-6)
    assert not any("L4" in g.name or "A100-80GB" == g.name for g in sc.gpus)
    assert any("does not sell" in n for n in fleet.notes)
    small = fleet.services["llama-2-7b"]
    assert [g.name for g in small.gpus] == ["H100", "2xH100"] and set(small.profiles) == {"H100", "2xH100"}
    with pytest.raises(MelangeError, match="--prices"):
        read_prices("gcp-2031")


def test_a_price_csv_with_a_bad_row_is_one_line(tmp_path):
    bad = tmp_path / "p.csv"
    bad.write_text("accelerator,count,instance_type,region,price,spot_price\nH100,eight,x,r,9,\n")
    with pytest.raises(MelangeError, match="line 2"):
        read_prices(str(bad))
    sky = tmp_path / "vms.csv"  # SkyPilot's own column names read too
    sky.write_text("InstanceType,AcceleratorName,AcceleratorCount,vCPUs,MemoryGiB,Price,Region,GpuInfo,SpotPrice\n"
                   "p5.48xlarge,H100,8,192,2048,80.0,us-east-1,,\nm5.large,,,2,8,0.1,us-east-1,,\n")
    assert read_prices(str(sky))["H100"].per_gpu == pytest.approx(10.0)


# --- the CLI ---------------------------------------------------------------------------------

def test_fleet_solve_only_prints_the_joint_plan_the_split_and_writes_json(tmp_path):
    out = tmp_path / "fleet.json"
    result = CliRunner().invoke(cli, ["fleet", "--solve-only", "-o", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "static share of the caps" in result.output and "saves" in result.output
    assert "weights do not fit" in result.output
    doc = json.loads(out.read_text())
    assert doc["method"] in ("joint", "joint-sliced") and doc["status"] == "optimal"


def test_plan_on_a_fleet_file_says_to_run_fleet_and_tp_needs_a_catalog_gpu(tmp_path):
    from melange.fleet import BUILTIN_FLEETS

    result = CliRunner().invoke(cli, ["solve", str(BUILTIN_FLEETS / "two-models.yaml")])
    assert result.exit_code == 2 and "melange fleet" in result.output
    doc = _service(4, [{**G, "tensor_parallel": [1, 2]}])
    path = tmp_path / "tp.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = CliRunner().invoke(cli, ["solve", str(path)])
    assert result.exit_code == 2 and "tensor_parallel" in result.output and "catalog" in result.output


def test_a_missing_profile_of_an_expanded_type_names_the_file(tmp_path):
    doc = {"models": [{"scenario": {
        "model": "llama-2-7b", "workload": {"rate": 4, "distribution": [[1.0]]},
        "grid": {"input_edges": [1, 100], "output_edges": [1, 50]},
        "slo": {"tpot_ms": 100, "definition": "decode", "ttft_ms": 3000},
        "gpus": [{"name": "H100", "catalog": "H100", "step_time": "roofline", "tensor_parallel": [1, 2],
                  "profile": "profiles/none/{gpu}.yaml"}]}}]}
    with pytest.raises(MelangeError, match=r"gpus\[H100\]\.profile: file profiles/none/H100\.yaml not found"):
        load_fleet(_fleet_file(tmp_path, doc))


def test_an_interrupted_fleet_resumes_from_its_log_without_planning_again(tmp_path, monkeypatch):
    from melange.validate import fleet as fleet_mod

    doc = {"caps": {"G": 3}, "models": [{"name": "a", "scenario": _service(40, [G, P])},
                                        {"name": "b", "scenario": _service(40, [G, P])}]}
    fl = load_fleet(_fleet_file(tmp_path, doc))
    log = tmp_path / "fleet.services.jsonl"
    first = fleet_mod.plan_fleet(fl, max_rounds=2, requests=1500, log=log)
    lines = log.read_text().splitlines()
    assert len(lines) >= 2 and all(json.loads(x)["key"] for x in lines)
    log.write_text("\n".join(lines) + '\n{"key": "cut sh')  # a line cut short by a kill is ignored
    calls = []
    real = fleet_mod.plan_cheapest
    monkeypatch.setattr(fleet_mod, "plan_cheapest", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = fleet_mod.plan_fleet(load_fleet(_fleet_file(tmp_path, doc)), max_rounds=2, requests=1500, log=log)
    assert calls == []  # every per-service answer came from the log
    assert again.cost == pytest.approx(first.cost) and again.held


def test_scenarios_list_shows_the_built_in_fleets():
    result = CliRunner().invoke(cli, ["scenarios", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert all(name in result.output for name in ("two-models", "chat-batch", "chat-batch-interactive"))


def test_review_fixes_budget_split_bound_tp_cost_and_price_rows(tmp_path):
    # A budget below the fleet when no service wants the capped GPU: one line, not a traceback.
    doc = {"caps": {"P": 10}, "budget": 2.5,
           "models": [{"name": "a", "scenario": _service(40, [G, P])}, {"name": "b", "scenario": _service(4, [G, P])}]}
    with pytest.raises(MelangeError, match="over budget"):
        solve_fleet(load_fleet(_fleet_file(tmp_path, doc)))
    # A static share that cannot serve a model leaves the split without a plan, not the fleet.
    doc = {"caps": {"G": 5}, "models": [{"name": "b", "scenario": _service(40, [G, P])},
                                        {"name": "a", "scenario": _service(40, [G])}]}
    solved = solve_fleet(load_fleet(_fleet_file(tmp_path, doc)))
    assert solved.joint.cost > 0 and solved.split is None
    # decode TPOT with an e2e limit and no TTFT limit: the wait is bounded by e2e only.
    assert slo_bound_s(Slo(100, "decode", None, e2e_ms=60_000), 10) == 60.0
    # With tensor_parallel, a given cost is per GPU.
    doc = {"models": [{"scenario": {
        "model": "llama-2-7b", "workload": {"rate": 4, "distribution": [[1.0]]},
        "grid": {"input_edges": [1, 100], "output_edges": [1, 50]},
        "gpus": [{"name": "H100", "catalog": "H100", "cost": 4.0, "tensor_parallel": [1, 2], "profile": [[9.0]]}]}}]}
    costs = {g.name: g.cost for g in next(iter(load_fleet(_fleet_file(tmp_path, doc)).services.values())).gpus}
    assert costs == {"H100": 4.0, "2xH100": 8.0}
    # Rows of accelerators no catalog GPU is (Azure's fractional A10s) are skipped; spot is optional.
    csv = tmp_path / "azure.csv"
    csv.write_text("InstanceType,AcceleratorName,AcceleratorCount,Price,Region\n"
                   "Standard_NV6ads_A10_v5,A10,0.167,0.45,eastus\nStandard_NC24ads_A100_v4,A100-80GB,1,3.67,eastus\n")
    assert read_prices(str(csv))["A100-80GB-SXM"].per_gpu == pytest.approx(3.67)


def test_a_failing_joint_plan_grows_only_within_the_shared_cap(tmp_path, monkeypatch):
    """Two types on one GPU: growing the weaker one must count both against the cap."""
    from melange.validate import cheapest, fleet as fleet_mod

    seen = []

    def never_holds(sc, plan, seeds, settings, **kw):
        seen.append(dict(plan.counts))
        return cheapest.Confirmation(False, 0.5, (0.4, 0.6), 0.95, 100, list(seeds), ["seed 3: missed"], [])

    monkeypatch.setattr(cheapest, "confirm", never_holds)
    monkeypatch.setattr(cheapest, "weakest_type", lambda conf: "G2" if len(seen) % 2 else "G")
    monkeypatch.setattr(fleet_mod, "trim_plan", lambda sc, plan, **kw: (plan, None, {}))
    doc = {"caps": {"G": 6}, "models": [{"name": "a", "scenario": _service(40, [
        {**G, "catalog": None}, {**G, "name": "G2", "cost": 1.5}])}]}
    fl = load_fleet(_fleet_file(tmp_path, doc))
    fl.shared.hardware["a"]["G2"] = ("G", 2)  # G2 is two G GPUs
    from melange.core import Plan
    start = Plan({"G": 2, "G2": 1}, {"G": np.ones((1, 1)) * 0.5, "G2": np.ones((1, 1)) * 0.5}, 3.5)
    fleet_mod.confirm_within(fl, {"a": start}, None, 2, 1500, 1, None)
    for counts in seen:  # never more than 6 G GPUs, however the weakest type alternates
        assert counts.get("G", 0) + 2 * counts.get("G2", 0) <= 6
    assert len(seen) >= 2
