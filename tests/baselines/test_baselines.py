"""The baselines on tiny random models: each method's defining property against a direct computation, the full row
set `run_baseline` stores (resumable), the sliced and recovered baselines, the layer-wise allocation, and the
report's Table 1."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from nasbench.baselines import (Allocation, BaselineConfig, allocate, magnitude_prune, run_baseline, slice_model,
                                sliced_dim, sparsegpt_prune, sparsegpt_weight, wanda_prune, wanda_scores)
from nasbench.baselines._layerwise import decoder_layers, decoder_linears, dense_params, n_m_mask, nonzero_params
from nasbench.errors import NasBenchError
from nasbench.models import tiny_model
from nasbench.profile import ProfileConfig
from nasbench.space import arch_id, load_space
from nasbench.store import Store


def _ids(n: int = 6, seq: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randint(3, 96, (n, seq), generator=torch.Generator().manual_seed(seed))


def _assert_2_4(model: torch.nn.Module) -> None:
    for layer in decoder_layers(model):
        for name, linear in decoder_linears(layer).items():
            groups = linear.weight.reshape(linear.weight.shape[0], -1, 4)
            assert ((groups == 0).sum(-1) >= 2).all(), name


@pytest.mark.parametrize("family", ["llama", "gpt_neox"])
@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_every_group_of_four_inputs_keeps_at_most_two_weights(family: str, method: str) -> None:
    model = tiny_model(family, seed=1).float()
    dense = dense_params(model)
    ids = _ids()
    {"magnitude": lambda m: magnitude_prune(m), "wanda": lambda m: wanda_prune(m, ids),
     "sparsegpt": lambda m: sparsegpt_prune(m, ids)}[method](model)
    _assert_2_4(model)
    pruned = sum(lin.weight.numel() for layer in decoder_layers(model) for lin in decoder_linears(layer).values())
    assert dense_params(model) == dense
    assert nonzero_params(model) == pytest.approx(dense - pruned // 2, abs=pruned // 200)


def test_n_m_mask_prunes_the_lowest_scores_of_each_group() -> None:
    scores = torch.tensor([[4.0, 1.0, 3.0, 2.0, 0.0, 9.0, 8.0, 7.0]])
    assert n_m_mask(scores).tolist() == [[False, True, False, True, True, False, False, True]]
    with pytest.raises(NasBenchError):
        n_m_mask(torch.ones(2, 6))


def test_wanda_scores_are_weight_magnitude_times_input_norm() -> None:
    torch.manual_seed(0)
    weight, x = torch.randn(5, 8), torch.randn(40, 8) * torch.arange(1, 9)
    expected = weight.abs() * x.norm(dim=0).unsqueeze(0)
    torch.testing.assert_close(wanda_scores(weight, (x * x).sum(0)), expected)


def test_wanda_uses_the_calibration_inputs_of_each_layer() -> None:
    """The first block's q_proj: its Wanda mask is the one |W| * ||X|| gives on that layer's real inputs."""
    model = tiny_model("llama", seed=1).float()
    ids = _ids()
    caught = []
    q_proj = decoder_layers(model)[0].self_attn.q_proj
    handle = q_proj.register_forward_hook(lambda m, args, out: caught.append(args[0].reshape(-1, args[0].shape[-1])))
    with torch.no_grad():
        for batch in ids.split(4):
            model(input_ids=batch)
    handle.remove()
    x = torch.cat(caught)
    expected = q_proj.weight.detach().masked_fill(n_m_mask(q_proj.weight.abs() * x.norm(dim=0)), 0.0)
    wanda_prune(model, ids, batch_size=4)
    torch.testing.assert_close(q_proj.weight.detach(), expected)


def test_sparsegpt_reconstructs_a_layer_better_than_magnitude_and_wanda() -> None:
    torch.manual_seed(0)
    weight = torch.randn(24, 64)
    x = torch.randn(512, 64) @ torch.randn(64, 64)  # correlated inputs, as real activations are
    gram = x.T @ x
    errors = {}
    for name, pruned in {
        "magnitude": weight.masked_fill(n_m_mask(weight.abs()), 0.0),
        "wanda": weight.masked_fill(n_m_mask(wanda_scores(weight, torch.diag(gram))), 0.0),
        "sparsegpt": sparsegpt_weight(weight, gram, x.shape[0], block_size=16),
    }.items():
        assert ((pruned.reshape(24, -1, 4) == 0).sum(-1) >= 2).all()
        errors[name] = (x @ weight.T - x @ pruned.T).pow(2).sum().item()
    assert errors["sparsegpt"] < errors["wanda"] < errors["magnitude"]


def test_sparsegpt_model_output_is_closer_than_magnitude() -> None:
    model = tiny_model("llama", seed=1).float()
    ids = _ids(8)
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        methods = {"magnitude": magnitude_prune, "sparsegpt": lambda m: sparsegpt_prune(m, ids)}
        mse = {name: (prune(copy.deepcopy(model))(input_ids=ids).logits - ref).pow(2).mean().item()
               for name, prune in methods.items()}
    assert mse["sparsegpt"] < mse["magnitude"]


def test_slicegpt_at_zero_slicing_computes_the_same_function() -> None:
    model = tiny_model("llama", seed=1).float()
    ids = _ids()
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        rotated = slice_model(copy.deepcopy(model), ids, 0.0)
        torch.testing.assert_close(rotated(input_ids=ids).logits, ref, atol=1e-4, rtol=1e-4)
    assert rotated.config.hidden_size == model.config.hidden_size
    assert not torch.equal(rotated.model.embed_tokens.weight, model.model.embed_tokens.weight)  # really rotated


def test_slicegpt_shrinks_the_hidden_size_and_counts_its_real_params() -> None:
    model = tiny_model("llama", seed=1).float()  # hidden 48, 2 layers, 6 heads of 10, 2 kv heads, MLP 64, vocab 96
    ids = _ids()
    sliced = slice_model(copy.deepcopy(model), ids, 0.25)
    d = sliced_dim(48, 0.25)
    assert d == 32 == sliced.config.hidden_size
    assert sliced.model.embed_tokens.weight.shape == (96, d) and sliced.lm_head.weight.shape == (96, d)
    per_layer = d * (60 + 20 + 20) + 60 * d + 3 * d * 64 + 2 * d + 2 * d * d  # q,k,v in; o out; MLP; norms; shortcuts
    assert dense_params(sliced) == 2 * 96 * d + 2 * per_layer + d  # untied embedding and head, final norm
    with torch.no_grad():
        logits = sliced(input_ids=ids).logits
    assert logits.shape == (6, 32, 96) and torch.isfinite(logits).all()
    assert sliced_dim(576, 0.1) == 512 and sliced_dim(576, 0.2) == 456 and sliced_dim(576, 0.3) == 400
    with pytest.raises(NasBenchError):
        sliced_dim(48, 1.0)


def _protocol(**overrides) -> ProfileConfig:
    """A fast protocol: float32 (no bf16 probe), short ppl, 2 latency repeats, 2 decode tokens."""
    values = dict(n=0, endpoints=False, metrics=("ppl", "latency", "memory"), ppl_tokens=512, seq_len=32,
                  latency_seq_len=16, latency_repeats=2, decode_tokens=2, dtype="float32")
    return ProfileConfig(**(values | overrides))


FULL_SET = {"params", "params_nonzero", "ppl", "latency_ms", "decode_ms_per_token", "memory_mb", "weights_mb",
            "kv_bytes_per_token"}


def test_run_baseline_stores_the_full_row_set_and_resumes(tiny_with_data, tmp_path) -> None:
    space, data = tiny_with_data
    db = tmp_path / "b.duckdb"
    common = dict(calibration_tokens=256, calibration_seq_len=32, protocol=_protocol())
    wanda = run_baseline(space, db, BaselineConfig("wanda-2:4", **common), data_dir=data, progress=False)
    assert wanda.supernet_id == "baseline-wanda-2:4" and wanda.rows == len(FULL_SET)
    sliced = run_baseline(space, db, BaselineConfig("slicegpt", slicing=0.25, **common), data_dir=data,
                          progress=False)
    assert sliced.supernet_id == "baseline-slicegpt-25" and sliced.rows == len(FULL_SET)
    again = run_baseline(space, db, BaselineConfig("slicegpt", slicing=0.25, **common), data_dir=data,
                         progress=False)
    assert again.rows == 0 and again.built == 0 and again.params == sliced.params
    with pytest.raises(NasBenchError, match="^calibration_tokens: "):  # the stored rows were pruned on 256 tokens
        run_baseline(space, db, BaselineConfig("slicegpt", slicing=0.25, **(common | {"calibration_tokens": 512})),
                     data_dir=data, progress=False)
    with Store(db) as store:
        rows = store.query("SELECT supernet_id, metric, value, device, dtype, extra FROM measurements")
        supernets = store.query("SELECT id, strategy, tokens, config FROM supernets ORDER BY id")
        full = store.query("SELECT params FROM baseline_archs WHERE in_space")  # a baseline's archs, apart
    assert sorted(supernets["id"]) == ["baseline-slicegpt-25", "baseline-wanda-2:4"]
    assert set(supernets["strategy"]) == {"slicegpt", "wanda-2:4"} and set(supernets["tokens"]) == {256}
    by = {(r.supernet_id, r.metric): r for r in rows.itertuples()}
    assert {m for s, m in by if s == "baseline-wanda-2:4"} == FULL_SET
    dense = full["params"].iloc[0]
    assert by[("baseline-wanda-2:4", "params")].value == dense == space.params(space.largest())
    assert by[("baseline-wanda-2:4", "params_nonzero")].value < 0.8 * dense
    assert by[("baseline-slicegpt-25", "params")].value == by[("baseline-slicegpt-25", "params_nonzero")].value \
        == sliced.params
    assert "no sparse speed-up" in by[("baseline-wanda-2:4", "latency_ms")].extra
    assert "no sparse speed-up" in by[("baseline-wanda-2:4", "decode_ms_per_token")].extra
    assert "no sparse speed-up" not in by[("baseline-slicegpt-25", "latency_ms")].extra
    assert by[("baseline-wanda-2:4", "ppl")].dtype == "float32" and by[("baseline-wanda-2:4", "params")].device == ""
    assert all(by[(s, m)].value > 0 for s, m in by)
    assert len(full) == 1  # the SliceGPT model is not an arch of the space


def test_baseline_config_reuses_the_profile_protocol_and_checks_its_flags() -> None:
    config = BaselineConfig("wanda-2:4")
    assert isinstance(config.protocol, ProfileConfig) and config.protocol.dtype == "auto"
    assert config.protocol.metrics == ("ppl", "acc", "latency", "memory") and config.protocol.decode_tokens == 16
    with pytest.raises(NasBenchError, match="^method: "):
        BaselineConfig("obs-2:4")
    with pytest.raises(NasBenchError, match="^slicing: "):
        BaselineConfig("slicegpt", slicing=1.5)
    with pytest.raises(NasBenchError, match="^metrics: "):
        BaselineConfig("wanda-2:4", protocol=_protocol(metrics=("flops",)))
    with pytest.raises(NasBenchError, match="^target: "):
        BaselineConfig("sliced", archs=({"n_layers": 1},))
    with pytest.raises(NasBenchError, match="^target: "):
        BaselineConfig("wanda-2:4", target=0.5)
    with pytest.raises(NasBenchError, match="^tokens: "):
        BaselineConfig("sliced-recovered", target=0.5, archs=({"n_layers": 1},))
    with pytest.raises(NasBenchError, match="^tokens: "):
        BaselineConfig("sliced", target=0.5, archs=({"n_layers": 1},), tokens=10)
    with pytest.raises(NasBenchError, match="^tokens: .*2:4 mask"):  # a merged LoRA delta would fill the masks
        BaselineConfig("wanda-2:4", tokens=10)
    recovered = BaselineConfig("slicegpt", tokens=64)
    assert recovered.method_id == "slicegpt-recovered-20" and recovered.recovered
    assert BaselineConfig("slicegpt").method_id == "slicegpt-20" and not BaselineConfig("slicegpt").recovered
    assert BaselineConfig("dsa", target=0.5, archs=({"n_layers": 1},), tokens=64).method_id == "dsa-recovered-50"


def test_cli_baseline_writes_rows_and_rejects_bad_flags(tiny_with_data, tmp_path, capsys) -> None:
    import json

    from nasbench.cli import main

    space, data = tiny_with_data
    db = tmp_path / "cli.duckdb"
    argv = ["baseline", str(space.path), "--method", "magnitude-2:4", "--metrics", "ppl", "--ppl-tokens", "512",
            "--seq-len", "32", "--dtype", "float32", "--data-dir", str(data), "--db", str(db)]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["supernet_id"] == "baseline-magnitude-2:4" and out["new_rows"] == 3 and out["values"]["ppl"] > 1
    assert main(argv) == 0 and json.loads(capsys.readouterr().out.strip().splitlines()[-1])["new_rows"] == 0
    # --remeasure-before: the asked rows stored before it are measured again and replace the old ones (not doubled;
    # the params rows every run writes are kept); the same command again resumes (nothing left), as profile's flag
    def when() -> dict[str, object]:
        with Store(db) as store:
            return dict(store.query("SELECT metric, created_at FROM measurements").itertuples(index=False))

    before = when()
    cut = str(max(before.values()) + __import__("datetime").timedelta(microseconds=1))
    assert main([*argv, "--remeasure-before", cut]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["new_rows"] == 0  # replaced, none added
    after = when()
    assert after.keys() == before.keys() and after["ppl"] > max(before.values())
    assert after["params"] == before["params"] and after["params_nonzero"] == before["params_nonzero"]
    assert main([*argv, "--remeasure-before", cut]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["new_rows"] == 0
    assert when() == after
    assert main([*argv, "--remeasure-before", "yesterday"]) == 2
    assert "--remeasure-before: must be an ISO time" in capsys.readouterr().err
    assert main([*argv[:3], "slicegpt", "--slicing", "0", *argv[4:]]) == 2
    assert "--slicing" in capsys.readouterr().err
    assert main([*argv[:3], "sliced", *argv[4:]]) == 2
    assert "--target" in capsys.readouterr().err


def test_run_baseline_on_other_weights_gets_its_own_id(tiny_with_data, tmp_path) -> None:
    space, data = tiny_with_data
    weights = tmp_path / "my-weights"
    tiny_model("llama", seed=5).save_pretrained(weights)  # the shape of the space's model, other weights
    config = BaselineConfig("magnitude-2:4", protocol=_protocol(metrics=("ppl",)))
    ours = run_baseline(space, tmp_path / "w.duckdb", config, supernet=weights, data_dir=data, progress=False)
    base = run_baseline(space, tmp_path / "w.duckdb", config, data_dir=data, progress=False)
    assert ours.supernet_id == "baseline-magnitude-2:4+my-weights" and base.supernet_id == "baseline-magnitude-2:4"
    assert ours.values["ppl"] != base.values["ppl"]
    with Store(tmp_path / "w.duckdb") as store:
        checkpoint = store.query("SELECT checkpoint FROM supernets WHERE id = ?", [ours.supernet_id])["checkpoint"][0]
    assert checkpoint == str(weights)


def test_baseline_latency_rel_is_timed_against_the_full_model(tiny_with_data, tmp_path) -> None:
    """latency_rel: the same drift-cancelled protocol as a sub-network's (model and full model alternately), so a
    comparison table's latencies share one reference; a 2:4 model has the full model's shape and dense kernels."""
    space, data = tiny_with_data
    config = BaselineConfig("magnitude-2:4", protocol=_protocol(metrics=("latency_rel",)))
    summary = run_baseline(space, tmp_path / "r.duckdb", config, data_dir=data, progress=False)
    with Store(tmp_path / "r.duckdb") as store:
        row = store.query("SELECT value, n_repeats, extra FROM measurements WHERE metric = 'latency_rel'")
    extra = json.loads(row["extra"][0])
    assert summary.values["latency_rel"] == row["value"][0] and 0.2 < row["value"][0] < 5
    assert extra["reference"] == arch_id(space.largest()) and extra["reference_ms"] > 0 and row["n_repeats"][0] >= 1
    assert "no sparse speed-up" in extra["note"]


def _with_recovery_text(space, tmp_path):
    import yaml

    doc = yaml.safe_load(open(space.path, encoding="utf-8"))
    doc["data"]["recovery"] = {"kind": "text", "path": "calib.txt"}  # the recovery text (never the ppl corpus)
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    return load_space(tmp_path / "space.yaml")


def test_recover_model_distils_a_pruned_dense_model_towards_the_full_model(tiny_with_data, tmp_path) -> None:
    """SliceGPT's model (rotated, sliced, with shortcut matrices: no sub-network of the space) trained with the
    supernet's recovery recipe: LoRA on every linear layer, merged back; its KL to the full model falls."""
    from nasbench.baselines import slice_model
    from nasbench.models import load_tokenizer
    from nasbench.train import recover_model
    from nasbench.train.data import build_data

    space, data = tiny_with_data
    space = _with_recovery_text(space, tmp_path)
    teacher = tiny_model("llama", seed=0).eval()
    pruned = slice_model(copy.deepcopy(teacher), _ids(), 0.25).eval()
    before = {n: p.detach().clone() for n, p in pruned.named_parameters()}
    result = recover_model(space, pruned, teacher, 64 * 40, data_dir=data, batch_size=2, seq_len=32,
                           precision="fp32", progress=False)
    assert result.steps == 40 and result.tokens > 0 and result.config["lora_r"] == 32
    assert {n: p.shape for n, p in result.model.named_parameters()} == {n: p.shape for n, p in before.items()}
    assert all(torch.equal(p, before[n]) for n, p in pruned.named_parameters())  # the input is left untouched
    rows = build_data(space, load_tokenizer(space.model), source="recovery", seq_len=32, data_dir=data, seed=0)
    batch = rows.batch(rows.rows(0, 4))

    def kl(model: torch.nn.Module) -> float:
        with torch.no_grad():
            t = torch.log_softmax(teacher(input_ids=batch["input_ids"]).logits, -1)
            s = torch.log_softmax(model(input_ids=batch["input_ids"]).logits, -1)
        return float((t.exp() * (t - s)).sum(-1).mean())

    assert kl(result.model) < 0.8 * kl(pruned)


