"""The ``dsa`` baseline on a tiny random llama: the dense per-layer model computes the sliced supernet's logits, the
search keeps the lowest calibration perplexity within the band, beta = 0 is the ``sliced`` model, and a rerun skips
what is stored (no search for a model whose rows name its arch)."""

from __future__ import annotations

import json

import pytest
import torch

from nasbench.baselines import BaselineConfig, run_baseline
from nasbench.baselines.allocation import layer_scores
from nasbench.baselines.dsa import dense_model, per_layer_space, search
from nasbench.errors import NasBenchError
from nasbench.profile import ProfileConfig
from nasbench.space import arch_id
from nasbench.store import Store

#: Two archs of the 35% band of the 4-layer tiny space (35.4% and 34.2% of its params).
BAND = ({"embed_dim": 48, "n_layers": 3, "n_heads": 2, "head_size": 8, "n_kv_groups": 1, "intermediate_size": 32},
        {"embed_dim": 48, "n_layers": 3, "n_heads": 2, "head_size": 8, "n_kv_groups": 1, "intermediate_size": 30})
TARGET = 0.35


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(space, data dir, sorted dir): a 4-layer tiny llama (so that layers differ in importance), its calibration
    text and WikiText-2 stand-in (random words, different draws), and its `nasbench importance` directory."""
    from conftest import make_tiny_with_data
    from nasbench.importance import sort_model

    root = tmp_path_factory.mktemp("dsa")
    space, data = make_tiny_with_data(root, num_hidden_layers=4)
    sort_model(space, root / "sorted", tokens=256, seq_len=32, data_dir=data, progress=False)
    return space, data, root / "sorted"


def _supernet(space, sorted_dir):
    from nasbench.supernet import Supernet
    from nasbench.supernet.artifact import load_model

    loaded = load_model(space, sorted_dir)
    return Supernet(loaded.model, per_layer_space(space)), loaded.importance


def _calibration(space, data):
    from nasbench.importance import calibration_windows
    from nasbench.models import load_tokenizer

    return calibration_windows(space, load_tokenizer(space.model), data, 256, 32)


def _protocol(**overrides) -> ProfileConfig:
    values = dict(n=0, endpoints=False, metrics=("ppl", "latency", "memory"), ppl_tokens=512, seq_len=32,
                  latency_seq_len=16, latency_repeats=2, decode_tokens=2, dtype="float32")
    return ProfileConfig(**(values | overrides))


def test_dense_per_layer_model_computes_the_sliced_supernet(tiny) -> None:
    from nasbench.baselines._layerwise import dense_params

    space, _, sorted_dir = tiny
    supernet, _ = _supernet(space, sorted_dir)
    arch = {"embed_dim": 36, "n_layers": 3, "n_heads": [6, 2, 4], "head_size": 6, "n_kv_groups": 2,
            "intermediate_size": [50, 9, 27]}
    layers = [0, 2, 3]  # a layer skipped: the selection is exercised too
    model = dense_model(supernet, arch, layers=layers)
    attention = [layer.self_attn for layer in model.model.layers]
    assert [a.q_proj.out_features // 6 for a in attention] == [6, 2, 4]
    assert [a.num_key_value_groups for a in attention] == [3, 1, 2]
    assert [layer.mlp.down_proj.in_features for layer in model.model.layers] == [50, 9, 27]
    assert dense_params(model) == space.params(arch)
    ids = torch.randint(3, 96, (2, 24), generator=torch.Generator().manual_seed(1))
    supernet.set_sub_network(arch, layers=layers)
    with torch.no_grad():
        expected = supernet(input_ids=ids).logits
        got = model(input_ids=ids).logits
        # decoding with the KV cache runs the same per-layer heads: the last step's logits match the full forward
        prefix = model(input_ids=ids[:, :-1], use_cache=True)
        step = model(input_ids=ids[:, -1:], cache=prefix.past_key_values, use_cache=True).logits
    supernet.reset()
    assert torch.allclose(got, expected, atol=1e-4) and not torch.allclose(got, got.flip(0), atol=1e-3)
    assert torch.allclose(step[:, -1], expected[:, -1], atol=1e-4)


def test_search_keeps_the_lowest_calibration_perplexity_within_the_band(tiny) -> None:
    from nasbench.perplexity import perplexity

    space, data, sorted_dir = tiny
    supernet, importance = _supernet(space, sorted_dir)
    windows = _calibration(space, data)
    uniform, layers = BAND[0], importance.layers_for(3)
    result, model = search(supernet, space, uniform, layer_scores(importance, 3), windows, TARGET, layers=layers)
    scored = [c for c in result.combos if c.status == "scored"]
    assert len(result.combos) == 9 and len({arch_id(c.arch) for c in scored}) == len(scored) >= 3
    assert result.chosen.calibration_ppl == min(c.calibration_ppl for c in scored)
    assert result.chosen.beta > 0  # on this model the bent allocation wins over the uniform one
    # the beta = 0 combos are the uniform arch, scored once
    flat = [c for c in result.combos if c.beta == 0]
    assert [c.status for c in flat] == ["scored", "same arch as #0", "same arch as #0"]
    assert all(w == [32] * 3 for w in (flat[0].arch["intermediate_size"],))
    # the score is the chosen model's perplexity on the calibration windows (not the test corpus)
    again = perplexity(dense_model(supernet, result.chosen.arch, layers=layers), windows).ppl
    assert again == pytest.approx(result.chosen.calibration_ppl, rel=1e-6)
    assert perplexity(model, windows).ppl == pytest.approx(result.chosen.calibration_ppl, rel=1e-6)
    record = result.record()
    assert record["band_arch_id"] == arch_id(uniform) and len(record["combos"]) == 9
    assert record["combos"][result.best]["intermediate_size"] == result.chosen.arch["intermediate_size"]
    # a tight band rejects the combos whose parameter count moved, and says so
    share = space.params(uniform) / space.params(space.largest())
    tight, _ = search(supernet, space, uniform, layer_scores(importance, 3), windows, share, tolerance=1e-9,
                      layers=layers)
    rejected = [c for c in tight.combos if c.status.startswith("rejected")]
    assert rejected and all("outside" in c.status and c.params != space.params(uniform) for c in rejected)
    assert all(c.params == space.params(uniform) for c in tight.combos if c.status == "scored")
    with pytest.raises(NasBenchError, match="^target: "):  # nothing of the grid in a band the arch is not in
        search(supernet, space, uniform, layer_scores(importance, 3), windows, 0.9, layers=layers)


def test_beta_zero_is_the_sliced_model(tiny, tmp_path) -> None:
    space, data, sorted_dir = tiny
    db = tmp_path / "z.duckdb"
    common = dict(protocol=_protocol(metrics=("ppl",)), target=TARGET, archs=BAND[:1], calibration_tokens=256,
                  calibration_seq_len=32)
    sliced = run_baseline(space, db, BaselineConfig("sliced", **common), supernet=sorted_dir, data_dir=data,
                          progress=False)
    flat = run_baseline(space, db, BaselineConfig("dsa", beta=(0.0,), **common), supernet=sorted_dir,
                        data_dir=data, progress=False)
    assert flat.supernet_id == "baseline-dsa-35" and flat.arch_id == sliced.arch_id == arch_id(BAND[0])
    assert flat.params == sliced.params
    assert flat.values["ppl"] == pytest.approx(sliced.values["ppl"], rel=1e-6)
    with Store(db) as store:
        archs = store.query("SELECT DISTINCT arch_id FROM baseline_archs WHERE in_space")["arch_id"].tolist()
    assert archs == [arch_id(BAND[0])]  # the uniform winner is an arch of the space, as sliced's (listed apart)


def test_recovered_dsa_distils_the_chosen_model_with_the_budget(tiny, tmp_path, monkeypatch) -> None:
    """dsa with tokens: the searched model distilled like a standalone model (dsa-recovered-35), under the arch the
    untrained dsa baseline's search chose (not searched again); a rerun builds and trains nothing."""
    import yaml

    import nasbench.baselines.dsa as dsa
    from nasbench.importance import sort_model
    from nasbench.space import load_space
    from nasbench.train import recover_model

    space, data, _ = tiny
    doc = yaml.safe_load(open(space.path, encoding="utf-8"))
    doc["data"]["recovery"] = {"kind": "text", "path": "calib.txt"}  # the recovery text (never the ppl corpus)
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    space = load_space(tmp_path / "space.yaml")
    sort_model(space, tmp_path / "sorted", tokens=256, seq_len=32, data_dir=data, progress=False)
    db = tmp_path / "r.duckdb"
    common = dict(protocol=_protocol(metrics=("ppl",)), target=TARGET, archs=BAND[:1], beta=(0.0,),
                  calibration_tokens=256, calibration_seq_len=32)
    kwargs = dict(supernet=tmp_path / "sorted", data_dir=data, progress=False, work_dir=tmp_path / "work")
    flat = run_baseline(space, db, BaselineConfig("dsa", **common), **kwargs)

    def no_search(*args, **kwargs):
        raise AssertionError("searched again: the untrained dsa baseline's search is this one's")

    monkeypatch.setattr(dsa, "search", no_search)
    recovered = run_baseline(space, db, BaselineConfig("dsa", tokens=128, **common), recover_model=recover_model,
                             **kwargs)
    assert recovered.supernet_id == "baseline-dsa-recovered-35" and recovered.arch_id == flat.arch_id
    assert recovered.values["ppl"] != pytest.approx(flat.values["ppl"], rel=1e-6)  # trained: other weights
    with Store(db) as store:
        extra = json.loads(store.query("SELECT extra FROM measurements WHERE supernet_id = ? AND metric = 'ppl'",
                                       [recovered.supernet_id])["extra"][0])
        record = json.loads(store.query("SELECT config FROM supernets WHERE id = ?",
                                        [recovered.supernet_id])["config"][0])
    assert extra["train_tokens"] >= 128 and extra["band_arch_id"] == arch_id(BAND[0])
    assert record["search_from"] == flat.supernet_id and record["search"] == {}  # named, not copied
    again = run_baseline(space, db, BaselineConfig("dsa", tokens=128, **common), recover_model=recover_model,
                         **kwargs)
    assert again.built == 0 and again.rows == 0


