"""Plan the day (melange/schedule, melange/sim/timeline.py): the horizon MILP and its decomposition,
replay through a changing fleet (start-up delays, drains), the loop, the strategies and the CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from melange.cli import cli
from melange.core import MelangeError, Plan
from melange.load import Load
from melange.scenario import load_scenario
from melange.schedule.compare import compare, forecast
from melange.schedule.decompose import lower_bound
from melange.schedule.loop import plan_schedule
from melange.schedule.milp import ScheduleOptions, changes_per_hour, solve_schedule, transitions
from melange.schedule.replay import Fleet, agreement, fleet_of_schedule, replay
from melange.schedule.strategies import reactive_fleet
from melange.sim.arrivals import make_arrivals, window_arrivals
from melange.sim.simulation import Simulation
from melange.sim.timeline import Timeline, TimelineSimulation

W = 300.0  # window length of the small loads here


@pytest.fixture(scope="module")
def sc():
    """The default scenario with uniform lengths in each bucket (a load gives shares, not lengths)."""
    s = load_scenario()
    s.workload = replace(s.workload, lengths="uniform", trace=None)
    return s


def step_load(sc, rates, cv=1.0) -> Load:
    """Windows of W seconds at `rates`, the default scenario's length mix."""
    T = len(rates)
    return Load("steps", sc.workload.grid, W, np.array(rates, dtype=float), np.full(T, cv),
                np.broadcast_to(sc.workload.distribution, (T, *sc.workload.grid.shape)).copy())


# --- the optimizer ------------------------------------------------------------------------

def test_decomposition_matches_the_whole_milp_and_bounds_it(sc):
    load = step_load(sc, [8, 30, 12, 45, 45, 6])
    fast = solve_schedule(load, sc.gpus, sc.profiles, sc.solve)
    whole = solve_schedule(load, sc.gpus, sc.profiles, sc.solve, ScheduleOptions(prove_s=30.0, gap=1e-6))
    assert fast.method == "decomposition"
    assert whole.method == ("decomposition + milp" if fast.gap > 1e-6 else "decomposition")
    assert fast.bound <= whole.cost + 1e-9 and whole.bound <= whole.cost + 1e-9
    assert whole.cost <= fast.cost + 1e-9  # the whole MILP, started from the decomposition, never loses
    assert fast.cost <= whole.cost * (1 + fast.gap) + 1e-9  # the printed gap covers the difference
    # Every window's fleet carries its load under the schedule's own split.
    cap = np.stack([sc.profiles[g.name].max_rate for g in sc.gpus], axis=-1)
    for t in range(load.windows):
        rates = load.rate[t] * load.distribution[t]
        used = np.einsum("ij,ijg->g", rates, np.divide(fast.share[t], cap, out=np.zeros_like(cap), where=cap > 0))
        assert np.all(used <= fast.counts[t] + 1e-6)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 50), min_size=1, max_size=12), st.floats(0, 30), st.floats(0, 2), st.floats(0, 2))
def test_change_aware_bound_is_below_any_path(serve, start0, a, b):
    """The bound's LP is at most the cost of the path that serves exactly each window's optimum."""
    serve = np.array(serve)
    prev = np.concatenate([[start0], serve[:-1]])
    exact = serve.sum() + a * np.maximum(serve - prev, 0).sum() + b * np.maximum(prev - serve, 0).sum()
    assert lower_bound(serve, start0, a, b) <= exact + 1e-6
    assert lower_bound(serve, start0, a, b) >= serve.sum() - 1e-6


