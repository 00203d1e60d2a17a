"""Feed the command line a batch of bad inputs (issue 8) and count how each ends.

clean: exit code in the expected set and no traceback; traceback; hang (timeout);
silent: exit 0 where an error (or exit 1) was expected; other: a wrong non-zero code.
Usage: python benchmarks/bad_inputs.py [--timeout 20]. The last line is one JSON object.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
STEP = ("\n    step_time: {alpha: 0.01, beta_prefill: 0.0002, beta_decode: 0.0001, beta_kv: 0.0000005,"
        " kv_capacity_tokens: 50000}")
SMALL = (DATA / "small.yaml").read_text().replace("cost: 1.01", "cost: 1.01" + STEP).replace(
    "cost: 3.67", "cost: 3.67" + STEP)
# The CLI of whatever `melange` package is first on PYTHONPATH (e.g. an unpacked older commit).
MELANGE = [sys.executable, "-c", "from melange.cli import main; main()"]


def files(tmp: Path) -> dict[str, Path]:
    """Write the bad files the cases use; return their paths by name."""
    (tmp / "a100_profile.yaml").write_text((DATA / "a100_profile.yaml").read_text())
    out = {}

    def put(name: str, data: bytes | str) -> Path:
        p = tmp / name
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
        out[name] = p
        return p

    put("small.yaml", SMALL)
    put("offgrid.yaml", SMALL.replace("output_edges: [1, 100, 500]", "output_edges: [1, 90, 500]"))
    put("utf16.yaml", SMALL.replace("name: small", "name: petite-é").encode("utf-16"))
    put("latin1.yaml", SMALL.replace("name: small", "name: petite-é").encode("latin-1"))
    put("binary.yaml", bytes(range(256)) * 4)
    plan = {"counts": {"A10G": 10, "A100-80GB": 2},
            "share": {"A10G": [[1, 1], [1, 1]], "A100-80GB": [[0, 0], [0, 0]]}, "cost": 17.44}
    put("plan.json", json.dumps(plan))
    put("plan_utf16.json", json.dumps(plan).encode("utf-16"))
    put("plan_latin1.json", json.dumps(plan).replace("cost", "cost").encode("latin-1") + b"\xe9")
    put("plan_binary.json", bytes(range(256)))
    put("plan_float.json", json.dumps({**plan, "counts": {"A10G": 1.9, "A100-80GB": 0}}))
    put("plan_huge.json", json.dumps({**plan, "counts": {"A10G": 1000000, "A100-80GB": 0}}))
    put("catalog_binary.yaml", b"\xff\xfe\x00\x01" + bytes(range(256)))
    put("dup.yaml", SMALL.replace("rate: 30", "rate: 30\n  rate: 3"))
    put("rate_true.yaml", SMALL.replace("rate: 30", "rate: true"))
    put("rate_huge.yaml", SMALL.replace("rate: 30", "rate: 1e12"))
    put("min_count.yaml", SMALL.replace("cost: 1.01", "cost: 1.01\n    min_count: 1000000"))
    put("dates.csv", "timestamp,input_tokens,output_tokens\n"
        + "".join(f"2023-11-16 18:15:{i:02d},{100 + i},{20 + i}\n" for i in range(30)))
    put("floats.csv", "input_tokens,output_tokens\n" + "".join(f"{50.7 + i},{20.5}\n" for i in range(30)))
    put("trace_dates.yaml", SMALL.replace("distribution: [[0.2, 0.1], [0.5, 0.2]]",
                                          "distribution: {trace: dates.csv}\n  trace: dates.csv\n"
                                          "  arrival: {process: trace}"))
    put("trace_floats.yaml", SMALL.replace("distribution: [[0.2, 0.1], [0.5, 0.2]]",
                                           "distribution: {trace: floats.csv}"))
    put("grid_float.yaml", "input_edges: [1, 100.5, 1000]\noutput_edges: [1, 100, 500]\n")
    put("readme.yaml", "model: mistral-7b\ngrid: paper\nworkload:\n  rate: 16\n"
        "  distribution: {trace: splitwise_conv}\n  lengths: trace\n")
    put("readme_gpus.yaml", (ROOT / "README.md").read_text().split("```yaml\n")[1].split("```")[0])
    return out


CLASSES = """models:
  - scenario: llama-2-7b-chat.yaml
    classes:
      - {{name: chat, share: {0}, slo: {{tpot_ms: 50, definition: decode, ttft_ms: 200}}}}
      - {{name: batch, share: {1}, slo: {{e2e_ms: 300000}}}}
"""
TP3 = """models:
  - scenario:
      model: llama-2-7b
      workload: {rate: 4, distribution: [[1.0]]}
      grid: {input_edges: [1, 100], output_edges: [1, 50]}
      gpus: [{name: H100, catalog: H100, step_time: roofline, tensor_parallel: [3]}]
