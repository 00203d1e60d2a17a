"""The GPU/model catalog: built-in figures, user files, one-line errors, list commands."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from melange.cli import cli
from melange.core import MelangeError
from melange.perf.catalog import GB, load_catalog

CAT = load_catalog()


def test_required_gpus_and_models_are_present():
    for g in ("L4", "A10G", "T4", "L40S", "A100-40GB", "A100-80GB", "H100", "H100-PCIe", "H200"):
        assert CAT.gpu(g).source
    for m in ("llama-2-7b", "llama-2-13b", "llama-2-70b", "llama-3-8b", "llama-3-70b", "mistral-7b",
              "qwen2.5-7b", "qwen2.5-72b"):
        assert CAT.model(m).source


def test_paper_prices_and_dense_flops():
    assert {g: CAT.gpu(g).cost for g in ("L4", "A10G", "A100-80GB", "H100")} == \
        {"L4": 0.70, "A10G": 1.01, "A100-80GB": 3.67, "H100": 7.516}
    assert CAT.gpu("A100-80GB").bandwidth == 1935 * GB
    assert CAT.gpu("H100").flops == 989e12 and CAT.gpu("H100-PCIe").flops == 756e12  # dense, not sparse
    assert CAT.gpu("H100").bandwidth != CAT.gpu("H100-PCIe").bandwidth


def test_model_parameter_counts_match_their_architecture():
    # Embeddings + per layer (attention q,o + k,v + 3 MLP matrices) + an LM head (untied; Qwen2.5's
    # small models tie it to the embeddings), +-2 %.
    for m in CAT.models.values():
        kv = m.kv_heads * m.head_dim
        per_layer = 2 * m.hidden * m.heads * m.head_dim + 2 * m.hidden * kv + 3 * m.hidden * m.intermediate
        heads = 1 if m.name == "qwen2.5-0.5b" else 2
        total = m.layers * per_layer + heads * m.vocab * m.hidden
        assert total == pytest.approx(m.params, rel=0.02), m.name


def test_user_file_adds_a_gpu_and_a_model(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("gpus:\n  - {name: MI300X, flops_tflops: 1307, bandwidth_gb_s: 5300, memory_gb: 192,"
                 " interconnect_gb_s: 448, cost: 6.0, source: AMD datasheet}\n"
                 "models:\n  - {name: tiny, params_b: 1, layers: 16, hidden: 2048, heads: 16, kv_heads: 4,"
                 " head_dim: 128, intermediate: 8192, vocab: 32000}\n")
    cat = load_catalog([f])
    assert cat.instance("2xMI300X").cost == 12.0
    assert cat.model("TINY").kv_bytes_per_token == 2 * 16 * 4 * 128 * 2


@pytest.mark.parametrize("entry, message", [
    ("gpus:\n  - {name: X, flops_tflops: -1, bandwidth_gb_s: 1, memory_gb: 1, interconnect_gb_s: 1, cost: 1}",
     r"gpus\[0\]\.flops_tflops: .*greater than 0"),
    ("gpus:\n  - {name: X, bandwidth_gb_s: 1, memory_gb: 1, interconnect_gb_s: 1, cost: 1}",
     r"gpus\[0\]\.flops_tflops: required key missing"),
    ("models:\n  - {name: m, params_b: 1, layers: 2, hidden: 8, heads: 6, kv_heads: 4, head_dim: 2,"
     " intermediate: 8, vocab: 8}", r"models\[0\]\.kv_heads: 4 does not divide heads 6"),
    ("models:\n  - {name: m, params_b: 1, layers: 2, hidden: 8, heads: 4, kv_heads: 4, head_dim: 2,"
     " intermediate: 8, vocab: 8, layer: 2}", r"models\[0\]\.layer: unknown key"),
    ("- just a list", "expected a mapping"),
    ("gpus: [", "not valid YAML"),
])
def test_bad_entries_are_one_line_errors_naming_the_field(tmp_path, entry, message):
    f = tmp_path / "bad.yaml"
    f.write_text(entry)
    with pytest.raises(MelangeError, match=message) as err:
        load_catalog([f])
    assert "\n" not in str(err.value)


def test_unknown_names_list_the_known_ones():
    with pytest.raises(MelangeError, match="unknown GPU 'B200'; known: L4, A10G"):
        CAT.gpu("B200")
    with pytest.raises(MelangeError, match="unknown model 'gpt-5'; known: llama-2-7b"):
        CAT.model("gpt-5")
    with pytest.raises(MelangeError, match="1 to 8 GPUs"):
        CAT.instance("16xH100")


def test_gpus_and_models_list_commands():
    runner = CliRunner()
    out = runner.invoke(cli, ["gpus", "list"], terminal_width=200)
    assert out.exit_code == 0 and "A100-80GB" in out.output and "7.516" in out.output
    assert "ad10x: 0.6 / 0.8, ±25% (no data)" in " ".join(out.output.split())  # L4: the band is shown
    out = runner.invoke(cli, ["models", "list"], terminal_width=200)
    assert out.exit_code == 0 and "qwen2.5-72b" in out.output


def test_list_with_a_bad_catalog_file_exits_2(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("gpus:\n  - {name: X}")
    out = CliRunner().invoke(cli, ["gpus", "list", "--catalog", str(f)])
    assert out.exit_code == 2 and "bad.yaml: gpus[0]" in out.output


def test_scenario_gpu_from_catalog_with_roofline_step_time(tmp_path):
    from melange.perf.roofline import RooflineModel
    from melange.scenario import load_scenario

    f = tmp_path / "s.yaml"
    f.write_text("model: llama-2-7b\n"
                 "grid: {input_edges: [1, 100], output_edges: [1, 100]}\n"
                 "workload: {rate: 1, distribution: [[1.0]]}\n"
                 "gpus:\n  - {name: a10g, catalog: A10G, step_time: roofline}\n"
                 "  - {name: tp, catalog: 2xA100-80GB, cost: 7.0}\n")
    sc = load_scenario(f)
    a10g, tp = sc.gpus
    assert (a10g.cost, a10g.gpus, a10g.memory_gb) == (1.01, 1, 24.0)
    assert (tp.cost, tp.gpus) == (7.0, 2)
    assert isinstance(sc.step_models["a10g"], RooflineModel) and "tp" not in sc.step_models


@pytest.mark.parametrize("gpus, message", [
    ("[{name: x, catalog: A10G, step_time: roofline}]", "model: required when gpus[x].step_time is 'roofline'"),
    ("[{name: x, cost: 1, step_time: roofline}]", "'roofline' needs catalog: GPU"),
    ("[{name: x, catalog: Z80}]", "unknown GPU 'Z80'"),
])
def test_scenario_catalog_errors(tmp_path, gpus, message):
    from melange.scenario import load_scenario

    f = tmp_path / "s.yaml"
    f.write_text("grid: {input_edges: [1, 100], output_edges: [1, 100]}\n"
                 f"workload: {{rate: 1, distribution: [[1.0]]}}\ngpus: {gpus}\n")
    with pytest.raises(MelangeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_scenario(f)


def test_a_calibration_for_an_unknown_preset_names_its_file(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("calibration:\n  presets:\n    - {name: nope, overhead_ms: 1, per_seq_us: 1, uncertainty: 0.1}\n")
    out = CliRunner().invoke(cli, ["gpus", "list", "--catalog", str(f)])
    assert out.exit_code == 2 and "mine.yaml: calibration.presets[nope]: no engine preset" in out.output