def test_recovered_slicegpt_baseline_names_its_budget_and_resumes(tiny_with_data, tmp_path) -> None:
    from nasbench.train import recover_model

    space, data = tiny_with_data
    space = _with_recovery_text(space, tmp_path)
    db = tmp_path / "r.duckdb"
    common = dict(calibration_tokens=256, calibration_seq_len=32, protocol=_protocol(metrics=("ppl",)))
    plain = run_baseline(space, db, BaselineConfig("slicegpt", slicing=0.25, **common), data_dir=data,
                         progress=False)
    with pytest.raises(NasBenchError, match="^recover_model: "):  # training is the train stage's, passed in
        run_baseline(space, db, BaselineConfig("slicegpt", slicing=0.25, tokens=128, **common), data_dir=data,
                     progress=False)
    config = BaselineConfig("slicegpt", slicing=0.25, tokens=128, **common)
    recovered = run_baseline(space, db, config, data_dir=data, progress=False, work_dir=tmp_path / "work",
                             recover_model=recover_model)
    assert recovered.supernet_id == "baseline-slicegpt-recovered-25" and recovered.arch_id == plain.arch_id
    assert recovered.params == plain.params and recovered.values["ppl"] != plain.values["ppl"]
    with Store(db) as store:
        extra = json.loads(store.query("SELECT extra FROM measurements WHERE supernet_id = ? AND metric = 'ppl'",
                                       [recovered.supernet_id])["extra"][0])
        record = json.loads(store.query("SELECT config FROM supernets WHERE id = ?",
                                        [recovered.supernet_id])["config"][0])
    assert extra["train_tokens"] >= 128 and record["tokens_per_model"] == 128 and "recover_model" in record["recovery"]
    assert not (tmp_path / "work" / recovered.supernet_id.replace(":", "_") / recovered.arch_id).exists()
    with pytest.raises(NasBenchError, match="^tokens: "):  # the stored rows were trained on 128 tokens
        run_baseline(space, db, BaselineConfig("slicegpt", slicing=0.25, tokens=256, **common), data_dir=data,
                     progress=False, recover_model=recover_model)

    # a shape-only group added later (latency: one timing pass over every model) measures the model untrained
    def no_training(*args, **kwargs):
        raise AssertionError("trained again for a latency row")

    with Store(db) as store:
        wall = store.query("SELECT wall_time_s FROM supernets WHERE id = ?", [recovered.supernet_id])["wall_time_s"][0]
    timed = BaselineConfig("slicegpt", slicing=0.25, tokens=128, calibration_tokens=256, calibration_seq_len=32,
                           protocol=_protocol(metrics=("ppl", "latency_rel")))
    again = run_baseline(space, db, timed, data_dir=data, progress=False, recover_model=no_training)
    assert again.built == 1 and again.rows == 2 and set(again.values) == {"latency_rel", "decode_rel"}
    with Store(db) as store:
        row = store.query("SELECT extra FROM measurements WHERE supernet_id = ? AND metric = 'latency_rel'",
                          [recovered.supernet_id])
        assert store.query("SELECT wall_time_s FROM supernets WHERE id = ?",
                           [recovered.supernet_id])["wall_time_s"][0] == wall  # the training's time is kept
    assert json.loads(row["extra"][0])["weights"].startswith("untrained")
    # ... and so does a recovered model that has no rows yet (its params are its shape's too)
    timed = BaselineConfig("slicegpt", slicing=0.5, tokens=128, calibration_tokens=256, calibration_seq_len=32,
                           protocol=_protocol(metrics=("latency_rel",)))
    first = run_baseline(space, db, timed, data_dir=data, progress=False, recover_model=no_training)
    assert first.built == 1 and {"params", "latency_rel", "decode_rel"} <= set(first.values)


