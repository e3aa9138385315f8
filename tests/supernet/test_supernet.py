"""The elastic supernet: sliced logits equal the extracted dense HF model's, on tiny models of both families and on
the embedded SmolLM2-135M."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from nasbench.errors import IllegalSubNetworkError
from nasbench.models import load_base_model, tiny_space
from nasbench.space import load_space
from nasbench.supernet import PROVENANCE_FILE, ElasticLinear, Supernet, export, head_channels

from conftest import SPACES

FAMILIES = ["llama", "gpt_neox"]
EXACT = {"atol": 1e-5, "rtol": 1e-5}


def _ids(vocab: int, batch: int = 2, length: int = 13, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(seed))


def _logits(model, ids: torch.Tensor, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, **kwargs).logits


def _numel(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module", params=FAMILIES)
def space(request, tmp_path_factory):
    return tiny_space(tmp_path_factory.mktemp(request.param), request.param)


@pytest.fixture()
def supernet(space):
    return Supernet.from_space(space)


# ------------------------------------------------------------------------------------------------- parity
def test_largest_sub_network_equals_the_hf_model(space, supernet):
    original = load_base_model(space.model)
    ids = _ids(space.reference.vocab_size)
    expected = _logits(original, ids)
    torch.testing.assert_close(_logits(supernet, ids), expected, **EXACT)  # nothing set: the whole supernet
    supernet.set_sub_network(space.largest())
    torch.testing.assert_close(_logits(supernet, ids), expected, **EXACT)


def test_random_sub_networks_equal_their_extracted_models(space, supernet):
    ids = _ids(space.reference.vocab_size)
    full = _logits(supernet, ids)
    differs = 0
    for arch in space.sample(20, seed=1):
        canon = supernet.set_sub_network(arch)
        sliced = _logits(supernet, ids)
        dense = supernet.extract(arch)
        assert sliced.shape == full.shape  # logits over the full vocabulary, whatever embed_dim
        torch.testing.assert_close(sliced, _logits(dense, ids), **EXACT, msg=lambda m: f"{canon}: {m}")
        assert _numel(dense) == space.params(canon), canon
        differs += not torch.allclose(sliced, full)
    assert differs >= 18  # the archs really are sub-networks


def test_extracted_config_has_the_reduced_dimensions(space, supernet):
    arch = space.smallest()
    config = supernet.extract(arch).config
    assert config.hidden_size == arch["embed_dim"]
    assert config.num_hidden_layers == arch["n_layers"]
    assert config.num_attention_heads == arch["n_heads"]
    assert config.intermediate_size == arch["intermediate_size"]
    if space.family == "llama":
        assert (config.num_key_value_heads, config.head_dim) == (arch["n_kv_groups"], arch["head_size"])
    assert type(supernet.extract(arch)) is type(supernet.hf_model)


def test_reset_restores_the_whole_model_and_extract_keeps_the_active_arch(space, supernet):
    ids = _ids(space.reference.vocab_size)
    full = _logits(supernet, ids)
    small, other = space.sample(2, seed=5)
    supernet.set_sub_network(small)
    sliced = _logits(supernet, ids)
    supernet.extract(other)
    assert supernet.arch == space.canonical(small)
    torch.testing.assert_close(_logits(supernet, ids), sliced, atol=0, rtol=0)
    supernet.reset()
    assert supernet.arch is None
    torch.testing.assert_close(_logits(supernet, ids), full, atol=0, rtol=0)
    supernet.set_sub_network(small)
    again = Supernet(supernet.model, space)  # wrapping an elastic model again starts from the whole model
    torch.testing.assert_close(_logits(again, ids), full, atol=0, rtol=0)


def test_params_of_every_extreme_equal_numel(space, supernet):
    for arch in (space.smallest(), space.largest()):
        assert _numel(supernet.extract(arch)) == space.params(arch)


# ------------------------------------------------------------------------------------------------ selection
def test_head_channels_keep_the_rotary_pairs():
    assert head_channels(10, 10) == list(range(10))
    assert head_channels(4, 10) == [0, 1, 5, 6]  # pairs (0,5) and (1,6) of the size-10 head
    # GPT-NeoX, rotary on half the head: size 16 rotates 8 channels (pairs i, i+4); size 8 rotates 4
    assert head_channels(8, 16, 0.5) == [0, 1, 4, 5, 8, 9, 10, 11]
    with pytest.raises(IllegalSubNetworkError, match="arch.head_size: must be even"):
        head_channels(5, 10)


def test_sliced_rotary_uses_the_frequencies_of_the_sub_head_size(space, supernet):
    arch = space.smallest()
    supernet.set_sub_network(arch)
    dense = supernet.extract(arch)
    rotary = supernet.wiring.rotary
    position_ids = torch.arange(7)[None]
    x = torch.zeros(1, 7, 4)
    for got, want in zip(rotary(x, position_ids), dense.base_model.rotary_emb(x, position_ids)):
        torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_gqa_default_takes_the_first_query_heads_of_each_kept_group(tmp_path):
    space = tiny_space(tmp_path, "llama")  # 6 query heads in 2 kv groups of 3, head size 10
    supernet = Supernet.from_space(space)
    arch = dict(space.largest(), n_heads=4, n_kv_groups=2, head_size=10)
    dense = supernet.extract(arch)
    q = supernet.hf_model.model.layers[0].self_attn.q_proj.weight
    expected_heads = [0, 1, 3, 4]  # two of group 0 (heads 0-2), two of group 1 (heads 3-5)
    rows = [h * 10 + c for h in expected_heads for c in range(10)]
    torch.testing.assert_close(dense.model.layers[0].self_attn.q_proj.weight, q[rows], atol=0, rtol=0)
    ids = _ids(space.reference.vocab_size)
    supernet.set_sub_network(arch)
    torch.testing.assert_close(_logits(supernet, ids), _logits(dense, ids), **EXACT)


def test_explicit_index_lists_override_prefix_slicing(tmp_path):
    space = tiny_space(tmp_path, "llama")
    supernet = Supernet.from_space(space)
    ids = _ids(space.reference.vocab_size)
    arch = dict(space.largest(), embed_dim=36, n_layers=1, n_heads=2, n_kv_groups=1, head_size=6,
                intermediate_size=20)
    indices = {"layers": [1], "heads": [5, 3], "kv_groups": [1], "neurons": list(range(63, 43, -1)),
               "channels": list(range(47, 11, -1))}
    supernet.set_sub_network(arch, **indices)
    sliced = _logits(supernet, ids)
    dense = supernet.extract(arch, **indices)
    torch.testing.assert_close(sliced, _logits(dense, ids), **EXACT)
    layer = supernet.hf_model.model.layers[1]
    torch.testing.assert_close(dense.model.layers[0].mlp.down_proj.weight,
                               layer.mlp.down_proj.weight[indices["channels"]][:, indices["neurons"]], atol=0, rtol=0)
    supernet.set_sub_network(arch)
    assert not torch.allclose(_logits(supernet, ids), sliced)


def test_per_layer_index_lists_and_layer_order(tmp_path):
    space = tiny_space(tmp_path, "llama")
    supernet = Supernet.from_space(space)
    ids = _ids(space.reference.vocab_size)
    arch = dict(space.largest(), n_heads=3, n_kv_groups=1)
    heads = [[3, 4, 5], [0, 1, 2]]
    supernet.set_sub_network(arch, layers=[1, 0], heads=heads, kv_groups=[[1], [0]])
    torch.testing.assert_close(_logits(supernet, ids),
                               _logits(supernet.extract(arch, layers=[1, 0], heads=heads), ids), **EXACT)


@pytest.mark.parametrize("kwargs, where", [
    ({"layers": [0, 0]}, "layers"),
    ({"layers": [0]}, "layers"),
    ({"layers": [0, 2]}, r"layers\[1\]"),
    ({"heads": [0, 3]}, r"heads\[0\]"),  # kv group 0 then group 1: not 2 heads of one group
    ({"heads": [0, 1], "kv_groups": [1]}, r"heads\[0\]"),
    ({"neurons": [0, 1]}, r"neurons\[0\]"),
    ({"channels": [0] * 48}, "channels"),
])
def test_bad_index_lists_raise(tmp_path_factory, kwargs, where):
    space = tiny_space(tmp_path_factory.mktemp("bad"), "llama")
    supernet = Supernet.from_space(space)
    arch = dict(space.largest(), n_heads=2, n_kv_groups=1)
    with pytest.raises(IllegalSubNetworkError, match=where):
        supernet.set_sub_network(arch, **kwargs)


@pytest.mark.parametrize("change, where", [
    ({"n_heads": 7}, "arch.n_heads"),           # above the reference
    ({"n_heads": 5, "n_kv_groups": 2}, "arch.n_heads"),  # not divisible by the groups
    ({"n_kv_groups": 3}, "arch.n_kv_groups"),   # above the reference's kv heads
    ({"head_size": 3}, "arch.head_size"),
    ({"n_layers": 3}, "arch.n_layers"),
    ({"embed_dim": 47}, "arch.embed_dim"),
    ({"heads": 2}, "arch.heads"),               # unknown dimension
])
def test_illegal_archs_raise(tmp_path_factory, change, where):
    space = tiny_space(tmp_path_factory.mktemp("illegal"), "llama")
    supernet = Supernet.from_space(space)
    arch = dict(space.largest(), **change)
    with pytest.raises(IllegalSubNetworkError, match=where) as info:
        supernet.set_sub_network(arch)
    assert info.value.got is not None
    with pytest.raises(IllegalSubNetworkError, match=where):
        supernet.extract(arch)


def test_gpt_neox_has_no_kv_groups_argument(tmp_path):
    space = tiny_space(tmp_path, "gpt_neox")
    supernet = Supernet.from_space(space)
    with pytest.raises(IllegalSubNetworkError, match="kv_groups"):
        supernet.set_sub_network(space.largest(), kv_groups=[0, 1, 2, 3])


# ------------------------------------------------------------------------------------------------ per layer
def test_per_layer_widths_slice_but_do_not_extract(tmp_path):
    dims = {"embed_dim": 48, "n_layers": 2, "head_size": 10, "n_kv_groups": {"choice": [1, 2]},
            "n_heads": {"choice": [2, 4, 6], "per_layer": True},
            "intermediate_size": {"choice": [16, 32, 64], "per_layer": True}}
    space = tiny_space(tmp_path, "llama", dimensions=dims)
    supernet = Supernet.from_space(space)
    ids = _ids(space.reference.vocab_size)
    arch = {"embed_dim": 48, "n_layers": 2, "head_size": 10, "n_kv_groups": 2, "n_heads": [2, 6],
            "intermediate_size": [64, 16]}
    supernet.set_sub_network(arch)
    with torch.no_grad():
        sliced = supernet(input_ids=ids, output_hidden_states=True)
    assert sliced.logits.shape == (*ids.shape, space.reference.vocab_size)
    # layer 0 of the per-layer arch is layer 0 of the uniform (2 heads, 64 neurons) one
    uniform = supernet.extract(dict(arch, n_heads=2, intermediate_size=64))
    with torch.no_grad():
        dense = uniform(input_ids=ids, output_hidden_states=True)
    torch.testing.assert_close(sliced.hidden_states[1], dense.hidden_states[1], **EXACT)
    assert not torch.allclose(sliced.logits, dense.logits)
    with pytest.raises(IllegalSubNetworkError, match="one num_attention_heads for all layers"):
        supernet.extract(arch)
    with pytest.raises(IllegalSubNetworkError, match="arch.n_heads"):
        export(space, arch, tmp_path / "out", supernet=supernet)
    # equal per-layer values are a uniform arch and extract
    same = dict(arch, n_heads=[4, 4], intermediate_size=[32, 32])
    supernet.set_sub_network(same)
    torch.testing.assert_close(_logits(supernet, ids), _logits(supernet.extract(same), ids), **EXACT)


# --------------------------------------------------------------------------------------------------- export
def test_export_reloads_with_from_pretrained(space, supernet, tmp_path):
    ids = _ids(space.reference.vocab_size)
    arch = next(a for a in space.sample(20, seed=2)
                if a["n_layers"] == 2 and a["embed_dim"] % a["n_heads"] == 0 and a != space.largest())
    out = export(space, arch, tmp_path / "out", supernet=supernet)
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    supernet.set_sub_network(arch)
    torch.testing.assert_close(_logits(reloaded, ids), _logits(supernet, ids), **EXACT)
    assert _numel(reloaded) == space.params(arch)
    assert list((out).glob("*.safetensors"))
    assert AutoTokenizer.from_pretrained(out)("w7 w8")["input_ids"] == [7, 8]
    provenance = json.loads((out / PROVENANCE_FILE).read_text())
    assert provenance["arch"] == space.canonical(arch) and provenance["params"] == space.params(arch)


def test_export_from_a_trained_directory(space, supernet, tmp_path):
    arch = space.smallest()
    with torch.no_grad():
        for p in supernet.parameters():
            p.mul_(0.9)  # "trained" weights, unlike the base model
    supernet.model.save_pretrained(tmp_path / "trained")
    out = export(space, arch, tmp_path / "out", tmp_path / "trained")
    ids = _ids(space.reference.vocab_size)
    supernet.set_sub_network(arch)
    torch.testing.assert_close(_logits(AutoModelForCausalLM.from_pretrained(out), ids), _logits(supernet, ids),
                               **EXACT)


def test_export_refuses_illegal_archs_before_loading_anything(tmp_path):
    dims = {"embed_dim": {"choice": [40, 48]}, "n_heads": {"choice": [2, 6]}, "n_kv_groups": 2}
    space = tiny_space(tmp_path, "llama", dimensions=dims)
    arch = dict(space.largest(), embed_dim=40, n_heads=6)  # transformers' LlamaConfig needs 40 % 6 == 0
    with pytest.raises(IllegalSubNetworkError, match="arch.n_heads"):
        export(space, arch, tmp_path / "out", tmp_path / "does-not-exist")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------- HF integrations
def test_generate_matches_the_extracted_model_with_dropped_layers(space, supernet):
    arch = dict(space.largest(), n_layers=1)
    supernet.set_sub_network(arch, layers=[1])  # layer 0 dropped: the KV cache must follow the active layers
    dense = supernet.extract(arch, layers=[1])
    prompt = _ids(space.reference.vocab_size, batch=1, length=5, seed=3)
    settings = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0}
    with torch.no_grad():
        torch.testing.assert_close(supernet.generate(prompt, **settings), dense.generate(prompt, **settings),
                                   atol=0, rtol=0)


def test_gradients_reach_only_the_active_slices(space, supernet):
    arch = space.smallest()
    supernet.set_sub_network(arch)
    supernet.train()
    ids = _ids(space.reference.vocab_size)
    loss = supernet(input_ids=ids, labels=ids).loss
    loss.backward()
    layer = supernet.wiring.blocks[0]
    linear = layer.mlp.down_proj if space.family == "llama" else layer.mlp.dense_4h_to_h
    grad = linear.weight.grad
    assert isinstance(linear, ElasticLinear)
    assert grad[: arch["embed_dim"], : arch["intermediate_size"]].abs().sum() > 0
    assert grad[:, arch["intermediate_size"]:].abs().sum() == 0
    assert grad[arch["embed_dim"]:].abs().sum() == 0


def test_cached_slices_follow_in_place_weight_updates(space, supernet):
    arch = space.smallest()
    supernet.set_sub_network(arch)
    ids = _ids(space.reference.vocab_size)
    before = _logits(supernet, ids)  # fills the gather cache
    with torch.no_grad():
        for p in supernet.parameters():
            p.mul_(1.1)  # an optimizer step: in place, bumps the version counter
    after = _logits(supernet, ids)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, _logits(supernet.extract(arch), ids), **EXACT)


def test_peft_lora_is_merged_into_the_extracted_model(space, supernet):
    peft = pytest.importorskip("peft")
    targets = ["q_proj", "v_proj", "down_proj"] if space.family == "llama" else ["query_key_value",
                                                                                 "dense_4h_to_h"]
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False)
    lora_model = peft.get_peft_model(supernet.model, config)
    lora_supernet = Supernet(lora_model, space)
    ids = _ids(space.reference.vocab_size)
    with_lora = _logits(lora_model, ids)
    # the largest arch: the merged extraction equals the LoRA model's forward
    torch.testing.assert_close(_logits(lora_supernet.extract(space.largest()), ids), with_lora, **EXACT)
    # any arch: merging first and then extracting gives the same weights
    arch = space.sample(1, seed=4)[0]
    merged = Supernet(copy.deepcopy(lora_model).merge_and_unload(), space)
    torch.testing.assert_close(_logits(lora_supernet.extract(arch), ids), _logits(merged.extract(arch), ids),
                               **EXACT)
    with lora_model.disable_adapter():
        assert not torch.allclose(_logits(lora_model, ids), with_lora)


# ------------------------------------------------------------------------------------------- real SmolLM2
@pytest.mark.slow  # the real SmolLM2 (GGUF dequantized to fp32)
def test_smollm2_largest_equals_hf_and_sub_networks_equal_extracted():
    space = load_space(SPACES / "smollm2-135m.yaml")
    model = load_base_model(space.model)  # the embedded Q4_1 GGUF, dequantized to fp32 (~15 s)
    ids = _ids(space.reference.vocab_size, batch=1, length=32)
    expected = _logits(model, ids)
    supernet = Supernet(model, space)
    supernet.set_sub_network(space.largest())
    torch.testing.assert_close(_logits(supernet, ids), expected, **EXACT)
    for arch in space.sample(3, seed=0):
        supernet.set_sub_network(arch)
        dense = supernet.extract(arch)
        torch.testing.assert_close(_logits(supernet, ids), _logits(dense, ids), **EXACT)
        assert _numel(dense) == space.params(arch)


def test_lm_eval_scores_the_sliced_supernet_like_the_extracted_model(tmp_path):
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from nasbench.models import load_tokenizer

    space = tiny_space(tmp_path, "llama")
    supernet = Supernet.from_space(space)
    tokenizer = load_tokenizer(space.model)
    arch = space.sample(1, seed=3)[0]
    supernet.set_sub_network(arch)
    requests = [Instance("loglikelihood", {}, ("w3 w4 w5", " w6 w7"), 0),
                Instance("loglikelihood", {}, ("w9", " w10"), 1)]
    sliced = HFLM(pretrained=supernet.model, tokenizer=tokenizer, batch_size=2, device="cpu").loglikelihood(requests)
    dense = HFLM(pretrained=supernet.extract(arch), tokenizer=tokenizer, batch_size=2,
                 device="cpu").loglikelihood(requests)
    assert [s[1] for s in sliced] == [d[1] for d in dense]
    assert [s[0] for s in sliced] == pytest.approx([d[0] for d in dense], abs=1e-5)