"""


def fleet(tmp: Path, text: str) -> Path:
    """A fleet file beside copies of the built-in fleets' scenarios: the two-models models, plus `text`."""
    import shutil

    from melange.fleet import BUILTIN_FLEETS

    for src in BUILTIN_FLEETS.glob("*.yaml"):
        shutil.copy(src, tmp / src.name)
    base = "" if text.startswith("models:") else (BUILTIN_FLEETS / "two-models.yaml").read_text()
    if text.startswith("caps:"):  # in place of the built-in's caps
        base, text = base.replace("caps: {H100: 12}\n", ""), text
    path = tmp / f"fleet-{abs(hash(text)) % 10**8}.yaml"
    path.write_text(base + text)
    return path


def cases(f: dict[str, Path], tmp: Path) -> list[tuple[str, list[str], set[int]]]:
    """(label, argv, acceptable exit codes)."""
    s, plan = str(f["small.yaml"]), str(f["plan.json"])
    prof = ["profile", "--simulate", "--gpu", "A10G", "--model", "llama-2-7b", "--slo-tpot", "120ms",
            "--grid", str(f["grid_float.yaml"]).replace("grid_float", "grid_ok")]
    (tmp / "grid_ok.yaml").write_text("input_edges: [1, 100]\noutput_edges: [1, 50]\n")
    sim = ["simulate", s, "--plan", plan]
    return [
        ("scenario utf-16", ["solve", str(f["utf16.yaml"])], {0, 2}),
        ("scenario latin-1", ["solve", str(f["latin1.yaml"])], {2}),
        ("scenario binary", ["solve", str(f["binary.yaml"])], {2}),
        ("plan utf-16", ["simulate", s, "--plan", str(f["plan_utf16.json"]), "--requests", "200"], {0, 1, 2}),
        ("plan latin-1", ["simulate", s, "--plan", str(f["plan_latin1.json"])], {2}),
        ("plan binary", ["simulate", s, "--plan", str(f["plan_binary.json"])], {2}),
        ("catalog binary", ["gpus", "list", "--catalog", str(f["catalog_binary.yaml"])], {2}),
        ("trace date-times", ["solve", str(f["trace_dates.yaml"])], {0, 2}),
        ("--seed -1", [*sim, "--seed", "-1"], {2}),
        ("simulate -o impossible", [*sim, "-o", "/proc/nope/out"], {2}),
        ("plan -o impossible", ["plan", s, "-o", "/proc/nope/out"], {2}),
        ("profile -o impossible", [*prof, "-o", "/proc/nope/p.yaml"], {2}),
        ("profile --cache-dir impossible", [*prof, "--cache-dir", "/proc/nope", "-o", str(tmp / "p.yaml")], {2}),
        ("--duration 1e12h", [*sim, "--duration", "1e12h"], {2}),
        ("--requests 1e9", [*sim, "--requests", "1000000000"], {2}),
        ("rate 1e12", ["simulate", str(f["rate_huge.yaml"]), "--plan", plan], {2}),
        ("min_count 1e6", ["plan", str(f["min_count.yaml"])], {1, 2}),
        ("plan count 1e6", ["simulate", s, "--plan", str(f["plan_huge.json"])], {2}),
        ("plan count 1.9", ["simulate", s, "--plan", str(f["plan_float.json"])], {2}),
        ("duplicate key", ["solve", str(f["dup.yaml"])], {2}),
        ("rate: true", ["solve", str(f["rate_true.yaml"])], {2}),
        ("float token lengths", ["solve", str(f["trace_floats.yaml"])], {2}),
        ("float --grid edges", [*prof[:-2], "--grid", str(f["grid_float.yaml"]), "-o", str(tmp / "g.yaml")], {2}),
        ("--slo-ttft 2", [*prof, "--slo-ttft", "2", "-o", str(tmp / "t.yaml")], {2}),
        ("--headroom 10", ["solve", s, "--headroom", "10"], {2}),
        ("--time-limit 30s", ["solve", s, "--time-limit", "30s"], {0}),
        ("--attainment 99%", [*prof, "--attainment", "99%", "-o", str(tmp / "a.yaml"), "--quiet"], {0}),
        ("-o ''", [*sim, "--requests", "100", "-o", ""], {2}),
        ("simulate SLO missed", ["simulate", s, "--plan", str(tmp / "tiny.json"), "--requests", "300"], {1}),
        ("README scenario", ["solve", str(f["readme_gpus.yaml"])], {0, 1}),
        ("simulate no SCENARIO (built-in)", ["simulate", "--plan", plan, "--requests", "100"], {2}),
        # sweep / compare / study (issue 16): limits and outputs checked before any work
        ("sweep --rate 2000000", ["sweep", s, "--rate", "2000000", "-o", str(tmp / "sw1")], {2}),
        ("sweep --rate 0", ["sweep", s, "--rate", "0", "-o", str(tmp / "sw2")], {2}),
        ("sweep --rate 1,,2", ["sweep", s, "--rate", "1,,2", "-o", str(tmp / "sw3")], {2}),
        ("sweep --seed -1", ["sweep", s, "--seed", "-1", "-o", str(tmp / "sw4")], {2}),
        ("sweep --slice-factor 5000", ["sweep", s, "--slice-factor", "5000", "-o", str(tmp / "sw5")], {2}),
        ("sweep --headroom lots", ["sweep", s, "--headroom", "lots", "-o", str(tmp / "sw6")], {2}),
        ("sweep --only nope", ["sweep", s, "--only", "nope", "-o", str(tmp / "sw7")], {2}),
        ("sweep --plot /dev/null", ["sweep", s, "--rate", "10", "--plot", "/dev/null", "-o", str(tmp / "sw8")], {2}),
        ("sweep -o impossible", ["sweep", s, "--rate", "10", "-o", "/proc/nope/sw"], {2}),
        ("sweep --executor ray --address bad", ["sweep", s, "--executor", "ray", "--address", "nohost",
                                                "-o", str(tmp / "sw9")], {2}),
        ("sweep --validate --requests 10", ["sweep", s, "--validate", "--requests", "10", "-o", str(tmp / "swa")], {2}),
        ("compare --rate x", ["compare", s, "--rate", "x", "-o", str(tmp / "c1")], {2}),
        ("compare --plot /dev/null", ["compare", s, "--rate", "10", "--plot", "/dev/null", "-o", str(tmp / "c2")], {2}),
        ("compare --requests 10", ["compare", s, "--rate", "10", "--requests", "10", "-o", str(tmp / "c3")], {2}),
        ("study --scenarios nope", ["study", "paper", "--scenarios", "nope", "-o", str(tmp / "st1")], {2}),
        ("study --rates -4", ["study", "paper", "--rates", "-4", "-o", str(tmp / "st2")], {2}),
        ("study --plot /dev/null", ["study", "paper", "--plot", "/dev/null", "-o", str(tmp / "st3")], {2}),
        ("study 40 req/s x 1,000 requests", ["study", "paper", "--scenarios", "chat-120ms", "--rates", "40",
                                             "--requests", "1000", "-o", str(tmp / "st4")], {2}),
        # build-workload
        ("build-workload no file", ["scenarios", "build-workload", str(tmp / "none.csv"), "-o", str(tmp / "w.yaml")], {2}),
        ("build-workload float lengths", ["scenarios", "build-workload", str(f["floats.csv"]), "-o", str(tmp / "w.yaml")],
         {2}),
        ("build-workload --weights x", ["scenarios", "build-workload", "splitwise_conv", "--weights", "x",
                                        "-o", str(tmp / "w.yaml")], {2}),
        ("build-workload --grid bad", ["scenarios", "build-workload", "splitwise_conv", "--grid", "1,2",
                                       "-o", str(tmp / "w.yaml")], {2}),
        # emulate (a server: any case that starts one would hang; each must fail at once)
        ("emulate --gpu nope", ["emulate", "--gpu", "nope"], {2}),
        ("emulate --port 99999", ["emulate", "--port", "99999"], {2}),
        ("emulate --fixed-ttft lots", ["emulate", "--fixed-ttft", "lots"], {2}),
        ("emulate --error-rate 150%", ["emulate", "--error-rate", "150%"], {2}),
        ("emulate --speedup 0", ["emulate", "--speedup", "0"], {2}),
        # profile flags
        ("profile --trace nope", [*prof, "--trace", "nope", "-o", str(tmp / "pt.yaml")], {2}),
        ("profile --slo-definition mean_itl --attainment 0", [*prof, "--slo-definition", "mean_itl", "--attainment",
                                                              "0", "-o", str(tmp / "pa.yaml")], {2}),
        ("profile --url closed port", ["profile", "--url", "http://127.0.0.1:9", "--gpu", "A10G", "--model",
                                       "llama-2-7b", "--slo-tpot", "120ms", "--timeout", "2s", "--buckets", "0,0",
                                       "-o", str(tmp / "pu.yaml")], {1, 2}),
        ("profile --min-window soon", [*prof[:1], "--url", "http://127.0.0.1:9", *prof[2:], "--min-window", "soon",
                                       "-o", str(tmp / "pm.yaml")], {2}),
        ("profile --confirm-requests -5", [*prof[:1], "--url", "http://127.0.0.1:9", *prof[2:], "--confirm-requests",
                                           "-5", "-o", str(tmp / "pc.yaml")], {2}),
        ("profile --from-results empty dir", ["profile", "--from-results", str(tmp), "--gpu", "A10G", "--model",
                                              "llama-2-7b", "--slo-tpot", "120ms", "-o", str(tmp / "pr.yaml")], {1, 2}),
        ("profile --sensitivity without --simulate", ["profile", "--url", "http://127.0.0.1:9", *prof[2:],
                                                       "--sensitivity", "-o", str(tmp / "ps.yaml")], {2}),
        # schedule flags and loads
        ("schedule without a load", ["schedule", "-o", str(tmp / "s0")], {2}),
        ("schedule --load nope", ["schedule", "--load", "nope", "-o", str(tmp / "s1")], {2}),
        ("schedule --windows 9:3", ["schedule", "--load", "azure-conv-hour", "--windows", "9:3", "-o", str(tmp / "s2")], {2}),
        ("schedule --windows 0:500", ["schedule", "--load", "azure-conv-hour", "--windows", "0:500",
                                      "-o", str(tmp / "s3")], {2}),
        ("schedule --scale -1", ["schedule", "--load", "azure-conv-hour", "--scale", "-1", "-o", str(tmp / "s4")], {2}),
        ("schedule --load on another grid", ["schedule", str(f["offgrid.yaml"]), "--load", "azure-conv-hour",
                                             "-o", str(tmp / "s5")], {2}),
        ("schedule --load a broken file", ["schedule", "--load", str(f["small.yaml"]), "-o", str(tmp / "s6")], {2}),
        ("schedule --compare without history", ["schedule", "--load", "azure-conv-hour", "--windows", "0:2",
                                                "--compare", "--history", "3", "-o", str(tmp / "s7")], {1, 2}),
        ("build-load --window soon", ["scenarios", "build-load", "splitwise_conv", "--window", "soon",
                                      "-o", str(tmp / "l.json")], {2}),
        # fleet files, prices, classes
        ("fleet nope", ["fleet", "nope", "--solve-only"], {2}),
        ("fleet: a scenario file, not a fleet", ["fleet", str(f["small.yaml"]), "--solve-only"], {2}),
        ("fleet --prices gcp-2031", ["fleet", "--prices", "gcp-2031", "--solve-only"], {2}),
        ("fleet: caps on a GPU no model uses", ["fleet", str(fleet(tmp, "caps: {H200: 4}\n")), "--solve-only"], {2}),
        ("fleet: class shares sum to 0.9", ["fleet", str(fleet(tmp, CLASSES.format(0.5, 0.4))), "--solve-only"], {2}),
        ("fleet: a class SLO without a limit", ["fleet", str(fleet(tmp, CLASSES.format(0.5, 0.5).replace(
            "{e2e_ms: 300000}", "{attainment: 0.9}"))), "--solve-only"], {2}),
        ("fleet: budget below the cheapest fleet", ["fleet", str(fleet(tmp, "budget: 1\n")), "--solve-only"], {2}),
        ("fleet: tensor_parallel 3", ["fleet", str(fleet(tmp, TP3)), "--solve-only"], {2}),
        ("plan --prices a CSV without columns", ["plan", "--prices", str(f["small.yaml"])], {2}),
        ("profile --slo-e2e soon", ["profile", "--simulate", "--gpu", "H100", "--model", "llama-2-7b", "--slo-e2e",
                                    "soon", "-o", str(tmp / "p.yaml")], {2}),
    ]