def test_min_up_time_change_cap_static_and_availability_are_honoured(sc):
    load = step_load(sc, [5, 40, 5, 40, 5, 40, 5, 5, 40, 5, 40, 5])
    free = solve_schedule(load, sc.gpus, sc.profiles, sc.solve)
    up = solve_schedule(load, sc.gpus, sc.profiles, sc.solve, ScheduleOptions(min_up_windows=3, time_limit_s=20))
    for g in range(len(sc.gpus)):  # last in, first out: a start at t still serves at t + 1 and t + 2
        alive = []
        for t in range(load.windows):
            for _ in range(int(up.stops[t, g])):
                assert t - alive.pop() >= 3
            alive += [t] * int(up.starts[t, g])
    assert up.cost >= free.cost - 1e-9 and up.bound <= up.cost + 1e-9
    capped = solve_schedule(load, sc.gpus, sc.profiles, sc.solve, ScheduleOptions(max_changes_per_hour=1, time_limit_s=20))
    assert changes_per_hour(capped.counts, np.zeros(len(sc.gpus), int), W) <= 1
    assert changes_per_hour(free.counts, np.zeros(len(sc.gpus), int), W) > 1  # the cap bound something
    static = solve_schedule(load, sc.gpus, sc.profiles, sc.solve, ScheduleOptions(static=True))
    assert np.all(static.counts == static.counts[0]) and static.cost >= free.cost - 1e-9
    avail = np.full((load.windows, len(sc.gpus)), 1000)
    avail[:, [g.name for g in sc.gpus].index("H100")] = 1
    limited = solve_schedule(load, sc.gpus, sc.profiles, sc.solve, ScheduleOptions(availability=avail))
    h = [g.name for g in sc.gpus].index("H100")
    booking = limited.counts[:, h] + np.concatenate([limited.starts[1:, h], [0]])  # held while booting too
    assert np.all(booking <= 1)


def test_an_unservable_window_and_bad_options_are_one_line_errors(sc):
    load = step_load(sc, [5, 5])
    with pytest.raises(MelangeError, match=r"^schedule.min_up_windows: must be >= 1"):
        solve_schedule(load, sc.gpus, sc.profiles, sc.solve, ScheduleOptions(min_up_windows=0))
    with pytest.raises(MelangeError, match=r"^schedule.initial: unknown GPU type 'X'"):
        solve_schedule(load, sc.gpus, sc.profiles, sc.solve, ScheduleOptions(initial={"X": 1}))
    zero = {g: replace(p, max_rate=np.zeros_like(p.max_rate)) for g, p in sc.profiles.items()}
    with pytest.raises(MelangeError, match=r"^infeasible: no GPU type can serve .* in window 0"):
        solve_schedule(load, sc.gpus, zero, sc.solve)


# --- replay through a changing fleet ------------------------------------------------------

def two_h100s(sc, stop_s: tuple[float, float]) -> Timeline:
    """Two H100 instances serving from 0 until `stop_s`, all traffic on H100."""
    names = [g.name for g in sc.gpus]
    h = names.index("H100")
    tables = np.zeros((1, *sc.workload.grid.shape, len(names)))
    tables[..., h] = 1.0
    return Timeline(names, np.array([h, h]), np.zeros(2), np.array(stop_s, dtype=float), np.zeros(1), tables)


def test_a_fleet_that_never_changes_replays_exactly_as_the_one_rate_simulator(sc):
    plan = Plan({"H100": 2}, {"H100": np.ones(sc.workload.grid.shape)}, 0.0)
    work = replace(sc.workload, rate=20.0)
    arrivals = make_arrivals(work, np.random.default_rng(3), requests=3000)
    timeline = two_h100s(sc, (np.inf, np.inf))
    one = Simulation(plan, arrivals, work, sc.step_models, sc.engines, np.random.default_rng(9))
    two = TimelineSimulation(timeline, arrivals, work, sc.step_models, sc.engines, np.random.default_rng(9))
    one.run(), two.run()
    a, b = one.records(), two.records()
    assert len(a) == len(b) == 3000
    for col in ("instance", "ttft_s", "e2e_s", "queue_s"):
        assert np.array_equal(a[col].to_numpy(), b[col].to_numpy()), col


def test_removing_an_instance_mid_stream_loses_no_request(sc):
    work = replace(sc.workload, rate=24.0)
    arrivals = make_arrivals(work, np.random.default_rng(5), duration_s=200.0)
    stop = 100.0
    timeline = two_h100s(sc, (stop, np.inf))
    sim = TimelineSimulation(timeline, arrivals, work, sc.step_models, sc.engines, np.random.default_rng(1))
    sim.run()
    rec = sim.records()
    assert len(rec) == len(arrivals) and rec["error"].isna().all() and np.isfinite(rec["e2e_s"]).all()
    mine = rec[rec["instance"] == 0]
    assert (mine["arrival_s"] <= stop).all()  # nothing new after its stop ...
    assert ((mine["arrival_s"] + mine["e2e_s"]) > stop).any()  # ... and it drained what it held
    assert sim.last_finish_s()[0] > stop


