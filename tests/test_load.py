"""Loads over time (melange/load.py): window parsing, loads from traces and rate tables, the
JSON document, the built-in loads, the ServeGen extraction script's aggregation, and the CLI."""

from __future__ import annotations

import importlib.util
import json
import re
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from melange.cli import cli
from melange.core import Arrival, BucketGrid, MelangeError, Workload
from melange.load import (MIN_CV, Load, builtin_loads, load_document, load_from_table, load_from_trace,
                          parse_window, read_load, write_load)
from melange.traces import Trace
from tests.test_hardening import one_line_error

ROOT = Path(__file__).parent.parent
GRID = BucketGrid((1, 100, 1000), (1, 50, 300))
GRID_4K = BucketGrid((1, 25, 100, 250, 500, 1000, 2000, 4000), (1, 25, 100, 250, 500, 1000))
# What scripts/extract_servegen.py printed for the shipped file (see loads/README.md).
SERVEGEN_MEAN, SERVEGEN_PEAK = 195.84, 582.99
SERVEGEN_SNAPSHOT = Path(os.environ.get("SERVEGEN_DIR", "/work/.mirror/alibaba+ServeGen/repo"))


def script():
    """scripts/extract_servegen.py as a module."""
    spec = importlib.util.spec_from_file_location("extract_servegen", ROOT / "scripts" / "extract_servegen.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def small_load(**change) -> Load:
    fields = {"name": "x", "grid": GRID, "window_s": 60.0, "rate": [1.0, 0.0, 2.0], "cv": [1.0, 1.0, 2.5],
              "distribution": np.broadcast_to(np.array([[0.25, 0.25], [0.5, 0.0]]), (3, 2, 2)).copy()}
    fields.update(change)
    return Load(**fields)


# --- parse_window ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [("10m", 600.0), ("600s", 600.0), ("600", 600.0), ("1h", 3600.0),
                                           ("90s", 90.0), ("2.5m", 150.0)])
def test_parse_window(text, seconds):
    assert parse_window(text) == seconds


@pytest.mark.parametrize("text", ["", "10x", "m", "-5m", "0", "0s", "nan", "1h30"])
def test_parse_window_errors_name_the_option(text):
    with pytest.raises(MelangeError) as info:
        parse_window(text)
    assert str(info.value).startswith("--window:") and "\n" not in str(info.value)


# --- Load ---------------------------------------------------------------------------------

def test_load_properties_span_scale_and_window():
    load = small_load()
    assert load.windows == 3 and load.duration_s == 180.0
    assert load.start_s.tolist() == [0.0, 60.0, 120.0]
    assert load.mean_rate == pytest.approx(1.0) and load.peak_rate == 2.0
    part = load.span(1, 2)
    assert part.rate.tolist() == [0.0, 2.0] and part.cv.tolist() == [1.0, 2.5] and part.distribution.shape == (2, 2, 2)
    assert load.scaled(3).rate.tolist() == [3.0, 0.0, 6.0] and load.rate.tolist() == [1.0, 0.0, 2.0]
    template = Workload(GRID, np.full((2, 2), 0.25), 9.0, lengths="trace", trace="t.csv")
    first = load.window(0, template)
    assert first.rate == 1.0 and first.arrival == Arrival("poisson") and first.lengths == "trace"
    assert first.trace == "t.csv" and np.allclose(first.distribution, [[0.25, 0.25], [0.5, 0.0]])
    assert load.window(2, template).arrival == Arrival("gamma", cv=2.5)


def test_idle_window_gets_the_loads_mix():
    mixes = np.array([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]])
    load = small_load(distribution=mixes)  # window 1 is idle (rate 0): no shares of its own
    idle = load.window(1, Workload(GRID, np.full((2, 2), 0.25), 1.0))
    assert idle.rate == 0.0 and np.allclose(idle.distribution, [[1 / 3, 0.0], [0.0, 2 / 3]])