def _sorted_and_band(space, data, tmp_path, k: int = 2):
    """A `nasbench importance` directory of the tiny space, and k archs near one parameter share (a band)."""
    from nasbench.importance import sort_model

    sort_model(space, tmp_path / "sorted", tokens=256, seq_len=32, data_dir=data, progress=False)
    full = space.params(space.largest())
    archs = space.sample(200, seed=3)
    target = round(space.params(archs[0]) / full, 2)
    band = [a for a in archs if abs(space.params(a) / full - target) <= 0.015][:k]
    return tmp_path / "sorted", target, band


def test_sliced_baselines_cut_the_sorted_model_to_the_band_and_recover(tiny_with_data, tmp_path) -> None:
    from nasbench.supernet import Supernet
    from nasbench.supernet.artifact import load_model
    from nasbench.train import recover_arch

    space, data = tiny_with_data
    space = _with_recovery_text(space, tmp_path)
    sorted_dir, target, band = _sorted_and_band(space, data, tmp_path)
    db = tmp_path / "s.duckdb"
    protocol = _protocol(metrics=("ppl", "latency"))
    one_shot = run_baseline(space, db, BaselineConfig("sliced", protocol=protocol, target=target, archs=tuple(band)),
                            supernet=sorted_dir, data_dir=data, progress=False)
    assert one_shot.supernet_id == f"baseline-sliced-{target * 100:g}" and one_shot.models == len(band) == 2
    assert one_shot.rows == 2 * 5  # params, params_nonzero, ppl, latency, decode per arch
    # the one-shot model is the sorted model's extracted sub-network: its perplexity is the sliced supernet's
    from nasbench import data as sources
    from nasbench.models import load_tokenizer
    from nasbench.perplexity import WIKITEXT2_TEST, perplexity, tokenize_corpus, windows

    loaded = load_model(space, sorted_dir)
    supernet = Supernet(loaded.model, space)
    supernet.set_sub_network(band[0], layers=loaded.importance.layers_for(band[0]["n_layers"]))
    ids = windows(tokenize_corpus(load_tokenizer(space.model), sources.read_text(
        space.data.get("perplexity", WIKITEXT2_TEST), data)), 32, 512)
    with Store(db) as store:
        stored = store.values_by_supernet(space.name, arch_id(space.canonical(band[0])), "ppl")
    assert stored[one_shot.supernet_id] == pytest.approx(perplexity(supernet, ids).ppl, rel=1e-4)
    recovered = run_baseline(space, db, BaselineConfig("sliced-recovered", protocol=protocol, target=target,
                                                       archs=tuple(band[:1]), tokens=64),
                             supernet=sorted_dir, data_dir=data, progress=False, work_dir=tmp_path / "work",
                             recover=recover_arch)
    assert recovered.supernet_id == f"baseline-sliced-recovered-{target * 100:g}" and recovered.rows == 5
    with Store(db) as store:
        rows = store.query("SELECT metric, value, extra FROM measurements WHERE supernet_id = ?",
                           [recovered.supernet_id])
        tokens = store.query("SELECT tokens FROM supernets WHERE id = ?", [recovered.supernet_id])["tokens"][0]
    import json

    assert tokens == 64 and all(json.loads(e)["train_tokens"] >= 64 for e in rows["extra"])
    assert not (tmp_path / "work" / recovered.supernet_id / recovered.arch_id).exists()  # stored, then cleaned
    ppl = dict(zip(rows["metric"], rows["value"]))["ppl"]
    assert ppl != stored[one_shot.supernet_id]  # trained: other weights
    with pytest.raises(NasBenchError, match="^tokens: "):
        run_baseline(space, db, BaselineConfig("sliced-recovered", protocol=protocol, target=target,
                                               archs=tuple(band[1:2]), tokens=128),
                     supernet=sorted_dir, data_dir=data, progress=False, recover=recover_arch)
    with pytest.raises(NasBenchError, match="^recover: "):  # training is the train stage's, passed in
        run_baseline(space, db, BaselineConfig("sliced-recovered", protocol=protocol, target=target,
                                               archs=tuple(band[1:2]), tokens=64),
                     supernet=sorted_dir, data_dir=data, progress=False)
    with pytest.raises(NasBenchError, match=r"^archs\[0\]: "):  # not in the band
        run_baseline(space, db, BaselineConfig("sliced", protocol=protocol, target=target,
                                               archs=(space.largest(),)), supernet=sorted_dir, data_dir=data)
    with pytest.raises(NasBenchError, match="^supernet: "):
        run_baseline(space, db, BaselineConfig("sliced", protocol=protocol, target=target, archs=tuple(band)),
                     data_dir=data)


