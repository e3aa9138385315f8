"""The pipeline verbs on a tiny model: importance -> export (sorted supernet), bench, bench rpd."""

from __future__ import annotations

import json

import torch
from transformers import AutoModelForCausalLM

from nasbench.cli import main
from nasbench.space import arch_id, load_space

from conftest import SPACES


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_export_takes_a_sample_line_and_reloads(capsys, tiny_with_data, tmp_path) -> None:
    from nasbench.supernet import Supernet

    space, _ = tiny_with_data
    code, line, _ = run(capsys, "space", "sample", space.path, "--n", "1", "--seed", "2")
    arch = json.loads(line)["arch"]
    code, out, err = run(capsys, "export", space.path, "--arch", line.strip(), "--out", str(tmp_path / "sub"))
    assert code == 0, err
    assert arch_id(arch) in out
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "sub")
    assert sum(p.numel() for p in model.parameters()) == space.params(arch)
    supernet = Supernet(AutoModelForCausalLM.from_pretrained(space.model.hf), space)
    supernet.set_sub_network(arch)
    x = torch.randint(0, 96, (2, 12))
    torch.testing.assert_close(model(input_ids=x).logits, supernet(input_ids=x).logits, atol=1e-5, rtol=1e-5)


def test_importance_then_export_from_the_sorted_supernet(capsys, tiny_with_data, tmp_path) -> None:
    from nasbench.importance import load_importance, sub_network_indices
    from nasbench.supernet import Supernet

    space, data = tiny_with_data
    sorted_dir, db = tmp_path / "sorted", tmp_path / "b.duckdb"
    code, out, err = run(capsys, "importance", space.path, "--scheme", "norm-mean", "--layers", "block-drop",
                         "--tokens", "256", "--seq-len", "32", "--out", str(sorted_dir), "--data-dir", str(data),
                         "--db", str(db))
    assert code == 0, err
    importance = load_importance(sorted_dir)
    assert importance.scheme == "norm-mean" and importance.layer_scheme == "block-drop"
    assert len(importance.layers) == space.reference.n_layers
    arch = space.canonical({"embed_dim": 36, "n_layers": 1, "n_heads": 2, "head_size": 6, "n_kv_groups": 2,
                            "intermediate_size": 40})
    code, _, err = run(capsys, "export", space.path, "--arch", json.dumps(arch), "--supernet", str(sorted_dir),
                       "--out", str(tmp_path / "sub"))
    assert code == 0, err
    provenance = json.loads((tmp_path / "sub" / "nasbench.json").read_text())
    assert provenance["indices"]["layers"] == importance.layers_for(1)
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "sub")
    # the same sub-network, selected by index lists on the unsorted base model
    base = Supernet(AutoModelForCausalLM.from_pretrained(space.model.hf), space)
    ref = space.reference
    base.set_sub_network(arch, **sub_network_indices(importance, arch, "llama", ref.n_heads // ref.n_kv_groups))
    x = torch.randint(0, 96, (2, 12))
    torch.testing.assert_close(exported(input_ids=x).logits, base(input_ids=x).logits, atol=1e-5, rtol=1e-5)
    code, out, _ = run(capsys, "sql", "SELECT id, strategy, checkpoint FROM supernets", "--db", str(db),
                       "--format", "json")
    assert json.loads(out) == {"id": "sorted", "strategy": "importance-sorted", "checkpoint": str(sorted_dir)}


def test_bench_slicing_ends_with_one_json_line(capsys, tiny_with_data) -> None:
    space, _ = tiny_with_data
    code, out, err = run(capsys, "bench", "slicing", space.path, "--n", "2", "--seq-len", "16")
    assert code == 0, err
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["bench"] == "slicing" and figures["median_ratio"] > 0 and figures["tokens_per_s"] > 0


def test_bench_importance_ends_with_one_json_line(capsys, tiny_with_data) -> None:
    space, data = tiny_with_data
    code, out, err = run(capsys, "bench", "importance", space.path, "--tokens", "256", "--seq-len", "32",
                         "--data-dir", str(data))
    assert code == 0, err
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["bench"] == "importance" and figures["ratio"] > 0 and figures["tokens"] == 256


def test_bench_rpd_prints_the_table_and_a_json_line(capsys, tiny_with_data, tmp_path) -> None:
    space, data = tiny_with_data
    code, out, err = run(capsys, "bench", "rpd", space.path, "--n", "3", "--tokens", "128", "--ppl-tokens",
                         "128", "--seq-len", "32", "--schemes", "mean-mean", "--layers", "block-importance",
                         "--data-dir", str(data))
    assert code == 0, err
    lines = out.strip().splitlines()
    figures = json.loads(lines[-1])
    assert figures["bench"] == "rpd"
    assert set(figures["rpd"]) == {f"{space.name}/mean-mean/block-importance"}
    assert "mean-mean/block-importance" in lines[0]


def test_export_refuses_per_layer_archs(capsys, tmp_path) -> None:
    path = str(SPACES / "smollm2-135m-layerwise.yaml")
    space = load_space(path)
    line = json.dumps(space.sample(1, seed=0)[0])
    code, _, err = run(capsys, "export", path, "--arch", line, "--out",
                       str(tmp_path / "x"))
    assert code == 2 and err.startswith("nasbench: error: ") and len(err.strip().splitlines()) == 1