@pytest.mark.parametrize("change, field", [
    ({"rate": [1.0, -0.5, 2.0]}, "load.rate[1]: must be >= 0"),
    ({"cv": [1.0, 0.0, 1.0]}, "load.cv[1]: must be > 0"),
    ({"rate": [1.0, np.nan, 2.0]}, "load.rate[1]: must be a finite number"),
    ({"window_s": 0.0}, "load.window_s:"),
    ({"cv": [1.0, 1.0]}, "load.cv: shape"),
    ({"distribution": np.zeros((3, 2, 3))}, "load.distribution: shape"),
    ({"distribution": np.full((3, 2, 2), 0.3)}, "load.distribution[0]: shares sum to 1.2"),
    ({"outside_grid": [0.0, 0.1, 1.5]}, "load.outside_grid[2]: must be in [0, 1]"),
])
def test_bad_loads_name_the_field(change, field):
    with pytest.raises(MelangeError) as info:
        small_load(**change)
    assert str(info.value).startswith(field) and "\n" not in str(info.value)


def test_span_and_scale_out_of_range():
    load = small_load()
    for first, count in ((3, 1), (-1, 2), (1, 3), (0, 0)):
        with pytest.raises(MelangeError, match="^--windows:"):
            load.span(first, count)
    with pytest.raises(MelangeError):
        load.scaled(-1.0)
    with pytest.raises(MelangeError, match="^load.window:"):
        load.window(3, Workload(GRID, np.full((2, 2), 0.25), 1.0))


# --- load_from_trace ----------------------------------------------------------------------

def synthetic_trace() -> Trace:
    """Window 0 (0-100 s): 10 requests, in bucket (0, 0); window 1: 80 requests at random times
    with a known mix; window 2: 30 evenly spaced, the last at exactly 300 s (the span)."""
    rng = np.random.default_rng(7)
    w0 = np.arange(10) * 10.0
    w1 = np.sort(100.0 + rng.uniform(0, 100, 80))
    w2 = 200.0 + np.arange(1, 31) * (100.0 / 30)
    arrivals = np.concatenate([w0, w1, w2])
    inputs = np.concatenate([np.full(10, 10), np.tile([10, 500, 500, 5000], 20), np.full(30, 500)])
    outputs = np.concatenate([np.full(10, 10), np.tile([10, 100, 10, 10], 20), np.full(30, 100)])
    return Trace(inputs, outputs, arrivals)


def test_load_from_trace_rates_cv_and_histograms():
    trace = synthetic_trace()
    load = load_from_trace(trace, GRID, 100.0, "syn", "made up")
    assert load.windows == 3 and load.window_s == 100.0 and load.attribution == "made up"
    assert load.rate.tolist() == [0.1, 0.8, 0.3]  # 10, 80 and 30 requests per 100 s
    assert load.cv[0] == MIN_CV and load.cv[2] == pytest.approx(MIN_CV, abs=1e-3)  # evenly spaced: cv ~ 0
    # Window 1: 60 of its 80 requests inside the grid (5000 input tokens is outside): its own mix.
    assert load.outside_grid.tolist() == [0.0, 0.25, 0.0]
    assert np.allclose(load.distribution[1], [[1 / 3, 0.0], [1 / 3, 1 / 3]])
    # Windows 0 and 2 have fewer than 50 requests inside the grid: the whole trace's histogram.
    whole = GRID.histogram(trace.input_tokens, trace.output_tokens)
    assert np.allclose(load.distribution[0], whole) and np.allclose(load.distribution[2], whole)


def test_poisson_window_cv_is_about_one_and_own_histogram_from_50_requests():
    rng = np.random.default_rng(3)
    arrivals = np.cumsum(rng.exponential(0.02, 20000))  # 50 req/s for ~400 s
    inputs = rng.choice([10, 500], len(arrivals), p=[0.7, 0.3])
    trace = Trace(inputs, np.full(len(arrivals), 10), arrivals - arrivals[0])
    load = load_from_trace(trace, GRID, 100.0, "poisson")
    assert np.all(np.abs(load.cv - 1.0) < 0.05), load.cv
    assert np.all(np.abs(load.rate[:-1] - 50.0) < 3.0)
    for t in range(load.windows):
        mine = (trace.arrival_s >= t * 100) & (trace.arrival_s < (t + 1) * 100)
        assert load.distribution[t, 0, 0] == pytest.approx(np.mean(inputs[mine] == 10), abs=1e-9)


