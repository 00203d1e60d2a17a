"""Issue 8: every bad input found by trying the CLI as a new user ends in one line naming the
field and exit code 2 (never a traceback, hang or silent wrong answer); units, exit codes,
output checks, the newcomer path, tables that are never cut, and start-up time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from melange.cli import cli
from melange.cli.options import parse_duration, parse_fraction, parse_ms, parse_rate
from melange.core import MelangeError, Plan

DATA = Path(__file__).parent / "data"
STEP = ("{alpha: 0.01, beta_prefill: 0.0002, beta_decode: 0.0001, beta_kv: 0.0000005, "
        "kv_capacity_tokens: 50000}")
SCENARIO = f"""name: hard
grid: {{input_edges: [1, 100, 1000], output_edges: [1, 50, 300]}}
workload:
  rate: 4
  distribution: [[0.4, 0.2], [0.3, 0.1]]
slo: {{tpot_ms: 80}}
gpus:
  - name: A10G
    cost: 1.0
    profile: [[2, 1], [5, 2]]
    step_time: {STEP}
simulation: {{requests: 200, seed: 1}}
"""
PLAN = {"counts": {"A10G": 2}, "share": {"A10G": [[1, 1], [1, 1]]}, "cost": 2.0}


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def one_line_error(result, code: int = 2) -> str:
    """The result failed cleanly: the exit code, no traceback, and one `Error:` line."""
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [ln for ln in result.output.strip().splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.fixture
def tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("MELANGE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "s.yaml").write_text(SCENARIO)
    (tmp_path / "plan.json").write_text(json.dumps(PLAN))
    return tmp_path


def _file(tmp: Path, name: str, data: bytes | str) -> str:
    path = tmp / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(path)


# --- files in any encoding -------------------------------------------------------------------

ENCODINGS = [
    ("latin-1", lambda t: (t + "\n# café\n").encode("latin-1"), "not UTF-8 text (byte 0xe9"),
    ("binary", lambda t: bytes(range(256)) * 2, "not UTF-8 text"),
    ("nul bytes", lambda t: b"a: 1\n\x00\x00\n", "binary file, not text"),
]


@pytest.mark.parametrize("kind", ["scenario", "plan", "catalog"])
@pytest.mark.parametrize("label,encode,message", ENCODINGS, ids=[e[0] for e in ENCODINGS])
def test_non_utf8_files_are_one_line_errors(tmp, kind, label, encode, message):
    if kind == "scenario":
        result = invoke("solve", _file(tmp, "bad.yaml", encode(SCENARIO)))
    elif kind == "plan":
        result = invoke("simulate", str(tmp / "s.yaml"), "--plan", _file(tmp, "bad.json", encode(json.dumps(PLAN))))
    else:
        result = invoke("gpus", "list", "--catalog", _file(tmp, "bad.yaml", encode("gpus: []\n")))
    line = one_line_error(result)
    assert "bad." in line and message in line, line


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig", "utf-32"])
def test_files_with_a_byte_order_mark_are_decoded(tmp, encoding):
    scenario = _file(tmp, "bom.yaml", SCENARIO.replace("name: hard", "name: dur-é").encode(encoding))
    plan = _file(tmp, "bom.json", json.dumps(PLAN).encode(encoding))
    assert "dur-é" in invoke("solve", scenario).output
    assert invoke("simulate", scenario, "--plan", plan).exit_code in (0, 1)


# --- traces ------------------------------------------------------------------------------------

def _trace_scenario(tmp: Path, csv: str, arrival: bool) -> str:
    _file(tmp, "t.csv", csv)
    extra = "\n  trace: t.csv\n  arrival: {process: trace}" if arrival else ""
    return _file(tmp, "ts.yaml", SCENARIO.replace("distribution: [[0.4, 0.2], [0.3, 0.1]]",
                                                  "distribution: {trace: t.csv}" + extra))


def test_trace_with_date_times_is_parsed_as_seconds(tmp):
    from melange.traces import load_trace

    rows = "".join(f"2023-11-16 18:15:{2 * i:02d}.5,{100 + i},{20 + i}\n" for i in range(20))
    path = _file(tmp, "d.csv", "timestamp,input_tokens,output_tokens\n" + rows)
    trace = load_trace(path)
    assert np.allclose(trace.arrival_s, 2.0 * np.arange(20))
    assert invoke("solve", _trace_scenario(tmp, "timestamp,input_tokens,output_tokens\n" + rows, True)).exit_code == 0


@pytest.mark.parametrize("csv,message", [
    ("timestamp,input_tokens,output_tokens\nyesterday,10,10\nnoon,10,10\n", "arrival times must be numbers (s) or date-times"),
    ("input_tokens,output_tokens\n50.7,20\n60,20\n", "input tokens must be positive integers"),
    ("input_tokens,output_tokens\n50,20.5\n60,20\n", "output tokens must be positive integers"),
], ids=["unparseable times", "float input lengths", "float output lengths"])
def test_bad_traces_are_refused(tmp, csv, message):
    assert message in one_line_error(invoke("solve", _trace_scenario(tmp, csv, False)))


# --- silent wrong answers in files -----------------------------------------------------------

SCENARIO_EDITS = [
    ("duplicate key", ("rate: 4", "rate: 4\n  rate: 40"), "duplicate key 'rate' (line 5)"),
    ("duplicate nested key", ("cost: 1.0", "cost: 1.0\n    cost: 9.0"), "duplicate key 'cost'"),
    ("rate true", ("rate: 4", "rate: true"), "workload.rate: must be a number, not true"),
    ("cost true", ("cost: 1.0", "cost: yes"), "gpus[0].cost: must be a number, not true"),
    ("float min_count", ("cost: 1.0", "cost: 1.0\n    min_count: 1.5"), "min_count: must be an integer, got 1.5"),
    ("float grid edge", ("[1, 100, 1000]", "[1, 100.5, 1000]"), "grid.input_edges[1]: must be an integer, got 100.5"),
    ("string number", ("cost: 1.0", "cost: '1.0'"), "gpus[0].cost"),
    ("rate 1e12", ("rate: 4", "rate: 1e12"), "workload.rate: must be less than or equal to 1000000"),
    ("min_count 1e6", ("cost: 1.0", "cost: 1.0\n    min_count: 1000000"), "min_count: must be less than or equal to 10000"),
    ("bare headroom 10", ("simulation:", "solver: {headroom: 10}\nsimulation:"), "solver.headroom: '10' is ambiguous"),
    ("bad unit string", ("tpot_ms: 80", "tpot_ms: 80 parsecs"), "slo.tpot_ms: '80 parsecs' is not a duration"),
    ("negative seed", ("seed: 1", "seed: -1"), "simulation.seed: must be greater than or equal to 0"),
]


@pytest.mark.parametrize("label,edit,message", SCENARIO_EDITS, ids=[e[0] for e in SCENARIO_EDITS])
def test_scenario_mistakes_are_refused(tmp, label, edit, message):
    assert edit[0] in SCENARIO
    path = _file(tmp, "bad.yaml", SCENARIO.replace(*edit, 1))
    line = one_line_error(invoke("solve", path))
    assert line.startswith("Error: bad.yaml: ") and message in line, line


def test_file_fields_take_the_same_units_as_options(tmp):
    text = SCENARIO.replace("rate: 4", "rate: 240/min").replace("tpot_ms: 80", "tpot_ms: 0.08s, attainment: 99%")
    from melange.scenario import load_scenario

    sc = load_scenario(_file(tmp, "units.yaml", text))
    assert sc.workload.rate == pytest.approx(4) and sc.slo.tpot_ms == pytest.approx(80)
    assert sc.slo.attainment == pytest.approx(0.99)


PLAN_EDITS = [
    ("float count", {"A10G": 1.9}, "plan.counts.A10G: must be a whole number >= 0, got 1.9"),
    ("bool count", {"A10G": True}, "plan.counts.A10G: must be a whole number"),
    ("string count", {"A10G": "2"}, "plan.counts.A10G: must be a whole number"),
    ("huge count", {"A10G": 1_000_000}, "plan.counts: 1,000,000 instances, above the simulator's limit of 10,000"),
]


@pytest.mark.parametrize("label,counts,message", PLAN_EDITS, ids=[e[0] for e in PLAN_EDITS])
def test_plan_mistakes_are_refused(tmp, label, counts, message):
    plan = _file(tmp, "p.json", json.dumps({**PLAN, "counts": counts}))
    assert message in one_line_error(invoke("simulate", str(tmp / "s.yaml"), "--plan", plan))


def test_duplicate_json_keys_are_refused(tmp):
    plan = _file(tmp, "p.json", json.dumps(PLAN)[:-1] + ', "cost": 9}')
    assert "p.json: duplicate key 'cost'" in one_line_error(invoke("simulate", str(tmp / "s.yaml"), "--plan", plan))


# --- options: units, seeds, sizes, outputs ----------------------------------------------------

def test_units_parser():
    assert parse_duration("1h") == 3600 and parse_duration("2m") == 120 and parse_duration("90s") == 90
    assert parse_duration("0", allow_zero=True) == 0 and parse_duration("40", "x", bare="ms") == 0.04
    assert parse_ms("120ms", "x") == 120 and parse_ms("0.12s", "x") == 120
    assert parse_fraction("10%", "x") == pytest.approx(0.1) and parse_fraction("0.9", "x") == 0.9
    assert parse_rate("16", "x") == 16 and parse_rate("960/min", "x") == 16 and parse_rate("16/s", "x") == 16
    for call, message in [(lambda: parse_ms("2", "--slo-ttft"), "--slo-ttft: '2' needs a unit: 2s or 2ms"),
                          (lambda: parse_duration("120", "--duration"), "--duration: '120' needs a unit: 120s or 120m"),
                          (lambda: parse_fraction("10", "--headroom"), "--headroom: '10' is ambiguous: write 10%"),
                          (lambda: parse_fraction(True, "--headroom"), "not bool"),
                          (lambda: parse_rate("-1/s", "r"), "r: must be > 0"),
                          (lambda: parse_duration("nan s", "d"), "is not a duration")]:
        with pytest.raises(MelangeError) as info:
            call()
        assert message in str(info.value)


def _profile(tmp: Path, *extra: str):
    grid = _file(tmp, "grid.yaml", "input_edges: [1, 100]\noutput_edges: [1, 30]\n")
    return invoke("profile", "--simulate", "--gpu", "A10G", "--model", "llama-2-7b", "--grid", grid,
                  "--workers", "1", "--quiet", *extra)


OPTION_CASES = [
    ("slo-ttft bare", "profile", ["--slo-tpot", "120ms", "--slo-ttft", "2"], "--slo-ttft: '2' needs a unit: 2s or 2ms"),
    ("slo-tpot bare", "profile", ["--slo-tpot", "120"], "--slo-tpot: '120' needs a unit: 120s or 120ms"),
    ("attainment 99", "profile", ["--slo-tpot", "120ms", "--attainment", "99"], "--attainment: '99' is ambiguous"),
    ("attainment 150%", "profile", ["--slo-tpot", "120ms", "--attainment", "150%"], "--attainment: must be between 0% and 100%"),
    ("float grid edges", "profile", ["--slo-tpot", "120ms"], "--grid: input_edges must be a list of whole numbers"),
    ("profile -o impossible", "profile", ["--slo-tpot", "120ms", "-o", "/proc/nope/p.yaml"], "-o /proc/nope/p.yaml: cannot write there"),
    ("profile -o under a file", "profile", ["--slo-tpot", "120ms", "-o", "{tmp}/s.yaml/p.yaml"], "cannot write there"),
    ("profile --cache-dir", "profile", ["--slo-tpot", "120ms", "--cache-dir", "/proc/nope"], "--cache-dir /proc/nope/sim-profiles: cannot write there"),
    ("profile seed -1", "profile", ["--slo-tpot", "120ms", "--seed", "-1"], "'--seed': -1 is not in the range"),
    ("headroom 10", "solve", ["--headroom", "10"], "--headroom: '10' is ambiguous: write 10% (or a fraction in [0, 1])"),
    ("utilization 90", "solve", ["--utilization", "90"], "--utilization: '90' is ambiguous: write 90%"),
    ("time-limit bare", "solve", ["--time-limit", "30"], "--time-limit: '30' needs a unit: 30s or 30m"),
    ("solve -o empty", "solve", ["-o", ""], "-o: empty path"),
    ("solve -o dir", "solve", ["-o", "{tmp}"], "is a directory"),
    ("simulate seed -1", "simulate", ["--seed", "-1"], "'--seed': -1 is not in the range"),
    ("simulate -o impossible", "simulate", ["-o", "/proc/nope/out"], "-o /proc/nope/out: cannot write there"),
    ("simulate -o empty", "simulate", ["-o", ""], "-o: empty path"),
    ("simulate -o a file", "simulate", ["-o", "{tmp}/s.yaml"], "is a file"),
    ("duration 1e12h", "simulate", ["--duration", "1e12h"], "above the limit of 5,000,000"),
    ("duration bare", "simulate", ["--duration", "60"], "--duration: '60' needs a unit: 60s or 60m"),
    ("requests 1e9", "simulate", ["--requests", "1000000000"], "requests: 1,000,000,000 is above the limit of 5,000,000"),
    ("plan -o impossible", "plan", ["-o", "/proc/nope/out"], "-o /proc/nope/out: cannot write there"),
    ("plan -o empty", "plan", ["-o", ""], "-o: empty path"),
    ("plan seed -1", "plan", ["--seed", "-1"], "'--seed': -1 is not in the range"),
    ("plan headroom 10", "plan", ["--headroom", "10"], "--headroom: '10' is ambiguous"),
]


@pytest.mark.parametrize("label,command,args,message", OPTION_CASES, ids=[c[0] for c in OPTION_CASES])
def test_bad_options_are_one_line_errors(tmp, label, command, args, message):
    args = [a.replace("{tmp}", str(tmp)) for a in args]
    if command == "profile":
        if label == "float grid edges":
            args += ["--grid", _file(tmp, "fg.yaml", "input_edges: [1, 100.5]\noutput_edges: [1, 30]\n")]
        out = [] if "-o" in args else ["-o", str(tmp / "p.yaml")]
        result = _profile(tmp, *args, *out)
    elif command == "simulate":
        result = invoke("simulate", str(tmp / "s.yaml"), "--plan", str(tmp / "plan.json"), *args)
    else:
        result = invoke(command, str(tmp / "s.yaml"), *args)
    line = one_line_error(result)
    assert message in line, line
    assert not (tmp / "p.yaml").exists()


def test_unit_forms_are_accepted(tmp):
    assert invoke("solve", str(tmp / "s.yaml"), "--time-limit", "30s", "--headroom", "0.1",
                  "--utilization", "90%").exit_code == 0
    result = _profile(tmp, "--slo-tpot", "0.12s", "--slo-ttft", "2s", "--attainment", "99%", "-o", str(tmp / "p.yaml"))
    assert result.exit_code == 0, result.output
    assert "attainment: 0.99" in (tmp / "p.yaml").read_text()


def test_output_checked_before_the_work(tmp, monkeypatch):
    import melange.perf.profile_sim as ps

    def boom(*a, **k):
        raise AssertionError("work started before the output was checked")

    monkeypatch.setattr(ps, "build_profile", boom)
    one_line_error(_profile(tmp, "--slo-tpot", "120ms", "-o", "/proc/nope/p.yaml"))
    import melange.sim as sim

    monkeypatch.setattr(sim, "simulate", boom)
    one_line_error(invoke("simulate", str(tmp / "s.yaml"), "--plan", str(tmp / "plan.json"), "-o", "/proc/x/y"))


# --- exit codes ---------------------------------------------------------------------------------

def test_simulate_exits_1_when_the_slo_is_missed_or_nothing_is_counted(tmp):
    s, p = str(tmp / "s.yaml"), str(tmp / "plan.json")
    assert invoke("simulate", s, "--plan", p).exit_code == 0
    overloaded = _file(tmp, "hot.yaml", SCENARIO.replace("rate: 4", "rate: 400"))
    result = invoke("simulate", overloaded, "--plan", p)
    assert result.exit_code == 1 and "SLO missed" in result.output
    # --requests counts after the warm-up (as in plan): a warm-up of an hour cannot swallow the run.
    result = invoke("simulate", s, "--plan", p, "--warmup", "2m", "--requests", "300")  # 300 arrive in 75 s
    assert result.exit_code == 0 and "no request was counted" not in result.output, result.output


def test_plan_exits_1_when_no_plan_held(tmp):
    # Profiles promise far more than the step-time model can serve: every round misses the SLO.
    text = SCENARIO.replace("profile: [[2, 1], [5, 2]]", "profile: [[200, 100], [500, 200]]")
    result = invoke("plan", _file(tmp, "lie.yaml", text), "--rounds", "1", "--requests", "600")
    assert result.exit_code == 1, result.output
    assert "no plan held" in result.output


# --- newcomer path ------------------------------------------------------------------------------

def test_readme_scenario_example_loads_as_written(tmp):
    from melange.scenario import load_scenario

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    example = readme.split("```yaml\n")[1].split("```")[0]
    sc = load_scenario(_file(tmp, "readme.yaml", example))  # a copy elsewhere: profile found built-in
    assert sc.gpus[0].name == "A100-80GB" and "A100-80GB" in sc.profiles


def test_profile_paths_resolve_beside_the_scenario_first(tmp):
    from melange.scenario import load_scenario

    (tmp / "profiles" / "mistral-7b").mkdir(parents=True)
    _file(tmp, "profiles/mistral-7b/A100-80GB-tpot100-decode-ttft3s.yaml", "max_rate: [[7, 7], [7, 7]]\n")
    text = SCENARIO.replace("profile: [[2, 1], [5, 2]]",
                            "profile: profiles/mistral-7b/A100-80GB-tpot100-decode-ttft3s.yaml")
    sc = load_scenario(_file(tmp, "local.yaml", text))
    assert sc.profiles["A10G"].max_rate.tolist() == [[7, 7], [7, 7]]


def test_custom_catalog_gpu_can_be_used_by_solve_plan_and_simulate(tmp):
    catalog = _file(tmp, "mine.yaml", """gpus:
  - {name: MyGPU, flops_tflops: 100, bandwidth_gb_s: 1000, memory_gb: 48, interconnect: pcie,
     interconnect_gb_s: 32, cost: 0.5, max_gpus: 8, source: test}