def run(argv: list[str], timeout: float, cwd: Path) -> tuple[str, int | None, str]:
    try:
        p = subprocess.run([*MELANGE, *argv], capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired:
        return "hang", None, ""
    return ("traceback" if "Traceback" in p.stderr else "ran"), p.returncode, p.stderr.strip()


def main() -> None:
    timeout = float(sys.argv[sys.argv.index("--timeout") + 1]) if "--timeout" in sys.argv else 20.0
    counts = {"clean": 0, "traceback": 0, "hang": 0, "silent": 0, "other": 0}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        f = files(tmp)
        tiny = {"counts": {"A10G": 1, "A100-80GB": 0},
                "share": {"A10G": [[1, 1], [1, 1]], "A100-80GB": [[0, 0], [0, 0]]}, "cost": 1.01}
        (tmp / "a100_profile.yaml").write_text((DATA / "a100_profile.yaml").read_text())
        (tmp / "tiny.json").write_text(json.dumps(tiny))
        for label, argv, ok in cases(f, tmp):
            start = time.perf_counter()
            kind, code, err = run(argv, timeout, tmp)
            if kind == "ran":
                kind = "clean" if code in ok else ("silent" if code == 0 else "other")
            counts[kind] += 1
            last = err.splitlines()[-1][:90] if err else ""
            print(f"{kind:9s} rc={code!s:4s} {time.perf_counter() - start:5.1f}s  {label:32s} {last}")
    print(json.dumps({"cases": sum(counts.values()), **counts}))


if __name__ == "__main__":
    main()