def test_a_ramp_faster_than_the_start_up_is_caught_unless_provisioned_ahead(sc):
    load = step_load(sc, [6, 6, 48, 48])
    s = solve_schedule(load, sc.gpus, sc.profiles, sc.solve)
    assert s.counts[2].sum() > s.counts[1].sum()
    ahead = fleet_of_schedule(s)
    assert np.all(ahead.asked_s <= ahead.timeline.ready_s) and ahead.asked_s.min() < 0  # asked 300 s early
    good = replay(sc, load, ahead, seed=4)
    assert good.held, good.windows[["window", "attainment", "reason"]]
    # The same schedule asked for at each window's start: the new instances serve 300 s late.
    late_ready = ahead.timeline.ready_s + np.where(ahead.timeline.ready_s > 0, s.startup_s[ahead.timeline.kind], 0.0)
    late = Fleet(replace(ahead.timeline, ready_s=late_ready), late_ready - s.startup_s[ahead.timeline.kind],
                 ahead.cost_per_hour, ahead.gpus_per_instance)
    bad = replay(sc, load, late, seed=4)
    row = bad.windows.set_index("window").loc[2]
    assert not row["held"] and row["attainment"] < good.windows.set_index("window").loc[2, "attainment"]
    # A reactive autoscaler sees the ramp only once it has come.
    fleet, solves = reactive_fleet(sc, load, 4, {g: int(n) for g, n in zip(s.gpus, s.counts[0]) if n})
    assert solves > 0 and not replay(sc, load, fleet, seed=4).windows.set_index("window").loc[2, "held"]


def test_windows_draw_the_same_requests_in_any_span_and_split_replays_agree(sc):
    load = step_load(sc, [10, 20, 15, 25], cv=2.0)
    whole, _ = window_arrivals([load.window(t, sc.workload) for t in range(4)], W, 0, 11)
    part, _ = window_arrivals([load.window(t, sc.workload) for t in range(2, 4)], W, 2, 11)
    later = whole.time_s >= 2 * W
    assert np.array_equal(whole.time_s[later], part.time_s) and np.array_equal(whole.input_tokens[later], part.input_tokens)
    fleet = fleet_of_schedule(solve_schedule(load, sc.gpus, sc.profiles, sc.solve))
    one = replay(sc, load, fleet, seed=2)
    from melange.study.executor import LocalExecutor

    two = replay(sc, load, fleet, seed=2, parts=2, executor=LocalExecutor(2))  # on the process pool
    assert one.requests <= two.requests  # the second part re-runs the warm-up's tail
    assert agreement(one.windows, two.windows) == 1.0
    assert np.allclose(one.windows["attainment"], two.windows["attainment"], atol=0.01)
    assert abs(one.cost - two.cost) < 1e-3 * one.cost  # each drain counted once, ending within seconds


def test_paid_time_counts_start_ups_and_drains(sc):
    load = step_load(sc, [20, 2, 20])
    s = solve_schedule(load, sc.gpus, sc.profiles, sc.solve, ScheduleOptions(drain_s=0.0))
    run = replay(sc, load, fleet_of_schedule(s), seed=1)
    # As run: what was planned (start-ups included) plus each stopped instance's real drain.
    assert run.cost >= s.cost - 1e-9 and run.cost <= s.cost * 1.05
    starts, stops = transitions(s.counts, np.zeros(len(s.gpus), int))
    assert run.changes == int(starts.sum() + stops.sum())


# --- the loop and the strategies ----------------------------------------------------------

def test_the_loop_tightens_a_failing_window_until_it_holds(sc):
    load = step_load(sc, [10, 28, 10])
    tight = {g: replace(p, max_rate=p.max_rate * 1.8) for g, p in sc.profiles.items()}  # optimistic profiles
    bold = replace(sc, profiles=tight)
    report = plan_schedule(bold, load, ScheduleOptions(), seed=0, rounds=6)
    assert not report.rounds[0].replay.held and report.rounds[0].tightened
    assert report.best is not None and report.best.replay.held
    assert report.best.schedule.cost > report.rounds[0].schedule.cost
    held = [r for r in report.rounds if r.replay.held]
    assert report.best.schedule.cost == min(r.schedule.cost for r in held)  # the cheapest that held
    if len(report.rounds) > report.rounds.index(held[0]) + 1:  # a loosening round followed the first hold
        assert held[0].loosened and set(held[0].loosened) <= {t for r in report.rounds for t in r.tightened}