def test_dsa_rows_record_the_search_and_resume(tiny, tmp_path, monkeypatch, capsys) -> None:
    import nasbench.baselines.dsa as dsa
    from nasbench.cli import main

    space, data, sorted_dir = tiny
    db = tmp_path / "d.duckdb"
    band = tmp_path / "band.jsonl"
    band.write_text("".join(json.dumps({"arch": a}) + "\n" for a in BAND), encoding="utf-8")
    argv = ["baseline", str(space.path), "--method", "dsa", "--target", str(TARGET), "--archs", str(band),
            "--supernet", str(sorted_dir), "--calibration-tokens", "256", "--calibration-seq-len", "32",
            "--metrics", "ppl,latency", "--ppl-tokens", "512", "--seq-len", "32", "--latency-seq-len", "16",
            "--latency-repeats", "2", "--decode-tokens", "2", "--dtype", "float32", "--data-dir", str(data),
            "--db", str(db)]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["supernet_id"] == "baseline-dsa-35" and out["models"] == out["built"] == 2
    assert out["new_rows"] == 2 * 5  # params, params_nonzero, ppl, latency, decode per model
    with Store(db) as store:
        rows = store.query("SELECT arch_id, metric, value, extra FROM measurements")
        config = json.loads(store.query("SELECT config FROM supernets")["config"][0])
        in_space = set(store.query("SELECT arch_id FROM architectures")["arch_id"])
    assert set(config["search"]) == {arch_id(a) for a in BAND} and config["beta_grid"] == [0.0, 0.25, 0.5]
    assert rows["arch_id"].nunique() == 2 and not set(rows["arch_id"]) <= in_space  # a per-layer winner
    for aid, group in rows.groupby("arch_id"):
        extras = [json.loads(e) for e in group["extra"]]
        assert len({e["band_arch_id"] for e in extras}) == 1 and len(group) == 5
        params_row = next(e for e, m in zip(extras, group["metric"]) if m == "params")
        combos = params_row["search"]["combos"]
        tried = [c["calibration_ppl"] for c in combos if c["status"] == "scored"]
        assert params_row["calibration_ppl"] == min(tried) and all("search" not in e for e in extras
                                                                   if e is not params_row)
        assert config["search"][params_row["band_arch_id"]] == params_row["search"]
        chosen = next(c for c in combos if c.get("calibration_ppl") == min(tried))
        assert group.loc[group["metric"] == "params", "value"].iloc[0] == chosen["params"]
        # a per-layer winner keeps its arch in every row and stays out of the space's archs
        assert ("arch" in params_row) == (aid not in in_space)
        if "arch" in params_row:
            assert params_row["arch"]["intermediate_size"] == chosen["intermediate_size"]
            assert aid == arch_id(params_row["arch"])

    from nasbench.report import baseline_section

    assert "| dsa-35 (n = 2) |" in baseline_section(db, space)  # Table 1 summarises it as sliced's rows

    def no_search(*args, **kwargs):
        raise AssertionError("searched again")

    monkeypatch.setattr(dsa, "search", no_search)
    assert main(argv) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["new_rows"] == 0 and again["built"] == 0 and again["arch_id"] == out["arch_id"]
    # an interrupted model (its latency rows lost) is rebuilt from the arch its rows name, not searched again
    with Store(db) as store:
        store.con.execute("DELETE FROM measurements WHERE arch_id = ? AND metric IN ('latency_ms', "
                          "'decode_ms_per_token')", [out["arch_id"]])
    assert main(argv) == 0
    resumed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert resumed["new_rows"] == 2 and resumed["built"] == 1 and resumed["arch_id"] == out["arch_id"]
    with pytest.raises(NasBenchError, match="beta"):  # the stored band archs were chosen on another grid
        run_baseline(space, db, BaselineConfig("dsa", protocol=_protocol(metrics=("ppl",)), target=TARGET,
                                               archs=BAND, beta=(0.0, 0.5), calibration_tokens=256,
                                               calibration_seq_len=32), supernet=sorted_dir, data_dir=data)


def test_dsa_config_checks_its_grid() -> None:
    archs = (BAND[0],)
    assert BaselineConfig("dsa", target=0.5, archs=archs).method_id == "dsa-50"
    with pytest.raises(NasBenchError, match="beta"):
        BaselineConfig("dsa", target=0.5, archs=archs, beta=(0.0, 1.0))
    with pytest.raises(NasBenchError, match="alpha"):
        BaselineConfig("dsa", target=0.5, archs=archs, alpha=())
    with pytest.raises(NasBenchError, match="alpha"):
        BaselineConfig("sliced", target=0.5, archs=archs, alpha=(3.0,))
    with pytest.raises(NasBenchError, match="^target: "):
        BaselineConfig("dsa", archs=archs)
