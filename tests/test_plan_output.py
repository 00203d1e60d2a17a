"""`melange plan -o DIR`: plan.json is a plan; runs never mix; finished rounds resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from melange.cli import cli
from melange.files import read_jsonl
from melange.scenario import load_scenario
from melange.validate import plan_and_validate
from melange.validate.store import RunDir, inputs_hash
from tests.validate_scenarios import scenario


def run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def rounds_in(out) -> list[dict]:
    return [line for line in read_jsonl(out / "rounds.jsonl") if line["kind"] == "round"]


def test_plan_json_round_trips_into_simulate(tmp_path):
    path, out = scenario(tmp_path, max_rate=200.0), tmp_path / "out"
    result = run("plan", path, "--rounds", "10", "--baselines", "-o", out)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "plan.json").read_text())
    v = doc["validation"]
    assert v["held"] and v["target"] == 0.95 and v["counted"] >= 400 and len(v["seeds"]) == 2
    assert v["interval"][0] <= v["attainment"] <= v["interval"][1] and v["rounds"]
    assert doc["baselines"]["G"]["count"] == doc["counts"]["G"] and doc["saving"]["fraction"] == 0.0
    lines = rounds_in(out)
    assert len(lines) == len(v["rounds"]) >= 2 and lines[-1]["held"]
    again = run("plan", path, "--rounds", "10", "--baselines", "-o", out)  # nothing left to simulate
    assert again.exit_code == 0 and "baseline checks" in again.output and "round 1:" not in again.output
    assert json.loads((out / "plan.json").read_text())["baselines"] == doc["baselines"]
    sim = run("simulate", path, "--plan", out / "plan.json", "--requests", "1000", "--seed", "42")
    assert sim.exit_code == 0, sim.output
    assert "SLO attainment" in sim.output and "ok" in sim.output


def test_a_rerun_with_the_same_inputs_resumes_instead_of_mixing(tmp_path):
    path, out = scenario(tmp_path, max_rate=200.0), tmp_path / "out"
    first = run("plan", path, "--rounds", "10", "-o", out)
    plan_before = json.loads((out / "plan.json").read_text())
    again = run("plan", path, "--rounds", "10", "-o", out)
    assert again.exit_code == 0, again.output
    text = " ".join(again.output.split())  # the console wraps long lines
    assert "resuming from" in text and f"{len(plan_before['validation']['rounds'])} finished rounds" in text
    assert "round 1:" in first.output and "round 1:" not in again.output  # nothing simulated again
    assert len(rounds_in(out)) == len(plan_before["validation"]["rounds"])  # no duplicated lines
    after = json.loads((out / "plan.json").read_text())
    assert after["counts"] == plan_before["counts"] and after["validation"] == plan_before["validation"]


def test_a_directory_of_other_inputs_is_refused_unless_fresh(tmp_path):
    path, out = scenario(tmp_path, max_rate=200.0), tmp_path / "out"
    assert run("plan", path, "--rounds", "10", "-o", out).exit_code == 0
    other = run("plan", path, "--rounds", "10", "--seed", "7", "-o", out)
    assert other.exit_code == 2 and "other inputs" in other.output and "--fresh" in other.output
    fresh = run("plan", path, "--rounds", "10", "--seed", "7", "--fresh", "-o", out)
    assert fresh.exit_code == 0, fresh.output
    assert {line["inputs"] for line in read_jsonl(out / "rounds.jsonl")} == {json.loads(
        (out / "run.json").read_text())["inputs"]}


def test_an_old_style_directory_is_not_mistaken_for_this_run(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "rounds.jsonl").write_text('{"round": 1, "held": true}\n')
    result = run("plan", scenario(tmp_path, max_rate=20.0), "-o", out)
    assert result.exit_code == 2 and "other inputs" in result.output


def test_an_interrupted_run_resumes_from_its_finished_rounds(tmp_path):
    sc = load_scenario(scenario(tmp_path, max_rate=200.0))
    clean = plan_and_validate(sc, max_rounds=10)
    assert len(clean.rounds) >= 2
    store = RunDir(tmp_path / "out", inputs_hash(sc, requests=None, duration_s=None, seed=None, confirm_runs=2))
    store.open()

    def stop_after_first(r):
        store.log_round(r)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        plan_and_validate(sc, max_rounds=10, on_round=stop_after_first)
    done, _ = store.open()
    assert len(done) == 1
    resumed = plan_and_validate(sc, max_rounds=10, resume=done)
    assert resumed.resumed == 1
    a, b = clean.to_dict(), resumed.to_dict()
    for d in (a, b):
        d.pop("solve_time_s")
    assert a == b


def test_unwritable_output_fails_before_any_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run("plan", scenario(tmp_path, max_rate=20.0), "-o", blocker / "out")
    assert result.exit_code == 2 and "Traceback" not in result.output and "round 1" not in result.output


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_ctrl_c_keeps_finished_rounds_and_a_rerun_resumes(tmp_path, sig):
    import os
    import signal
    import subprocess
    import sys
    import time

    path, out = scenario(tmp_path, max_rate=200.0, simulation={"requests": 12000}), tmp_path / "out"
    code = "from melange.cli import main; main()"
    cmd = [sys.executable, "-c", code, "plan", path, "--rounds", "10", "-o", str(out)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 60
    while time.time() < deadline and not rounds_in(out):
        time.sleep(0.05)
    assert rounds_in(out), "no round finished"
    proc.send_signal(getattr(signal, sig))
    t0 = time.time()
    proc.wait(timeout=10)
    assert time.time() - t0 < 2 and proc.returncode != 0
    assert not list(out.glob(".*.tmp")) and not (out / "plan.json").exists()
    done = len(rounds_in(out))
    again = run("plan", path, "--rounds", "10", "-o", out)
    assert again.exit_code == 0, again.output
    assert f"{done} finished rounds" in " ".join(again.output.split())
    assert [r["round"] for r in rounds_in(out)] == list(range(1, len(rounds_in(out)) + 1))