def test_forecast_takes_each_bucket_at_its_busiest_and_compare_runs_the_four(sc):
    load = step_load(sc, [4, 8, 6, 5, 9, 7, 5, 6])
    one = forecast(load, 4, 2, 2, history=1)
    assert np.allclose(one.rate, load.rate[2:4])
    two = forecast(load, 4, 2, 2, history=2)
    assert np.allclose(two.rate, [6, 8])
    with pytest.raises(MelangeError, match="^--history"):
        forecast(load, 1, 2, 2, history=1)
    out = compare(sc, load, 4, 4, 2, ScheduleOptions(), seed=0, history=2, rounds=2)
    assert list(out) == ["static", "reactive", "dayahead", "oracle"]
    assert all(o.replay.requests == out["oracle"].replay.requests for o in out.values())  # the same replay
    static = out["static"]
    assert static.replay.changes >= 1 and static.planned_cost >= out["oracle"].planned_cost - 1e-9


# --- the command --------------------------------------------------------------------------

def test_schedule_command_writes_resumes_and_refuses_bad_input(tmp_path, sc):
    runner = CliRunner()
    args = ["schedule", "--load", "azure-conv-hour", "--windows", "0:3", "--workers", "1", "-o", str(tmp_path)]
    first = runner.invoke(cli, args)
    assert first.exit_code in (0, 1), first.output
    doc = json.loads((tmp_path / "schedule.json").read_text())
    assert doc["schedule"]["counts"] and len(doc["windows"]) == 3 and doc["proof_seed"] == doc["tuning_seed"] + 1000
    assert (tmp_path / "schedule.csv").read_text().startswith("window,start_s,rate,L4,A10G,A100-80GB,H100,cost")
    assert (tmp_path / "schedule.png").is_file()
    parts = sorted((tmp_path / "parts").glob("part-*.json"))
    assert parts
    again = runner.invoke(cli, args)  # the proof's parts are read back, not replayed
    assert again.exit_code == first.exit_code
    resumed = json.loads((tmp_path / "schedule.json").read_text())["replay"]
    assert resumed["wall_s"] < doc["replay"]["wall_s"]
    assert {k: v for k, v in resumed.items() if k != "wall_s"} == {k: v for k, v in doc["replay"].items() if k != "wall_s"}
    for bad, field in ((["--windows", "5:2"], "--windows"), (["--load", "nope"], "load"),
                       (["--windows", "0:99"], "--windows")):
        result = runner.invoke(cli, ["schedule", *bad, "-o", str(tmp_path / "x")] +
                               ([] if "--load" in bad else ["--load", "azure-conv-hour"]))
        assert result.exit_code == 2 and field in result.output and len(result.output.strip().splitlines()) == 1, \
            result.output


def test_scenario_availability_caps_reach_the_schedule(tmp_path):
    import yaml

    from melange.schedule import resolve
    from melange.scenario import BUILTIN_SCENARIOS

    doc = yaml.safe_load((BUILTIN_SCENARIOS / "default.yaml").read_text())
    doc["schedule"] = {"load": "azure-conv-hour", "windows": 3, "availability": {"H100": [1, 0, 1]}}
    for g in doc["gpus"]:
        g["profile"] = str(BUILTIN_SCENARIOS / g["profile"])
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    job = resolve(load_scenario(tmp_path / "s.yaml"))
    h = [g["name"] for g in doc["gpus"]].index("H100")
    assert job.options.availability[:, h].tolist() == [1, 0, 1]
    doc["schedule"]["availability"] = {"H200": 3}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(MelangeError, match=r"^schedule.availability.H200: not a GPU type"):
        resolve(load_scenario(tmp_path / "s.yaml"))


def test_reactive_never_leaves_the_fleet_without_a_serving_instance(sc):
    """A swing of the target between types once stopped every serving instance while the new ones
    still booted (found on a ServeGen day at 5 % of its rate)."""
    load = step_load(sc, [40, 2, 2, 2, 40, 2])
    fleet, _ = reactive_fleet(sc, load, 3, {"H100": 3})
    tl = fleet.timeline
    for t in np.arange(0, load.duration_s, 10.0):
        assert tl.serving(t).sum() >= 1, t
    booted_then_stopped = (tl.stop_s < tl.ready_s)
    assert np.all(fleet.asked_s[booted_then_stopped] <= tl.stop_s[booted_then_stopped])