def test_last_partial_window_kept_from_half_a_window():
    arrivals = np.array([0.0, 10.0, 50.0, 90.0, 110.0, 130.0, 150.0])  # span 150 s: tail of 50 s
    trace = Trace(np.full(7, 10), np.full(7, 10), arrivals)
    kept = load_from_trace(trace, GRID, 100.0, "t")
    assert kept.windows == 2 and kept.rate.tolist() == [0.04, 3 / 50]
    cut = load_from_trace(Trace(np.full(6, 10), np.full(6, 10), arrivals[:-1]), GRID, 100.0, "t")  # tail 30 s
    assert cut.windows == 1 and cut.rate.tolist() == [0.04]


def test_load_from_trace_errors():
    with pytest.raises(MelangeError, match="^trace: has no arrival times"):
        load_from_trace(Trace(np.array([10]), np.array([10])), GRID, 60.0, "t")
    with pytest.raises(MelangeError, match="^--window:"):
        load_from_trace(Trace(np.full(3, 10), np.full(3, 10), np.array([0.0, 1.0, 2.0])), GRID, 60.0, "t")


# --- rate table ---------------------------------------------------------------------------

def test_load_from_table(tmp_path):
    mix = np.array([[0.5, 0.1], [0.4, 0.0]])
    (tmp_path / "r.csv").write_text("start_s,rate,cv\n0,2,1\n300,4.5,3\n600,0,1\n")
    load = load_from_table(tmp_path / "r.csv", GRID, mix, "tab")
    assert load.window_s == 300.0 and load.rate.tolist() == [2.0, 4.5, 0.0] and load.cv.tolist() == [1.0, 3.0, 1.0]
    assert np.allclose(load.distribution, mix) and load.distribution.shape == (3, 2, 2)
    (tmp_path / "nocv.csv").write_text("start_s,rate\n0,2\n60,3\n")
    assert load_from_table(tmp_path / "nocv.csv", GRID, mix, "t").cv.tolist() == [1.0, 1.0]
    for body, what in (("start_s,rate\n0,1\n60,2\n150,3\n", "equal steps"), ("start_s,rate\n10,1\n70,2\n", "start at 0"),
                       ("start,rate\n0,1\n60,2\n", "missing column 'start_s'"), ("start_s,rate\n0,1\n60,x\n", "'rate'"),
                       ("start_s,rate\n0,1\n", "at least 2 rows"), ("start_s,rate\n0,1\n60,-2\n", re.escape("load.rate[1]"))):
        (tmp_path / "bad.csv").write_text(body)
        with pytest.raises(MelangeError, match=what):
            load_from_table(tmp_path / "bad.csv", GRID, mix, "t")


# --- documents ----------------------------------------------------------------------------

def test_round_trip(tmp_path):
    load = load_from_trace(synthetic_trace(), GRID, 100.0, "syn", "line one\nline two")
    path = write_load(tmp_path / "syn.json", load)
    back = read_load(path, GRID)
    assert back.name == "syn" and back.attribution == "line one\nline two" and back.window_s == 100.0
    assert np.allclose(back.rate, load.rate, rtol=1e-6) and np.allclose(back.cv, load.cv, rtol=1e-6)
    assert np.allclose(back.distribution, load.distribution, atol=2e-6)
    assert np.allclose(back.distribution.sum(axis=(1, 2)), 1.0, atol=1e-12)  # renormalised on reading
    assert np.allclose(back.outside_grid, load.outside_grid, atol=1e-6)
    assert json.loads(path.read_text()) == load_document(load)


def test_read_load_errors(tmp_path):
    path = write_load(tmp_path / "l.json", small_load())
    with pytest.raises(MelangeError, match="^load.grid: the scenario.s input_edges .* are not among the load.s"):
        read_load(path, GRID_4K)
    with pytest.raises(MelangeError, match="^load: 'nope' not found \\(built-in loads: azure-conv-hour, servegen-m-large"):
        read_load("nope")
    doc = json.loads(path.read_text())
    for key, value, what in (("rate", "fast", "load.rate: must be a list of numbers"),
                             ("distribution", [[0.5, 0.5]] * 3, "load.distribution: must be 3 rows"),
                             ("window_s", "1m", "load.window_s:"), ("cv", [1, -1, 1], "load.cv[1]: must be > 0")):
        (tmp_path / "bad.json").write_text(json.dumps({**doc, key: value}))
        with pytest.raises(MelangeError) as info:
            read_load(tmp_path / "bad.json")
        assert str(info.value).startswith(what)


