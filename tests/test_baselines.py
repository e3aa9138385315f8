"""The pruning baselines on tiny random models: each method's defining property against a direct computation, and
the rows `run_baseline` stores (resumable)."""

from __future__ import annotations

import copy

import pytest
import torch

from nasbench.baselines import (BaselineConfig, magnitude_prune, run_baseline, slice_model, sliced_arch, sliced_dim,
                                sparsegpt_prune, sparsegpt_weight, wanda_prune, wanda_scores)
from nasbench.baselines._layerwise import decoder_layers, decoder_linears, dense_params, n_m_mask, nonzero_params
from nasbench.errors import NasBenchError
from nasbench.models import tiny_model
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


def test_run_baseline_stores_rows_and_resumes(tiny_with_data, tmp_path) -> None:
    space, data = tiny_with_data
    db = tmp_path / "b.duckdb"
    common = dict(calibration_tokens=256, calibration_seq_len=32, metrics=("ppl", "latency", "memory"),
                  ppl_tokens=512, seq_len=32, latency_seq_len=16, latency_repeats=2)
    wanda = run_baseline(space, db, BaselineConfig("wanda-2:4", **common), data_dir=data, progress=False)
    assert wanda.supernet_id == "baseline-wanda-2:4" and wanda.rows == 4
    sliced = run_baseline(space, db, BaselineConfig("slicegpt", slicing=0.25, **common), data_dir=data,
                          progress=False)
    assert sliced.supernet_id == "baseline-slicegpt-25" and sliced.rows == 4
    again = run_baseline(space, db, BaselineConfig("slicegpt", slicing=0.25, **common), data_dir=data,
                         progress=False)
    assert again.rows == 0 and again.params == sliced.params
    with pytest.raises(NasBenchError, match="--calibration-tokens"):  # the stored rows were pruned on 256 tokens
        run_baseline(space, db, BaselineConfig("slicegpt", slicing=0.25, **(common | {"calibration_tokens": 512})),
                     data_dir=data, progress=False)
    with Store(db) as store:
        rows = store.query("SELECT supernet_id, metric, value, extra FROM measurements ORDER BY supernet_id, metric")
        supernets = store.query("SELECT id, strategy, tokens, config FROM supernets ORDER BY id")
        full = store.query("SELECT params FROM architectures")
    assert sorted(supernets["id"]) == ["baseline-slicegpt-25", "baseline-wanda-2:4"]
    assert set(supernets["strategy"]) == {"slicegpt", "wanda-2:4"} and set(supernets["tokens"]) == {256}
    by = {(r.supernet_id, r.metric): r.value for r in rows.itertuples()}
    assert by[("baseline-wanda-2:4", "params_nonzero")] < full["params"].iloc[0] == space.params(space.largest())
    assert by[("baseline-slicegpt-25", "params")] == sliced.params
    assert all(by[(s, "ppl")] > 1 for s in ("baseline-wanda-2:4", "baseline-slicegpt-25"))
    assert len(full) == 1  # the sliced model is not an arch of the space
    assert sliced.arch_id != wanda.arch_id and sliced_arch(space.reference, 0.25)["embed_dim"] == 32


def test_baseline_config_checks_its_flags() -> None:
    with pytest.raises(NasBenchError, match="--method"):
        BaselineConfig("obs-2:4")
    with pytest.raises(NasBenchError, match="--slicing"):
        BaselineConfig("slicegpt", slicing=1.5)
    with pytest.raises(NasBenchError, match="--metrics"):
        BaselineConfig("wanda-2:4", metrics=("flops",))


def test_cli_baseline_writes_rows_and_rejects_bad_flags(tiny_with_data, tmp_path, capsys) -> None:
    import json

    from nasbench.cli import main

    space, data = tiny_with_data
    db = tmp_path / "cli.duckdb"
    argv = ["baseline", str(space.path), "--method", "magnitude-2:4", "--metrics", "ppl", "--ppl-tokens", "512",
            "--seq-len", "32", "--data-dir", str(data), "--db", str(db)]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["supernet_id"] == "baseline-magnitude-2:4" and out["new_rows"] == 2 and out["values"]["ppl"] > 1
    assert main(argv) == 0 and json.loads(capsys.readouterr().out.strip().splitlines()[-1])["new_rows"] == 0
    assert main([*argv[:3], "slicegpt", "--slicing", "0", *argv[4:]]) == 2
    assert "--slicing" in capsys.readouterr().err


def test_run_baseline_on_other_weights_gets_its_own_supernet_id(tiny_with_data, tmp_path) -> None:
    space, data = tiny_with_data
    weights = tmp_path / "my-weights"
    tiny_model("llama", seed=5).save_pretrained(weights)  # the shape of the space's model, other weights
    config = BaselineConfig("magnitude-2:4", metrics=("ppl",), ppl_tokens=512, seq_len=32)
    ours = run_baseline(space, tmp_path / "w.duckdb", config, supernet_dir=weights, data_dir=data, progress=False)
    base = run_baseline(space, tmp_path / "w.duckdb", config, data_dir=data, progress=False)
    assert ours.supernet_id == "baseline-magnitude-2:4+my-weights" and base.supernet_id == "baseline-magnitude-2:4"
    assert ours.values["ppl"] != base.values["ppl"]
    with Store(tmp_path / "w.duckdb") as store:
        checkpoint = store.query("SELECT checkpoint FROM supernets WHERE id = ?", [ours.supernet_id])["checkpoint"][0]
    assert checkpoint == str(weights)