""")
    text = SCENARIO.replace("  - name: A10G\n    cost: 1.0", "  - name: A10G\n    catalog: MyGPU")
    path = _file(tmp, "cat.yaml", text)
    assert "MyGPU" in one_line_error(invoke("solve", path))
    result = invoke("solve", path, "--catalog", catalog)
    assert result.exit_code == 0 and "0.500" in result.output, result.output
    assert invoke("simulate", path, "--catalog", catalog, "--plan", str(tmp / "plan.json")).exit_code == 0
    assert invoke("plan", path, "--catalog", catalog, "--rounds", "1", "--requests", "600").exit_code in (0, 1)


def test_simulate_scenario_defaults_to_the_built_in_one(tmp):
    result = invoke("simulate", "--plan", str(tmp / "plan.json"))
    assert "10x6 grid" in one_line_error(result)  # the built-in paper grid was loaded


def test_profile_help_and_defaults():
    text = invoke("profile", "--help").output
    assert "the mode is required: --simulate, --url/--serve or --from-results" in " ".join(text.split())
    assert "mean_itl: the paper's rule" in " ".join(text.split())
    assert "Default: decode with --slo-ttft, else mean" in " ".join(text.split())


# --- output -------------------------------------------------------------------------------------

def test_tables_are_never_cut_when_piped_or_narrow(tmp):
    name = "A10G-in-the-eu-west-datacenter-with-a-long-name-0123456789"
    wide = SCENARIO.replace("name: A10G", f"name: {name}").replace("cost: 1.0", "cost: 1234567.891")
    result = invoke("solve", _file(tmp, "wide.yaml", wide))
    assert result.exit_code == 0, result.output
    assert "…" not in result.output and name in result.output and "1234567.891" in result.output
    import io

    from melange.report import console, plan_table
    from melange.scenario import load_scenario

    sc = load_scenario(tmp / "wide.yaml")
    from melange.optimizer import solve

    narrow = console()
    narrow.file, narrow.width = io.StringIO(), 30
    narrow.print(plan_table(solve(sc.workload, sc.gpus, sc.profiles, sc.solve), sc.gpus))
    text = narrow.file.getvalue()
    assert "…" not in text and "1234" in text  # folded onto more lines, never cut


def test_routers_listed_by_simulate_match_the_simulator():
    from melange.cli.simulate import ROUTER_NAMES
    from melange.sim.router import ROUTERS

    assert ROUTER_NAMES == list(ROUTERS)


def test_plan_from_dict_keeps_whole_float_counts():
    assert Plan.from_dict({**PLAN, "counts": {"A10G": 2.0}}).counts == {"A10G": 2}


def test_cli_import_is_light():
    """`import melange.cli` pulls in none of the heavy libraries (start-up well under 0.2 s)."""
    code = ("import sys, melange.cli; heavy = [m for m in ('numpy', 'pandas', 'matplotlib', 'mip', 'simpy', "
            "'rich', 'pydantic', 'melange.perf.catalog') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("args,message", [
    (["solve", "--zzzz"], "Error: No such option '--zzzz'. (see 'melange solve --help')"),
    (["simulate", "--seed", "-1", "--plan", "x"], "Error: Invalid value for '--seed': -1 is not in the range x>=0."),
    (["plan", "--rounds", "0"], "Error: Invalid value for '--rounds'"),
])
def test_usage_errors_are_one_line_too(args, message):
    result = CliRunner().invoke(cli, args, prog_name="melange")
    assert result.exit_code == 2 and result.output.strip().startswith(message), result.output
    assert len(result.output.strip().splitlines()) == 1
