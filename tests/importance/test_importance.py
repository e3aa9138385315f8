"""Importance scores and the weight permutation: exact function preservation, planted dead units rank last."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM

from nasbench.errors import NasBenchError
from nasbench.importance import SCHEMES, Importance, apply_order, layer_importance, score


def tiny(family: str, seed: int = 0):
    torch.manual_seed(seed)
    if family == "llama":
        config = LlamaConfig(vocab_size=100, hidden_size=48, num_hidden_layers=3, num_attention_heads=6,
                             num_key_value_heads=2, head_dim=8, intermediate_size=96, tie_word_embeddings=True)
        return LlamaForCausalLM(config).eval()
    config = GPTNeoXConfig(vocab_size=100, hidden_size=48, num_hidden_layers=3, num_attention_heads=6,
                           intermediate_size=96, tie_word_embeddings=False)
    return GPTNeoXForCausalLM(config).eval()


def tokens(seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 100, (8, 24), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("family", ["llama", "gpt_neox"])
def test_permutation_preserves_the_full_model(family) -> None:
    model, x = tiny(family), tokens()
    reference = model(input_ids=x).logits
    importance = score(model, x, ["mean-mean"])["mean-mean"]
    sorted_model = copy.deepcopy(model)
    record = apply_order(sorted_model, importance)
    assert record["channels"] != sorted(record["channels"])  # something really moved
    torch.testing.assert_close(sorted_model(input_ids=x).logits, reference, atol=1e-5, rtol=1e-5)
    # prefixes now hold the highest scores
    again = score(sorted_model, x, ["mean-mean"])["mean-mean"]
    assert again.neurons[0] == sorted(again.neurons[0], reverse=True)
    assert again.channels == pytest.approx(sorted(again.channels, reverse=True), rel=1e-4)


def test_gqa_heads_stay_in_their_kv_group() -> None:
    model, x = tiny("llama"), tokens()
    importance = score(model, x, ["norm-mean"])["norm-mean"]
    record = apply_order(copy.deepcopy(model), importance)
    for perm in record["heads"]:
        groups = [perm[:3], perm[3:]]  # 6 heads in 2 groups of 3
        for group in groups:
            assert len({h // 3 for h in group}) == 1


@pytest.mark.parametrize("family", ["llama", "gpt_neox"])
def test_planted_dead_head_and_neuron_rank_last(family) -> None:
    model, x = tiny(family), tokens()
    with torch.no_grad():
        if family == "llama":
            attn, mlp = model.model.layers[1].self_attn, model.model.layers[1].mlp
            attn.v_proj.weight[8:16] = 0  # kv head 1 feeds query heads 3, 4, 5: all their outputs vanish
            mlp.up_proj.weight[17] = 0
        else:
            attn, mlp = model.gpt_neox.layers[1].attention, model.gpt_neox.layers[1].mlp
            attn.query_key_value.weight[2 * 24 + 16: 2 * 24 + 24] = 0  # v rows of head 2
            attn.query_key_value.bias[2 * 24 + 16: 2 * 24 + 24] = 0
            mlp.dense_h_to_4h.weight[17] = 0
            mlp.dense_h_to_4h.bias[17] = -1e4  # GELU(-1e4) = 0: the neuron is dead
    for scheme, importance in score(model, x, SCHEMES).items():
        heads, neurons = importance.heads[1], importance.neurons[1]
        dead_heads = [3, 4, 5] if family == "llama" else [2]
        assert max(heads[h] for h in dead_heads) < min(v for h, v in enumerate(heads) if h not in dead_heads), scheme
        assert neurons[17] == min(neurons), scheme
        order = apply_order(copy.deepcopy(model), importance)
        assert order["neurons"][1][-1] == 17, scheme


def test_schemes_differ_where_they_should() -> None:
    model, x = tiny("llama"), tokens()
    scores = score(model, x, SCHEMES)
    assert set(scores) == set(SCHEMES)
    # mean and norm over a batch of 8 windows differ by a factor sqrt(8) for equal values, so orders are similar
    # but values are not; variance ranks by spread, not size, and gives another order
    mean, var = scores["mean-mean"].neurons[0], scores["mean-var"].neurons[0]
    assert mean != var
    rank = lambda v: sorted(range(len(v)), key=lambda i: -v[i])
    assert rank(mean) != rank(var)
    norm = scores["norm-mean"].neurons[0]
    assert all(n >= m - 1e-6 for n, m in zip(norm, mean))  # L2 over 8 windows >= their mean (Cauchy-Schwarz)


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(NasBenchError, match="^scheme: "):
        score(tiny("llama"), tokens(), ["max-mean"])


def test_block_importance_and_block_drop() -> None:
    model, x = tiny("llama"), tokens()
    with torch.no_grad():  # layer 2 writes nothing to the residual stream: it is an identity block
        model.model.layers[2].self_attn.o_proj.weight.zero_()
        model.model.layers[2].mlp.down_proj.weight.zero_()
    bi = layer_importance(model, x, "block-importance")
    assert bi[2] == pytest.approx(0.0, abs=1e-6) and min(bi[:2]) > 1e-4

    def nll(m, windows):
        logits = m(input_ids=windows).logits[:, :-1]
        return torch.nn.functional.cross_entropy(logits.reshape(-1, 100), windows[:, 1:].reshape(-1)).item()

    drop = layer_importance(model, x, "block-drop", nll=nll)
    assert drop[2] == pytest.approx(0.0, abs=1e-6) and max(abs(d) for d in drop[:2]) > 1e-4
    importance = Importance("mean-mean", [], [], [], layers=bi, layer_scheme="block-importance")
    assert importance.layers_for(2) == [0, 1]
    assert importance.layer_order()[-1] == 2


def test_importance_round_trips_through_json(tmp_path) -> None:
    model, x = tiny("gpt_neox"), tokens()
    importance = score(model, x)["mean-mean"]
    importance.save(tmp_path / "importance.json")
    assert Importance.load(tmp_path / "importance.json") == importance


@pytest.mark.parametrize("family", ["llama", "gpt_neox"])
def test_index_lists_on_the_unsorted_supernet_equal_prefixes_of_the_sorted_one(tmp_path, family) -> None:
    from nasbench.importance import sub_network_indices
    from nasbench.models import tiny_space
    from nasbench.supernet import Supernet

    space = tiny_space(tmp_path, family, seed=3)
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(space.model.hf).eval()
    x = torch.randint(0, base.config.vocab_size, (4, 16), generator=torch.Generator().manual_seed(0))
    importance = score(base, x, ["norm-mean"])["norm-mean"]
    importance.layers = layer_importance(base, x)
    permuted = copy.deepcopy(base)
    apply_order(permuted, importance)
    unsorted, sorted_ = Supernet(base, space), Supernet(permuted, space)
    ref = space.reference
    q_per_kv = ref.n_heads // ref.n_kv_groups
    for arch in space.sample(10, seed=1):
        indices = sub_network_indices(importance, arch, family, q_per_kv)
        sorted_.set_sub_network(arch, layers=indices["layers"])
        unsorted.set_sub_network(arch, **indices)
        torch.testing.assert_close(unsorted(input_ids=x).logits, sorted_(input_ids=x).logits, atol=1e-5, rtol=1e-5)