# --- built-in loads -----------------------------------------------------------------------

def test_builtin_servegen_load():
    load = read_load("servegen-m-large", GRID_4K)
    assert load.windows == 2016 and load.window_s == 600.0 and load.duration_s == 14 * 86400
    assert load.mean_rate == pytest.approx(SERVEGEN_MEAN, rel=0.02)
    assert load.peak_rate == pytest.approx(SERVEGEN_PEAK, rel=0.02)
    assert np.all(load.rate > 0) and np.all(load.cv >= 1.0)  # every window busy, burstier than Poisson
    assert np.allclose(load.distribution.sum(axis=(1, 2)), 1.0)
    assert 0 < float(np.average(load.outside_grid, weights=load.rate)) < 0.05
    assert "f891d11" in load.attribution and "2505.09999" in load.attribution
    assert (ROOT / "melange" / "scenarios" / "loads" / "LICENSE-servegen").read_text().lstrip().startswith("Apache License")
    assert (ROOT / "melange" / "scenarios" / "loads" / "servegen-m-large.json").stat().st_size < 2_000_000


def test_builtin_azure_load_matches_its_trace():
    load = read_load("azure-conv-hour")
    assert builtin_loads() == ["azure-conv-hour", "servegen-m-large"]
    assert load.windows == 12 and load.window_s == 300.0 and load.grid == BucketGrid.paper()
    from melange.traces import load_trace

    rebuilt = load_from_trace(load_trace("splitwise_conv"), BucketGrid.paper(), 300.0, load.name, load.attribution)
    assert np.allclose(load.rate, rebuilt.rate, rtol=1e-6) and np.allclose(load.distribution, rebuilt.distribution, atol=2e-6)
    lengths = np.minimum(300.0, 3501.721937 - load.start_s)  # the last window is 202 s long
    assert float(np.sum(load.rate * lengths)) == pytest.approx(19366, abs=1)  # every request counted
    # Merged onto the 4k grid: the requests past 4,000 input or 1,000 output tokens are left out.
    cut = read_load("azure-conv-hour", GRID_4K)
    kept = 1.0 - cut.outside_grid
    assert np.allclose(cut.rate, load.rate * kept) and np.all((kept > 0.75) & (kept < 1.0))
    assert np.allclose(cut.distribution.sum(axis=(1, 2)), 1.0)


# --- the ServeGen extraction script -------------------------------------------------------

FAKE_TRACES = {  # client: rows (start, rate, cv, law, p1, p2); an empty law = no traffic
    0: ["0,2,1.5,Gamma,0.4,1.2", "600,1,0.5,Weibull,2.1,1.0", "1200,0,0,,0,0", "1800,3,2,Gamma,0.25,1.3"],
    1: ["0,1,3,Weibull,0.5,0.4", "600,0,0,,0,0", "1200,0,0,,0,0", "1800,1,1,Gamma,1.0,1.0"],
}
FAKE_DATASETS = {
    0: {"0": {"input_tokens": "{10: 0.5, 300: 0.5}", "output_tokens": "{50: 1.0}"},
        "600": {"input_tokens": "{3000: 1.0}", "output_tokens": "{600: 0.25, 2000: 0.75}"},
        "1200": {"input_tokens": "{}", "output_tokens": "{}"}},  # empty: skipped, block 600 holds
    1: {"0": {"input_tokens": "{0: 0.2, 120: 0.8}", "output_tokens": "{5: 1.0}"}},
}


def fake_servegen(root: Path) -> Path:
    folder = root / "data" / "language" / "m-large"
    folder.mkdir(parents=True)
    for cid, rows in FAKE_TRACES.items():
        (folder / f"chunk-{cid}-trace.csv").write_text("\n".join(rows) + "\n")
        (folder / f"chunk-{cid}-dataset.json").write_text(json.dumps(FAKE_DATASETS[cid]))
    return root


