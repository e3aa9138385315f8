"""SupernetRef: every way of naming a supernet resolves to one reference (kind, id, path, fingerprint, record), and
what has no weights here fails with one line when it is loaded."""

from __future__ import annotations

import json

import pytest
import torch

from nasbench.errors import NasBenchError
from nasbench.models import tiny_model, tiny_space
from nasbench.supernet import PRETRAINED, Supernet, SupernetRef


def test_pretrained_and_stored_ids_have_no_directory(tmp_path) -> None:
    assert SupernetRef.resolve(None) == SupernetRef.resolve("pretrained") == SupernetRef.pretrained()
    assert SupernetRef.pretrained().id == PRETRAINED and SupernetRef.pretrained().fingerprint == PRETRAINED
    stored = SupernetRef.resolve("some-run-id", packed=tmp_path)
    assert (stored.kind, stored.id, stored.path, stored.has_weights) == ("stored", "some-run-id", None, False)
    with pytest.raises(NasBenchError, match=r"^supernet: no such directory, and no packed supernet .*'some-run-id'"):
        stored.require_weights()
    with pytest.raises(NasBenchError, match="^kind: must be one of"):
        SupernetRef("checkpoint", "x")
    with pytest.raises(NasBenchError, match="^path: "):
        SupernetRef("artifact", "x")  # an artifact without its directory


def test_a_directory_is_read_for_its_kind_and_id(tmp_path) -> None:
    plain = tmp_path / "plain"
    tiny_model("llama", seed=1).save_pretrained(plain)
    ref = SupernetRef.resolve(str(plain))
    assert (ref.kind, ref.id, ref.path) == ("directory", "plain", plain)
    assert len(ref.fingerprint) == 16 and ref.record() == {"checkpoint": str(plain)}
    sorted_dir = tmp_path / "sorted"
    tiny_model("llama", seed=1).save_pretrained(sorted_dir)
    (sorted_dir / "importance.json").write_text("{}")
    assert SupernetRef.resolve(sorted_dir).kind == "sorted"
    assert SupernetRef.at(sorted_dir).fingerprint == ref.fingerprint  # the same weights' bytes and file names
    run = tmp_path / "run"
    run.mkdir()
    (run / "train.json").write_text(json.dumps({"supernet_id": "space-importance-grid-params-kl-lora-0123abcd",
                                                "identity": {"strategy": "importance-grid-params", "kd": "kl",
                                                             "peft": "lora", "preset": "recovery"},
                                                "config": {"seed": 1}, "data_hash": "d"}))
    ref = SupernetRef.resolve(run)
    assert (ref.kind, ref.id) == ("run", "space-importance-grid-params-kl-lora-0123abcd")
    record = ref.record()
    assert record["strategy"] == "importance-grid-params" and record["config"]["seed"] == 1 and record["steps"] is None
    with pytest.raises(NasBenchError, match="^supernet: is a training run that has not finished"):
        ref.load(None)  # no merged model yet: the space is never reached
    file = tmp_path / "weights.bin"
    file.write_bytes(b"")
    with pytest.raises(NasBenchError, match="^supernet: must be a directory"):
        SupernetRef.resolve(str(file))


def test_an_id_under_the_packed_folder_is_that_artifact(tmp_path) -> None:
    packed = tmp_path / "supernets"
    art = packed / "my-art"
    art.mkdir(parents=True)
    manifest = {"format": "nasbench-supernet/1", "id": "my-art", "space": {"name": "tiny", "hash": "h"},
                "training": {"tokens_total": 7}, "files": {"trainable.safetensors": "ab" * 32}}
    (art / "manifest.json").write_text(json.dumps(manifest))
    ref = SupernetRef.resolve("my-art", packed=packed)
    assert (ref.kind, ref.id, ref.path, ref.tokens, ref.space) == ("artifact", "my-art", art, 7, ("tiny", "h"))
    assert ref.fingerprint == "ab" * 32 and SupernetRef.packed(packed) == [ref]
    assert SupernetRef.resolve("other", packed=packed).kind == "stored"


def test_loading_a_directory_gives_its_weights(tmp_path) -> None:
    space = tiny_space(tmp_path, "llama")
    supernet = Supernet.from_space(space)
    with torch.no_grad():
        for p in supernet.parameters():
            p.mul_(0.5)
    supernet.model.save_pretrained(tmp_path / "trained")
    loaded = SupernetRef.resolve(tmp_path / "trained").load(space)
    assert loaded.importance is None and loaded.origin == str(tmp_path / "trained")
    for a, b in zip(loaded.model.parameters(), supernet.model.parameters()):
        torch.testing.assert_close(a, b)