def _layerwise_space(tmp_path, allocation):
    import yaml

    from nasbench.models import tiny_space

    base = tiny_space(tmp_path / "lw", "llama", seed=2, num_hidden_layers=3)
    doc = yaml.safe_load(open(base.path, encoding="utf-8"))
    doc["dimensions"]["n_heads"] = {"choice": [2, 4, 6], "per_layer": True}
    doc["dimensions"]["intermediate_size"] = {"choice": [16, 24, 32, 40, 48, 56, 64], "per_layer": True}
    doc["dimensions"]["n_kv_groups"] = 2
    doc["name"] = "tiny-layerwise"
    if allocation is not None:
        doc["allocation"] = allocation
    path = tmp_path / "lw" / "layerwise.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return load_space(path)


def test_layerwise_allocation_maps_two_numbers_and_the_layer_scores_to_per_layer_widths(tmp_path) -> None:
    from nasbench.errors import InvalidSpaceError

    space = _layerwise_space(tmp_path, {"scores": "layers", "alpha": {"choice": [0.5, 1, 2]},
                                        "beta": {"choice": [0, 0.5]}})
    allocation = Allocation.from_space(space)
    assert allocation.alpha == (0.5, 1.0, 2.0) and allocation.beta == (0.0, 0.5)
    uniform = {"embed_dim": 48, "n_layers": 3, "n_heads": 4, "head_size": 8, "n_kv_groups": 2,
               "intermediate_size": 32}
    scores = [0.2, 3.0, 1.0]
    flat = allocate(space, uniform, scores, alpha=1.0, beta=0.0)
    assert flat["intermediate_size"] == [32, 32, 32] and flat["n_heads"] == [4, 4, 4]
    bent = allocate(space, uniform, scores, alpha=1.0, beta=0.5)
    widths = bent["intermediate_size"]
    assert widths[1] > widths[2] > widths[0]  # the order of the scores
    assert abs(sum(widths) / 3 - 32) <= 8  # the mean width stays near the uniform one (up to snapping)
    assert space.canonical(bent) == bent
    # a 2-layer sub-network keeps the 2 most important layers' scores (model order)
    two = allocate(space, dict(uniform, n_layers=2), scores, alpha=1.0, beta=0.5)
    assert two["intermediate_size"][0] > two["intermediate_size"][1]  # layers 1 and 2 (scores 3.0, 1.0)
    picks = allocation.sample(space, scores, 5, seed=0)
    assert len(picks) == 5 and all(space.is_valid(a) for a, _, _ in picks)
    assert allocation.cardinality(space) < space.cardinality()
    with pytest.raises(InvalidSpaceError, match="allocation.beta"):
        Allocation.from_space(_layerwise_space(tmp_path, {"beta": {"choice": [1.5]}}))
    with pytest.raises(InvalidSpaceError, match="allocation"):
        Allocation.from_space(_layerwise_space(tmp_path, None))


