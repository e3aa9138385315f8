"""Search spaces: shipped files validate, sampling is seeded, arch ids are stable, params are exact."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM

from nasbench.errors import IllegalSubNetworkError, InvalidSpaceError
from nasbench.space import DIMENSIONS, arch_id, load_space

from conftest import SPACES, tiny_space_doc

SHIPPED = sorted(SPACES.glob("*.yaml"))


def test_every_shipped_space_validates() -> None:
    names = set()
    for path in SHIPPED:
        space = load_space(path)
        names.add(space.name)
        assert space.params(space.smallest()) < space.params(space.largest())
        assert space.is_valid(space.largest())
    assert {"smollm2-135m", "smollm2-135m-fixed-head", "smollm2-135m-fixed-head-size", "llama-3.1-8b",
            "llama-3.1-8b-fixed-head", "llama-3.1-8b-fixed-head-size", "llama-2-7b", "pythia-410m", "pythia-1b",
            "pythia-2.8b"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_largest_arch_is_the_reference_model(path) -> None:
    space = load_space(path)
    ref, large = space.reference, space.largest()
    assert large["n_layers"] == ref.n_layers and large["embed_dim"] == ref.embed_dim
    assert max(np.atleast_1d(large["n_heads"])) == ref.n_heads


def test_reference_param_counts_match_the_published_models() -> None:
    # published sizes: SmolLM2-135M 134,515,008; Llama-3.1-8B 8,030,261,248; Llama-2-7B 6,738,415,616;
    # Pythia-410m 405,334,016 (counted from the HF checkpoints)
    expected = {"smollm2-135m": 134_515_008, "llama-3.1-8b": 8_030_261_248, "llama-2-7b": 6_738_415_616,
                "pythia-410m": 405_334_016}
    for name, count in expected.items():
        space = load_space(SPACES / f"{name}.yaml")
        assert space.params(space.largest()) == count, name


def test_include_merges_and_the_including_file_wins() -> None:
    joint = load_space(SPACES / "smollm2-135m.yaml")
    fixed_head = load_space(SPACES / "smollm2-135m-fixed-head.yaml")
    assert fixed_head.dimensions["n_heads"].kind == "fixed" and fixed_head.dimensions["n_heads"].values == (9,)
    assert fixed_head.dimensions["head_size"] == joint.dimensions["head_size"]
    assert fixed_head.model == joint.model and fixed_head.data == joint.data
    assert fixed_head.hash != joint.hash


def test_sampling_is_deterministic_by_seed() -> None:
    space = load_space(SPACES / "smollm2-135m.yaml")
    a, b, c = space.sample(50, seed=3), space.sample(50, seed=3), space.sample(50, seed=4)
    assert a == b
    assert a != c
    assert all(space.is_valid(x) for x in a)
    assert len({arch_id(x) for x in a}) > 40


def test_samples_cover_every_choice_and_respect_gqa() -> None:
    space = load_space(SPACES / "smollm2-135m.yaml")
    archs = space.sample(2000, seed=0)
    for name in DIMENSIONS:
        assert {x[name] for x in archs} == set(space.dimensions[name].candidates()), name
    for x in archs:
        assert x["n_heads"] % x["n_kv_groups"] == 0 and x["n_heads"] // x["n_kv_groups"] <= 3


def test_log_int_prefers_small_values(write_space) -> None:
    space = load_space(write_space(tiny_space_doc()))
    values = np.array([x["intermediate_size"] for x in space.sample(3000, seed=1)])
    assert values.min() >= 8 and values.max() <= 96
    # log-uniform on [8, 97): the median is near sqrt(8 * 97) ~ 28, far below the uniform median 52
    assert 20 <= np.median(values) <= 36


def test_arch_id_is_independent_of_key_order() -> None:
    space = load_space(SPACES / "smollm2-135m.yaml")
    arch = space.sample(1, seed=0)[0]
    shuffled = dict(reversed(list(arch.items())))
    assert list(shuffled) != list(arch)
    assert arch_id(shuffled) == arch_id(arch)
    assert arch_id(space.canonical(shuffled)) == arch_id(arch)
    other = dict(arch, n_layers=arch["n_layers"] - 1 if arch["n_layers"] > 10 else arch["n_layers"] + 1)
    assert arch_id(other) != arch_id(arch)


def test_canonical_fills_fixed_dimensions_and_expands_per_layer() -> None:
    fixed_head = load_space(SPACES / "smollm2-135m-fixed-head.yaml")
    arch = {"embed_dim": 576, "n_layers": 12, "head_size": 32, "intermediate_size": 512}
    assert fixed_head.canonical(arch)["n_heads"] == 9
    layerwise = load_space(SPACES / "smollm2-135m-layerwise.yaml")
    full = layerwise.canonical({"embed_dim": 576, "n_layers": 12, "n_heads": 6, "head_size": 64,
                                "intermediate_size": 1536})
    assert full["n_heads"] == [6] * 12 and full["intermediate_size"] == [1536] * 12


@pytest.mark.parametrize("change, where", [
    ({"n_heads": 4, "n_kv_groups": 3}, "n_heads"),          # not divisible
    ({"n_heads": 8, "n_kv_groups": 2}, "n_heads"),          # 4 query heads per group > 3
    ({"embed_dim": 600}, "embed_dim"),                       # not a choice
    ({"n_layers": 31}, "n_layers"),                          # beyond the range
    ({"head_size": 64.0}, "head_size"),                      # not an integer
    ({"colour": 1}, "colour"),                               # unknown dimension
])
def test_illegal_archs_name_the_dimension(change, where) -> None:
    space = load_space(SPACES / "smollm2-135m.yaml")
    arch = dict(space.largest(), **change)
    with pytest.raises(IllegalSubNetworkError) as info:
        space.canonical(arch)
    assert where in info.value.where


def _llama_numel(arch, ref, attention_bias=False, mlp_bias=False) -> int:
    config = LlamaConfig(vocab_size=ref.vocab_size, hidden_size=arch["embed_dim"], num_hidden_layers=arch["n_layers"],
                         num_attention_heads=arch["n_heads"], num_key_value_heads=arch["n_kv_groups"],
                         head_dim=arch["head_size"], intermediate_size=arch["intermediate_size"],
                         tie_word_embeddings=ref.tied_head, attention_bias=attention_bias, mlp_bias=mlp_bias)
    return sum(p.numel() for p in LlamaForCausalLM(config).parameters())


@pytest.mark.parametrize("tied, bias", [(True, False), (False, True)])
def test_llama_param_count_equals_hf_numel(write_space, tied, bias) -> None:
    doc = tiny_space_doc("llama")
    doc["model"]["reference"].update(tied_head=tied, attention_bias=bias, mlp_bias=bias)
    space = load_space(write_space(doc))
    torch.manual_seed(0)
    for arch in space.sample(8, seed=5) + [space.smallest(), space.largest()]:
        assert space.params(arch) == _llama_numel(arch, space.reference, bias, bias), arch


def test_gpt_neox_param_count_equals_hf_numel(write_space) -> None:
    space = load_space(write_space(tiny_space_doc("gpt_neox")))
    for arch in space.sample(8, seed=5) + [space.smallest(), space.largest()]:
        assert arch["n_kv_groups"] == arch["n_heads"]
        assert arch["n_heads"] * arch["head_size"] == arch["embed_dim"]
        config = GPTNeoXConfig(vocab_size=space.reference.vocab_size, hidden_size=arch["embed_dim"],
                               num_hidden_layers=arch["n_layers"], num_attention_heads=arch["n_heads"],
                               intermediate_size=arch["intermediate_size"], tie_word_embeddings=False)
        numel = sum(p.numel() for p in GPTNeoXForCausalLM(config).parameters())
        assert space.params(arch) == numel, arch


def test_per_layer_param_count_sums_the_layers(write_space) -> None:
    doc = tiny_space_doc("llama")
    doc["dimensions"]["n_heads"] = {"choice": [2, 4], "per_layer": True}
    doc["dimensions"]["n_kv_groups"] = 2
    doc["dimensions"]["intermediate_size"] = {"choice": [24, 96], "per_layer": True}
    space = load_space(write_space(doc))
    arch = space.canonical({"embed_dim": 32, "n_layers": 2, "n_heads": [2, 4], "head_size": 8,
                            "intermediate_size": [24, 96]})
    one = [dict(arch, n_layers=1, n_heads=h, intermediate_size=i) for h, i in ((2, 24), (4, 96))]
    embed = space.reference.vocab_size * 32 + 32  # embedding (tied head) and final norm, counted once
    layer = [_llama_numel(a, space.reference) - embed for a in one]
    assert space.params(arch) == embed + sum(layer)


def test_grid_bins_are_roughly_uniform_in_params() -> None:
    space = load_space(SPACES / "smollm2-135m.yaml")
    k = 10
    archs = space.sample_grid(200, k, seed=0, trials=5000)
    assert len(archs) == 200 and all(space.is_valid(a) for a in archs)
    low, high = space.params(space.smallest()), space.params(space.largest())
    low = max(low, space.constraints.min_params or 0)  # the bins span what the space admits
    counts = np.histogram([space.params(a) for a in archs], bins=k, range=(low, high))[0]
    assert counts.min() >= 15 and counts.max() <= 25, counts  # 20 per bin expected
    plain = np.histogram([space.params(a) for a in space.sample(200, seed=0)], bins=k, range=(low, high))[0]
    assert plain.max() - plain.min() > counts.max() - counts.min()  # plain sampling is far from uniform


def test_min_max_params_bound_sampling(write_space) -> None:
    doc = tiny_space_doc("llama", constraints={"min_params": 8000, "max_params": 20000})
    space = load_space(write_space(doc))
    for arch in space.sample(100, seed=2):
        assert 8000 <= space.params(arch) <= 20000


def test_smallest_admitted_meets_min_params(write_space) -> None:
    free = load_space(write_space(tiny_space_doc("llama"), "free.yaml"))
    assert free.smallest_admitted() == free.smallest()
    space = load_space(write_space(tiny_space_doc("llama", constraints={"min_params": 20000})))
    admitted = space.smallest_admitted()
    assert not space.is_valid(space.smallest()) and space.is_valid(admitted)
    assert space.smallest_admitted() == admitted  # seeded: the sandwich and the profile plan agree
    everything = np.stack([g.ravel() for g in np.meshgrid(
        *[space.dimensions[d].candidates() for d in DIMENSIONS], indexing="ij")], axis=1)
    assert space.params(admitted) == space.params_matrix(everything)[space.valid_mask(everything)].min() == 20000


def test_encoding_has_one_column_per_feature() -> None:
    layerwise = load_space(SPACES / "smollm2-135m-layerwise.yaml")
    archs = layerwise.sample(5, seed=0)
    x = layerwise.encode(archs)
    names = layerwise.feature_names()
    assert x.shape == (5, len(names))
    assert "n_heads_29" in names and "intermediate_size_mean" in names
    row = dict(zip(names, x[0]))
    assert row["n_layers"] == archs[0]["n_layers"]
    assert row[f"n_heads_{archs[0]['n_layers'] - 1}"] == archs[0]["n_heads"][-1]
    assert row["n_heads_29"] == 0 or archs[0]["n_layers"] == 30


def test_syne_tune_config_space_round_trip() -> None:
    from syne_tune.config_space import Categorical, Integer

    for name in ("smollm2-135m", "smollm2-135m-layerwise"):
        space = load_space(SPACES / f"{name}.yaml")
        config_space = space.to_syne_tune()
        if name == "smollm2-135m":
            assert isinstance(config_space["n_heads"], Categorical) and isinstance(config_space["n_layers"], Integer)
        for arch in space.sample(5, seed=1):
            config = {k: v for k, v in arch.items() if not isinstance(v, list)}
            for d in space.per_layer:
                config.update({f"{d}_{i}": arch[d][i] if i < arch["n_layers"] else arch[d][0]
                               for i in range(space.max_layers)})
            assert space.from_syne_tune(config) == arch


def test_space_yaml_text_is_the_merged_document() -> None:
    space = load_space(SPACES / "smollm2-135m-fixed-head-size.yaml")
    import yaml

    doc = yaml.safe_load(space.yaml_text)
    assert doc["dimensions"]["head_size"] == 64 and "model" in doc and "include" not in doc
    assert json.dumps(doc)  # plain data only


@pytest.mark.parametrize("mutate, key, rule", [
    (lambda d: d.update(colour="red"), "colour", "unknown key"),
    (lambda d: d["dimensions"].update(n_heads={"choice": []}), "dimensions.n_heads.choice", "must not be empty"),
    (lambda d: d["dimensions"].update(n_layers={"int": {"low": 3, "high": 1}}), "dimensions.n_layers.int",
     "low must be <= high"),
    (lambda d: d["dimensions"].update(embed_dim={"choice": [16, "wide"]}), "dimensions.embed_dim.choice[1]",
     "must be an integer"),
    (lambda d: d["dimensions"].update(embed_dim={"choice": [16, 64]}), "dimensions.embed_dim",
     "reference model's embed_dim"),
    (lambda d: d["model"].update(family="gpt2"), "model.family", "must be one of"),
    (lambda d: d.pop("dimensions"), "dimensions", "required key is missing"),
    (lambda d: d.update(constraints={"max_params": 10}), "constraints.max_params", "unsatisfiable"),
    (lambda d: d["dimensions"].update(n_heads=3, n_kv_groups=2), "dimensions", "unsatisfiable"),
    (lambda d: d["dimensions"].update(n_layers={"int": {"low": 1, "high": 3}, "per_layer": True}),
     "dimensions.n_layers.per_layer", "can vary by layer"),
    (lambda d: d["dimensions"].update(n_heads={"choice": [2, 5]}), "dimensions.n_heads.choice",
     "can never meet"),
    (lambda d: d["objectives"][0].update(minimize="yes"), "objectives[0].minimize", "true or false"),
])
def test_bad_space_files_name_file_key_rule_and_value(write_space, mutate, key, rule) -> None:
    doc = copy.deepcopy(tiny_space_doc())
    mutate(doc)
    path = write_space(doc)
    with pytest.raises(InvalidSpaceError) as info:
        load_space(path)
    assert info.value.where == f"{path}:{key}"
    assert rule in info.value.rule


def test_include_cycle_is_reported(write_space) -> None:
    a = write_space("include: b.yaml\nname: a\n", "a.yaml")
    write_space("include: a.yaml\nname: b\n", "b.yaml")
    with pytest.raises(InvalidSpaceError, match="include cycle"):
        load_space(a)


def test_malformed_yaml_names_the_line(write_space) -> None:
    path = write_space("name: x\ndimensions: [1, 2\n")
    with pytest.raises(InvalidSpaceError) as info:
        load_space(path)
    assert info.value.where.startswith(f"{path}:") and "malformed YAML" in info.value.rule


@pytest.mark.parametrize("name", ["smollm2-135m", "pythia-410m"])
def test_training_flops_count_attention_backward_twice(name) -> None:
    """A LoRA pass is ``2F + A``: attention's matmuls multiply two activations, so its backward takes both operands'
    gradients; ``A`` is the part of ``F`` that grows with the context (``2 * 2 * h * d * (s + 1) / 2`` a layer)."""
    space = load_space(SPACES / f"{name}.yaml")
    for arch in (space.largest(), *space.sample(5, seed=3)):
        forward = space.flops(arch, 512)
        attention = (forward - space.flops(arch, 0)) * 513 / 512
        assert 0 < attention < 0.2 * forward
        assert space.training_flops(arch, 512, "lora") == pytest.approx(2 * forward + attention, rel=1e-12)
        assert space.training_flops(arch, 512, "full") == 3 * forward
    with pytest.raises(ValueError, match="peft"):
        space.training_flops(space.largest(), 512, "qlora")


@pytest.mark.parametrize("name", ["smollm2-135m", "smollm2-135m-fixed-head", "pythia-410m", "llama-3.1-8b"])
def test_batch_rules_and_counts_equal_the_per_arch_ones(name) -> None:
    """valid_mask / params_matrix / flops_matrix (the vectorised query path) agree with check / params / flops on
    valid archs and on archs with one dimension changed (often breaking a rule)."""
    space = load_space(SPACES / f"{name}.yaml")
    archs = space.sample(150, seed=1)
    x = space.encode(archs)
    assert (space.params_matrix(x) == [space.params(a) for a in archs]).all()
    assert (space.flops_matrix(x) == [space.flops(a) for a in archs]).all()
    rng = np.random.default_rng(0)
    mutated = np.repeat(x, 8, axis=0)
    for row in mutated:
        j = int(rng.integers(len(DIMENSIONS)))
        candidates = space.dimensions[DIMENSIONS[j]].candidates()
        row[j] = rng.choice(candidates) if rng.random() < 0.7 else row[j] + rng.choice([-1, 1])
    mask = space.valid_mask(mutated)
    expected = [space.is_valid(dict(zip(DIMENSIONS, map(int, row)))) for row in mutated]
    assert 0 < mask.sum() < len(mask)
    assert mask.tolist() == expected


def test_batch_arch_ids_equal_arch_id() -> None:
    """arch_ids (numpy, nasbench.space) and the DuckDB one (nasbench.store.arch_ids) hash each row's canonical JSON
    exactly as arch_id does."""
    from nasbench.space import arch_ids
    from nasbench.store import arch_ids as sql_arch_ids

    space = load_space(SPACES / "smollm2-135m.yaml")
    archs = space.sample(300, seed=4)
    x = space.encode(archs).astype(np.int64)
    expected = [arch_id(a) for a in archs]
    assert arch_ids(x) == expected
    assert list(sql_arch_ids(x)) == expected
