"""Recovery training on tiny random models: the fused KL, a frozen-teacher run with its curve, checkpoints without
pickles, and the small artifact (pack, rebuild, tamper refusal, --resume-from)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from nasbench.errors import NasBenchError
from nasbench.importance import sort_model
from nasbench.space import load_space
from nasbench.supernet import Supernet
from nasbench.supernet import apply_lora
from nasbench.train import lm_loss, train
from nasbench.allocator import freed_memory_kept
from nasbench.supernet.artifact import MANIFEST, WEIGHTS, load_model, pack, read_manifest
from nasbench.train.distill import TeacherTargets, distill_loss, kl_to_targets
from nasbench.train.loop import CHECKPOINTS, CURVE_FILE
from nasbench.precision import resolve_precision
from nasbench.train.strategies import sub_network_kwargs


def test_precision_auto_measures_and_picks_one():
    assert resolve_precision("auto") in ("bf16-mixed", "fp32")
    assert resolve_precision("fp32") == "fp32" and resolve_precision("bf16-mixed") == "bf16-mixed"


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_kl_to_targets_equals_the_kl_loss_and_its_gradient(temperature):
    torch.manual_seed(0)
    student = torch.randn(2, 40, 300, requires_grad=True)
    teacher = torch.randn(2, 40, 300) * 2
    mask = torch.rand(2, 40) > 0.3
    want = distill_loss(student, teacher, "kl", temperature, mask=mask)
    (want_grad,) = torch.autograd.grad(want, student)
    got = kl_to_targets(student, TeacherTargets(teacher, temperature, mask))
    (got_grad,) = torch.autograd.grad(got, student)
    # the teacher's probabilities are kept in bf16: agreement to bf16's precision
    torch.testing.assert_close(got, want, rtol=1e-2, atol=1e-3)
    torch.testing.assert_close(got_grad, want_grad, rtol=2e-2, atol=2e-5)
    assert float(kl_to_targets(teacher, TeacherTargets(teacher, temperature, mask))) < 1e-2


def test_an_all_true_mask_selects_nothing_and_changes_nothing():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 40, 300), torch.randn(2, 40, 300)
    targets = TeacherTargets(teacher, 1.0, torch.ones(2, 40, dtype=torch.bool))
    assert targets.keep is None  # no [tokens, vocab] copy for packed rows
    assert float(kl_to_targets(student, targets)) == float(kl_to_targets(student, TeacherTargets(teacher)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lm_loss_equals_torch_cross_entropy_and_its_gradient(dtype):
    torch.manual_seed(0)
    logits = (torch.randn(2, 40, 300) * 3).to(dtype).requires_grad_(True)  # 78 scored rows: several chunks
    labels = torch.randint(300, (2, 40))
    labels[0, :7] = -100  # a prompt's masked labels
    got = lm_loss(logits, labels)
    (got_grad,) = torch.autograd.grad(got, logits)
    want = F.cross_entropy(logits[:, :-1].reshape(-1, 300).float(), labels[:, 1:].reshape(-1), ignore_index=-100)
    (want_grad,) = torch.autograd.grad(want, logits)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-5, atol=1e-7)
    assert got_grad[0, :6].abs().sum() == 0 and got_grad[:, -1].abs().sum() == 0  # unlabelled rows get nothing


def test_fused_lora_layer_equals_peft_forward_and_gradients(tiny_with_data):
    from peft.tuners.lora.layer import Linear as LoraLinear

    space, _ = tiny_with_data
    ids = torch.randint(3, space.reference.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
    arch = space.sample(1, seed=3)[0]
    results = []
    for fused in (True, False):
        torch.manual_seed(0)
        supernet = apply_lora(Supernet.from_space(space), r=4, alpha=8, dropout=0.0, init_lora_weights=False)
        layers = [m for m in supernet.model.modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")]
        assert layers and all(type(m).__name__ == "FusedLoraLinear" for m in layers)
        if not fused:
            for m in layers:
                m.__class__ = LoraLinear
        supernet.set_sub_network(arch)
        logits = supernet(input_ids=ids).logits
        logits.square().mean().backward()
        results.append((logits.detach(), {n: p.grad.clone() for n, p in supernet.named_parameters()
                                          if p.grad is not None}))
    (fused_logits, fused_grads), (peft_logits, peft_grads) = results
    torch.testing.assert_close(fused_logits, peft_logits, rtol=1e-5, atol=1e-6)
    assert fused_grads.keys() == peft_grads.keys() and fused_grads
    for name in fused_grads:
        torch.testing.assert_close(fused_grads[name], peft_grads[name], rtol=1e-4, atol=1e-7)


def test_training_memory_kept_is_given_back_for_memory_measurements():
    from nasbench.profile.latency import peak_memory_mb

    with freed_memory_kept() as took:
        with freed_memory_kept():  # a perplexity pass inside a training run: its end keeps the run's settings
            pass
        big = torch.ones(80_000_000)  # 305 MiB from the heap, kept there after the free below
        del big
        if took:
            _, grown = peak_memory_mb(lambda: torch.ones(50_000_000).sum())
            assert grown < 50  # served from the kept heap
    assert took == sys.platform.startswith("linux")
    if took:  # the prefill meter must see new memory again, not the heap the training kept
        _, grown = peak_memory_mb(lambda: torch.ones(50_000_000).sum())
        assert grown > 150


@pytest.fixture
def sorted_tiny(tiny_with_data, tmp_path):
    """The tiny space with a ``recovery`` text source, and its sorted supernet directory."""
    space, data = tiny_with_data
    doc = yaml.safe_load(Path(space.path).read_text(encoding="utf-8"))
    doc["data"]["recovery"] = {"kind": "text", "path": "calib.txt"}
    Path(space.path).write_text(yaml.safe_dump(doc), encoding="utf-8")
    space = load_space(space.path)
    sorted_dir = tmp_path / "sorted"
    sort_model(space, sorted_dir, tokens=256, seq_len=32, data_dir=data, progress=False)
    return space, data, sorted_dir


def _recovery(space, data, sorted_dir, out, **kwargs):
    options = dict(strategy="importance-grid-params", kd="kl", peft="lora", preset="recovery", out=out,
                   sorted_supernet=sorted_dir, data_dir=data, max_steps=3, batch_size=2, seq_len=16,
                   precision="fp32", eval_every=2, eval_tokens=64, grid_bins=2, grid_trials=200, progress=False)
    options.update(kwargs)
    return train(space, **options)


def _logits(model, space, arch, importance, ids):
    supernet = Supernet(model, space)
    supernet.set_sub_network(arch, **sub_network_kwargs(arch, importance))
    with torch.no_grad():
        return supernet(input_ids=ids).logits


def test_a_recovery_run_packs_into_an_artifact_that_rebuilds_the_trained_sub_networks(sorted_tiny, tmp_path):
    space, data, sorted_dir = sorted_tiny
    run = tmp_path / "run"
    result = _recovery(space, data, sorted_dir, run)
    assert result.complete and result.steps == 3
    # the frozen teacher: every pick is a student, the largest one too
    assert set(result.losses) >= {"largest", "smallest"}
    curve = [json.loads(line) for line in (run / CURVE_FILE).read_text().splitlines()]
    assert sorted({p["step"] for p in curve}) == [0, 2, 3]
    assert {p["role"] for p in curve} == {"full", "smallest"}
    assert all(p["ppl"] > 1 and p["eval_tokens"] == 64 for p in curve)
    # a checkpoint holds tensors in safetensors and the rest in JSON: nothing a load would execute
    newest = sorted((run / CHECKPOINTS).iterdir())[-1]
    assert {f.suffix for f in newest.iterdir()} == {".safetensors", ".json"}

    artifact = pack(space, run, tmp_path / "supernets" / "tiny-recovered")
    manifest = read_manifest(artifact)
    assert manifest["id"] == "tiny-recovered" and manifest["training"]["steps_total"] == 3
    assert manifest["training"]["tokens_total"] == result.tokens > 0
    assert set(manifest["files"]) == {"importance.json", WEIGHTS, "curve.jsonl"}

    # the rebuilt model equals the sorted supernet with the (bf16-stored) trained weights merged
    loaded = load_model(space, artifact)
    reference = Supernet(AutoModelForCausalLM.from_pretrained(sorted_dir, dtype=torch.float32), space)
    reference = apply_lora(reference, manifest["training"]["lora_r"], manifest["training"]["lora_alpha"], 0.0)
    stored = {k: v.float() for k, v in load_file(str(artifact / WEIGHTS)).items()}
    params = dict(reference.model.named_parameters())
    assert set(stored) <= set(params) and any("norm" in k for k in stored)
    with torch.no_grad():
        for name, value in stored.items():
            params[name].copy_(value)
    merged = reference.model.merge_and_unload()
    ids = torch.randint(3, space.reference.vocab_size, (2, 10), generator=torch.Generator().manual_seed(0))
    for arch in (space.largest(), space.sample(1, seed=4)[0]):
        torch.testing.assert_close(_logits(loaded.model, space, arch, loaded.importance, ids),
                                   _logits(merged, space, arch, loaded.importance, ids), rtol=1e-4, atol=1e-4)
    # the training changed the model: the artifact is not the untrained sorted supernet
    untrained = AutoModelForCausalLM.from_pretrained(sorted_dir, dtype=torch.float32)
    arch = space.sample(1, seed=4)[0]
    assert not torch.allclose(_logits(loaded.model, space, arch, loaded.importance, ids),
                              _logits(untrained, space, arch, loaded.importance, ids), atol=1e-5)

    # --resume-from continues the adapters in a new run; the packed chain adds up
    resumed = _recovery(space, data, None, tmp_path / "run2", max_steps=2, resume_from=artifact)
    assert resumed.complete
    second = read_manifest(pack(space, tmp_path / "run2", tmp_path / "supernets" / "tiny-recovered-2"))
    assert [c["steps"] for c in second["training"]["chain"]] == [3, 2]
    assert second["training"]["tokens_total"] == result.tokens + resumed.tokens


def test_a_tampered_artifact_is_refused(sorted_tiny, tmp_path):
    space, data, sorted_dir = sorted_tiny
    _recovery(space, data, sorted_dir, tmp_path / "run", max_steps=1, eval_every=0)
    artifact = pack(space, tmp_path / "run", tmp_path / "art")
    manifest = json.loads((artifact / MANIFEST).read_text())
    (artifact / MANIFEST).write_text(json.dumps({**manifest, "files": {"../escape": "0" * 64}}))
    with pytest.raises(NasBenchError, match="missing"):
        read_manifest(artifact)
    (artifact / MANIFEST).write_text(json.dumps(manifest))
    weights = load_file(str(artifact / WEIGHTS))
    name = sorted(weights)[0]
    weights[name] = weights[name] + 1
    save_file(weights, str(artifact / WEIGHTS))
    with pytest.raises(NasBenchError, match="sha256 differs"):
        load_model(space, artifact)


def test_checkpoints_follow_the_clock_as_well_as_the_step_count(sorted_tiny, tmp_path):
    space, data, sorted_dir = sorted_tiny
    run = tmp_path / "run"
    _recovery(space, data, sorted_dir, run, max_steps=3, eval_every=0, checkpoint_every=100,
              checkpoint_minutes=1e-9, keep_checkpoints=5)
    assert [p.name for p in sorted((run / CHECKPOINTS).iterdir())] == ["step-000001", "step-000002", "step-000003"]


def test_a_resumed_run_keeps_one_curve_line_per_step_and_probe(sorted_tiny, tmp_path):
    import shutil

    space, data, sorted_dir = sorted_tiny
    run = tmp_path / "run"
    _recovery(space, data, sorted_dir, run, max_steps=4, stop_at=3, checkpoint_every=1)
    # killed after the evaluation at step 3 and before its checkpoint: the resume starts again from step 2
    shutil.rmtree(run / CHECKPOINTS / "step-000003")
    _recovery(space, data, sorted_dir, run, max_steps=4, resume=True)
    curve = [json.loads(line) for line in (run / CURVE_FILE).read_text().splitlines()]
    assert [p["step"] for p in curve] == [0, 0, 2, 2, 4, 4]


def test_a_corrupt_training_record_is_a_one_line_error(sorted_tiny, tmp_path):
    space, data, sorted_dir = sorted_tiny
    run = tmp_path / "run"
    _recovery(space, data, sorted_dir, run, max_steps=1, eval_every=0)
    (run / "train.json").write_text("{not json")
    with pytest.raises(NasBenchError, match="not a readable training record"):
        _recovery(space, data, sorted_dir, run, max_steps=1, eval_every=0, resume=True)


#: Not installed on the GPU machine: the CLI's parser, ``train`` and ``pack`` must run without them.
_OPTIONAL = ("duckdb", "lm_eval", "syne_tune")
_WITHOUT_OPTIONAL = """
import importlib.abc, sys
class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError("not on the GPU machine: " + name)
sys.meta_path.insert(0, _Blocked())
from nasbench.cli import build_parser, main
build_parser()
space, data, sorted_dir, work = sys.argv[1:]
assert main(["train", space, "--strategy", "importance-random", "--kd", "none", "--preset", "recovery",
             "--sorted-supernet", sorted_dir, "--out", work + "/run", "--max-steps", "1", "--batch-size", "2",
             "--seq-len", "16", "--precision", "fp32", "--eval-every", "0", "--data-dir", data]) == 0
assert main(["pack", space, work + "/run", "--out", work + "/artifact"]) == 0
print(sorted(m for m in sys.modules if m.split(".")[0] in {blocked!r}))
"""


def test_the_parser_train_and_pack_import_no_optional_library(sorted_tiny, tmp_path):
    import subprocess
    import sys

    space, data, sorted_dir = sorted_tiny
    script = _WITHOUT_OPTIONAL.format(blocked=_OPTIONAL)
    done = subprocess.run([sys.executable, "-c", script, space.path, str(data), str(sorted_dir), str(tmp_path)],
                          cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert read_manifest(tmp_path / "artifact")["training"]["steps_total"] == 1