def test_report_table_and_findings_from_baseline_rows(tmp_path) -> None:
    from nasbench.pareto import baseline_points
    from nasbench.models import tiny_space
    from nasbench.report import baseline_section
    from nasbench.store import Measurement

    space = tiny_space(tmp_path / "s", "llama")
    full = space.largest()
    archs = [full, *space.sample(12, seed=4)]
    db = tmp_path / "r.duckdb"
    with Store(db) as store:
        store.add_space(space)
        store.add_supernet("trained-x", space.name, "tiny", tokens=1000, steps=3)
        store.add_supernet("baseline-wanda-2:4", space.name, "tiny", strategy="wanda-2:4", tokens=64)
        store.add_supernet("baseline-sliced-50", space.name, "tiny", strategy="sliced")
        store.add_architectures(space, archs)
        rows = [Measurement(arch_id(full), "pretrained", "ppl", 10.0, "perplexity")]
        compressed = sorted(archs[1:], key=space.params)
        trap = compressed[0]  # the smallest: the lowest test ppl below (a test-set minimum would pick it)
        for arch in archs:
            share = space.params(arch) / space.params(full)
            test = 1.0 if arch is trap else 10.0 / share  # the full model: the lowest of all but the trap
            rows += [Measurement(arch_id(arch), "trained-x", "ppl", test, "perplexity"),
                     # the selection split ranks like 10 / share, the trap included: it is no pick there
                     Measurement(arch_id(arch), "trained-x", "ppl_selection", 11.0 / share, "perplexity"),
                     Measurement(arch_id(arch), "trained-x", "latency_ms", 100.0 * share, "ms", device="cpu")]
        store.add_measurements(space.name, rows)
        a = arch_id(full)
        store.add_measurements(space.name, [
            Measurement(a, "baseline-wanda-2:4", "ppl", 50.0, "perplexity"),
            Measurement(a, "baseline-wanda-2:4", "params", float(space.params(full)), "params"),
            Measurement(a, "baseline-wanda-2:4", "params_nonzero", 0.6 * space.params(full), "params"),
            Measurement(a, "baseline-wanda-2:4", "latency_ms", 101.0, "ms", device="cpu"),
            Measurement(a, "baseline-wanda-2:4", "acc", 0.4, "accuracy", task="piqa", device="cpu")])
        store.add_measurements(space.name, [
            Measurement(arch_id(arch), "baseline-sliced-50", metric, value, unit, device=device)
            for arch in archs[1:4] for metric, value, unit, device in (
                ("ppl", 1000.0, "perplexity", ""), ("params", float(space.params(arch)), "params", ""),
                ("latency_ms", 50.0, "ms", "cpu"))])
        store.add_measurements(space.name, [  # a row of several archs: their mean accuracy (0.37), not the median
            Measurement(arch_id(arch), "baseline-sliced-50", "acc", value, "accuracy", task="piqa", device="cpu")
            for arch, value in zip(archs[1:4], (0.30, 0.31, 0.50))])
        store.add_measurements(space.name, [  # one more arch without accuracy: the row says of how many it is
            Measurement(arch_id(archs[4]), "baseline-sliced-50", metric, value, unit)
            for metric, value, unit in (("ppl", 1000.0, "perplexity"), ("params", float(space.params(archs[4])),
                                                                         "params"))])
    text = baseline_section(db, space, tmp_path / "out")
    assert "| wanda-2:4 (n = 1) |" in text and "| 50.0 | 5.00x |" in text and " piqa acc |" in text
    assert "| 0.400 |" in text
    assert "sliced-50 (n = 4; accuracy of 3)" in text and "NAS `trained-x` <= 75% params, picked on the selection " \
        "split" in text
    sliced_row = next(line for line in text.splitlines() if "| sliced-50 (n = 4; accuracy of 3) |" in line)
    assert sliced_row.endswith("| 1000.0 | 100.00x | 0.370 |")
    findings = text.split("NAS `trained-x` (1,000 training tokens for all its sub-networks) against each "
                          "baseline:")[1].split("\n\n")[1].splitlines()[2:]  # the table's rows
    assert any(f.startswith("| `wanda-2:4` (1 arch, no training) | params |") for f in findings)
    wanda_latency = next(f for f in findings if "`wanda-2:4`" in f and "| latency |" in f)
    # the full model (ppl 10, latency 100 ms <= wanda's 101 ms) would win here: it is no compressed model
    assert arch_id(full) not in text.split("Findings")[1] and "<= 95% params" in wanda_latency
    # the pick is the selection split's best that fits, never the test-set minimum (the trap)
    assert arch_id(trap) not in wanda_latency
    assert wanda_latency.endswith("(n = 1 each, no interval) | - | - | NAS lower |")
    sliced = next(f for f in findings if "`sliced-50`" in f and "| params |" in f)
    # the ratio with its interval excludes 1, but 4 archs cannot reach p < 0.05 (Wilcoxon's smallest p at n = 4 is
    # 0.125; Holm over its two rows, matched params and latency, doubles it): no verdict
    assert sliced.count("x [") == 1 and sliced.endswith("| 0.12 | 0.25 | **no clear winner (Holm p >= 0.05)** |")
    assert "front-params.png" in text and (tmp_path / "out" / "front-params.png").is_file()
    assert baseline_section(db, space) == baseline_section(db, space)  # the same bytes on a rerun
    points = baseline_points(db, space.name, ["params", "ppl"])
    assert points["wanda-2:4"] == [(float(space.params(full)), 50.0)] and len(points["sliced-50"]) == 4
    assert "CPU wall-clock latency ms" in text  # the baselines have only the wall clock: both sides on it

    def rel(aid: str, sid: str, ratio: float) -> Measurement:  # timed alternately with the full model (80 ms)
        return Measurement(aid, sid, "latency_rel", ratio, "x full model", device="cpu",
                           extra={"reference_ms": 80.0})

    with Store(db) as store:  # the NAS side alone with a drift-cancelled latency changes nothing
        store.add_measurements(space.name, [rel(arch_id(arch), "trained-x", space.params(arch) / space.params(full))
                                            for arch in archs])
    assert "CPU wall-clock latency ms" in baseline_section(db, space)
    with Store(db) as store:  # every baseline timed the same way: both sides on the drift-cancelled latency
        store.add_measurements(space.name, [rel(a, "baseline-wanda-2:4", 1.0)] +
                               [rel(arch_id(arch), "baseline-sliced-50", 0.5) for arch in archs[1:5]])
    text = baseline_section(db, space)
    assert "CPU drift-cancelled latency ms" in text and "the drift-cancelled `latency_ms` on both sides" in text
    wanda_latency = next(f for f in text.splitlines() if f.startswith("| `wanda-2:4`") and "| latency |" in f)
    assert "<= 80.0 ms CPU drift-cancelled latency" in wanda_latency  # 1.0 x the full model's 80 ms