def test_extract_servegen_aggregates_by_hand(tmp_path, capsys):
    sg = script()
    root = fake_servegen(tmp_path / "sg")
    sg.main(["--servegen", str(root), "-o", str(tmp_path / "a.json")])
    assert "4 windows of 600s" in capsys.readouterr().out
    sg.main(["--servegen", str(root), "-o", str(tmp_path / "b.json")])
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    got = read_load(tmp_path / "a.json", GRID_4K)
    # By hand, on the 4k grid: input buckets 1-25-100-250-500-1000-2000-4000, output 1-25-100-250-500-1000.
    dist = np.zeros((4, 7, 5))
    # Window 0: client 0 (2 req/s): in 10 | 300 (buckets 0 | 3), out 50 (bucket 1); client 1 (1 req/s):
    # in 0 (outside) 0.2 | 120 (bucket 2) 0.8, out 5 (bucket 0). Inside: 2*1 + 1*0.8 = 2.8 of 3.
    dist[0, 0, 1], dist[0, 3, 1], dist[0, 2, 0] = 1 / 2.8, 1 / 2.8, 0.8 / 2.8
    dist[1, 6, 4] = 1.0  # client 0 alone, block 600: in 3000 (bucket 6), out 600 (bucket 4) 0.25 | 2000 (outside)
    # Window 2 is idle. Window 3: client 0 (3 req/s) still on block 600 (block 1200 is empty), client 1 (1 req/s).
    dist[3, 6, 4], dist[3, 2, 0] = 0.75 / 1.55, 0.8 / 1.55
    expect = Load("servegen-m-large", GRID_4K, 600.0, rate=[3.0, 1.0, 0.0, 4.0],
                  cv=[np.sqrt((2 * 1.5**2 + 1 * 3**2) / 3), 0.5, 1.0, np.sqrt((3 * 2**2 + 1 * 1**2) / 4)],
                  distribution=dist, attribution=got.attribution,
                  outside_grid=[1 - 2.8 / 3, 0.75, 0.0, 1 - 1.55 / 4])
    assert "Sum of 2 clients per 10-minute window" in got.attribution and "f891d11" in got.attribution
    # The file is on the paper grid; merged onto the 4k grid nothing more falls outside here.
    for field in ("rate", "cv", "distribution", "outside_grid"):
        assert np.allclose(getattr(got, field), getattr(expect, field), atol=2e-6), field


def test_extract_servegen_client_without_lengths(tmp_path):
    """A client whose dataset file the snapshot lacks counts in the rate and cv, not in the mix."""
    sg = script()
    starts = np.array([0, 600])
    joint = np.zeros((1, *GRID.shape))
    joint[0, 0, 0] = 1.0
    clients = [sg.Client(0, np.array([1.0, 2.0]), np.array([1.0, 1.0]), np.array([0]), joint),
               sg.Client(1, np.array([3.0, 0.0]), np.array([2.0, 0.0]), np.zeros(0, np.int64), None)]
    rate, cv, dist, outside, known = sg.aggregate(starts, clients, GRID)
    assert rate.tolist() == [4.0, 2.0] and known.tolist() == [1.0, 2.0]
    assert cv[0] == pytest.approx(np.sqrt(13 / 4)) and cv[1] == 1.0
    assert np.allclose(dist[:, 0, 0], 1.0) and outside.tolist() == [0.0, 0.0]
    text = sg.attribution("f891d11", clients, starts, rate, known)
    assert "lacked the length tables of 1 client (50.0% of requests; ids 1)" in text


@pytest.mark.slow
@pytest.mark.skipif(not SERVEGEN_SNAPSHOT.exists(), reason="no ServeGen snapshot (set SERVEGEN_DIR)")
def test_extract_servegen_reproduces_shipped_file(tmp_path):
    """From the snapshot it was made from (see loads/README.md), the script writes the shipped file."""
    script().main(["--servegen", str(SERVEGEN_SNAPSHOT), "-o", str(tmp_path / "sg.json")])
    shipped = ROOT / "melange" / "scenarios" / "loads" / "servegen-m-large.json"
    assert (tmp_path / "sg.json").read_bytes() == shipped.read_bytes()


# --- CLI ----------------------------------------------------------------------------------

def test_cli_build_load_from_trace_and_table(tmp_path):
    trace = synthetic_trace()
    (tmp_path / "t.csv").write_text("arrival_s,input_tokens,output_tokens\n" + "".join(
        f"{a},{i},{o}\n" for a, i, o in zip(trace.arrival_s, trace.input_tokens, trace.output_tokens)))
    runner = CliRunner()
    result = runner.invoke(cli, ["scenarios", "build-load", str(tmp_path / "t.csv"), "--window", "100s",
                                 "--grid", "1,100,1000/1,50,300", "-o", str(tmp_path / "l.json")])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"wrote {tmp_path / 'l.json'}: 3 windows of 100s, mean 0.4 req/s, peak 0.8 req/s"
    assert read_load(tmp_path / "l.json", GRID).name == "l"
    (tmp_path / "r.csv").write_text("start_s,rate\n0,4\n600,8\n")
    result = runner.invoke(cli, ["scenarios", "build-load", "--table", str(tmp_path / "r.csv"), "--workload", "chat-4k",
                                 "--grid", "1,25,100,250,500,1000,2000,4000/1,25,100,250,500,1000",
                                 "--name", "tab", "--attribution", "mine", "-o", str(tmp_path / "tab.json")])
    assert result.exit_code == 0, result.output
    assert "2 windows of 600s, mean 6 req/s, peak 8 req/s" in result.output
    tab = read_load(tmp_path / "tab.json", GRID_4K)
    assert tab.name == "tab" and tab.attribution == "mine"
    from melange.workloads import load_workload_file

    assert np.allclose(tab.distribution[1], load_workload_file("chat-4k", GRID_4K), atol=2e-6)


@pytest.mark.parametrize("args, field", [
    (["splitwise_conv", "--window", "10x"], "--window:"),
    (["splitwise_conv", "--window", "0"], "--window:"),
    (["splitwise_conv"], "--window: required"),
    (["arena_synthetic", "--window", "5m"], "trace: has no arrival times"),
    (["--table", "r.csv"], "--workload: required"),
    ([], "build-load: give a TRACE"),
    (["splitwise_conv", "--window", "5m", "--grid", "1,2/x"], "--grid:"),
])
def test_cli_build_load_bad_input_is_one_line(tmp_path, args, field):
    result = CliRunner().invoke(cli, ["scenarios", "build-load", *args, "-o", str(tmp_path / "o.json")])
    assert one_line_error(result).startswith(f"Error: {field}")
    assert not (tmp_path / "o.json").exists()


def test_cli_loads_lists_builtins():
    result = CliRunner().invoke(cli, ["scenarios", "loads"])
    assert result.exit_code == 0, result.output
    assert "servegen-m-large" in result.output and "2016" in result.output and "582.99" in result.output
    assert "azure-conv-hour" in result.output and "Alibaba ServeGen" in result.output


def test_streams_superpose_clients_and_scaling_keeps_bursts_in_proportion():
    from melange.sim.arrivals import make_arrivals

    streams = np.array([[[0.25, 8.0], [0.75, 1.0]]] * 2)
    load = Load("s", GRID, 600.0, [40.0, 10.0], [4.0, 4.0], np.full((2, 2, 2), 0.25), streams=streams)
    w = load.window(0, Workload(GRID, np.full((2, 2), 0.25), 1.0))
    assert w.arrival == Arrival("streams", cv=4.0, streams=((0.25, 8.0), (0.75, 1.0)))
    times = make_arrivals(w, np.random.default_rng(0), duration_s=20_000.0).time_s
    assert len(times) / 20_000.0 == pytest.approx(40.0, rel=0.05)  # the streams' rates add up
    counts = np.bincount((times // 60).astype(int))  # bursty stream on top of a Poisson one
    assert counts.var() / counts.mean() > 3.0
    half = load.scaled(0.5)
    assert np.allclose(half.rate, [20.0, 5.0])
    assert np.allclose(half.cv**2, 1 + (16 - 1) * 0.5) and np.allclose(half.streams[..., 1] ** 2, [1 + 63 * 0.5, 1.0])
    assert np.allclose(half.streams[..., 0], streams[..., 0])
    with pytest.raises(MelangeError, match=r"^load.streams\[0\]"):
        Load("s", GRID, 600.0, [40.0], [4.0], np.full((1, 2, 2), 0.25), streams=[[[0.5, 2.0], [0.2, 1.0]]])
    servegen = read_load("servegen-m-large")
    assert servegen.streams.shape == (2016, 17, 2)
    busy = servegen.rate > 0
    assert np.allclose(servegen.streams[busy, :, 0].sum(axis=1), 1.0)
