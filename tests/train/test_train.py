"""Supernet fine-tuning on tiny random models: samplers, distillation losses, elastic LoRA, resume, DDP."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from nasbench.errors import NasBenchError
from nasbench.importance import IMPORTANCE_FILE, Importance
from nasbench.models import tiny_space
from nasbench.space import load_space
from nasbench.supernet import Supernet
from nasbench.supernet import apply_lora
from nasbench.train import KD_LOSSES, distill_loss, lm_loss, make_config, make_sampler, train
from nasbench.train.loop import CHECKPOINTS, RUN_FILE, run_picks
from nasbench.supernet.lora import ElasticLoraA, ElasticLoraB
from nasbench.train.strategies import Pick, mean_abs_weight

REPO = Path(__file__).resolve().parents[2]
EXACT = dict(rtol=0, atol=0)


def _space_with_data(directory: Path, family: str = "llama"):
    """A tiny space plus a small Alpaca file in the tiny tokenizer's vocabulary (``w3`` .. ``w95``)."""
    tiny_space(directory, family)
    rng = random.Random(0)
    records = [{"instruction": " ".join(f"w{rng.randrange(3, 96)}" for _ in range(rng.randrange(3, 8))),
                "input": "" if i % 2 else "w7 w8",
                "output": " ".join(f"w{(3 + 2 * j + i) % 90 + 3}" for j in range(rng.randrange(4, 12)))}
               for i in range(48)]
    (directory / "data").mkdir()
    (directory / "data" / "ft.json").write_text(json.dumps(records), encoding="utf-8")
    doc = yaml.safe_load((directory / "space.yaml").read_text(encoding="utf-8"))
    doc["data"] = {"finetune": {"kind": "instructions", "path": "ft.json"}}
    (directory / "space.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return load_space(directory / "space.yaml"), directory / "data"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _space_with_data(tmp_path_factory.mktemp("train-space"))


def _ids(vocab: int, batch: int = 2, seq: int = 12) -> torch.Tensor:
    return torch.randint(3, vocab, (batch, seq), generator=torch.Generator().manual_seed(1))


def _batch(vocab: int) -> dict[str, torch.Tensor]:
    ids = _ids(vocab)
    return {"input_ids": ids, "labels": ids, "attention_mask": torch.ones_like(ids)}


# ---------------------------------------------------------------------------------------------------- samplers
def test_sandwich_runs_largest_then_smallest_then_k_random(tiny):
    space, _ = tiny
    sampler = make_sampler("sandwich", space, make_config("quick", n_random=3))
    for _ in range(5):
        picks = sampler.step()
        assert [p.role for p in picks] == ["largest", "smallest", "random", "random", "random"]
        assert picks[0].arch == space.largest() and picks[1].arch == space.smallest()
        assert all(space.is_valid(p.arch) for p in picks[2:])
    assert sampler.teacher
    assert make_sampler("standard", space, make_config("quick")).step() == [Pick("full", None)]
    single = make_sampler("random", space, make_config("quick"))
    draws = [single.step() for _ in range(6)]
    assert all(len(d) == 1 and space.is_valid(d[0].arch) for d in draws)
    assert len({json.dumps(d[0].arch) for d in draws}) > 1


@pytest.mark.parametrize("strategy", ["grid-params", "importance-grid-params"])
def test_grid_sampler_visits_every_bin_evenly_with_archs_of_that_bin(tiny, strategy):
    space, _ = tiny
    config = make_config("quick", n_random=2, grid_bins=4, grid_trials=400)
    sampler = make_sampler(strategy, space, config)
    counts = dict.fromkeys(sampler.nonempty, 0)
    for _ in range(len(sampler.nonempty) * 3):
        picks = sampler.step()
        assert [p.role for p in picks[:2]] == ["largest", "smallest"] and len(picks) == 4
        for p in picks[2:]:
            j = int(p.role[3:])
            assert p.arch in sampler.bins[j]
            counts[j] += 1
    assert max(counts.values()) - min(counts.values()) <= 1 and min(counts.values()) >= 5


def test_calibrate_mag_picks_the_heaviest_candidate_of_each_bin(tiny):
    space, _ = tiny
    supernet = Supernet.from_space(space)
    config = make_config("quick", n_random=2, grid_bins=3, grid_trials=200, calibrate_candidates=1000)
    sampler = make_sampler("importance-calibrate-mag", space, config, supernet=supernet)
    for j in sampler.nonempty:
        best = max(mean_abs_weight(supernet, a) for a in sampler.bins[j])
        assert mean_abs_weight(supernet, sampler.chosen[j]) == best
    seen = {p.role: p.arch for _ in range(6) for p in sampler.step()[2:]}
    assert seen == {f"bin{j}": sampler.chosen[j] for j in sampler.nonempty}


def test_sampler_state_round_trips(tiny):
    space, _ = tiny
    config = make_config("quick", grid_bins=3, grid_trials=200)
    first = make_sampler("grid-params", space, config)
    first.step()
    state = json.loads(json.dumps(first.state_dict()))  # JSON-able
    second = make_sampler("grid-params", space, config)
    second.load_state_dict(state)
    assert [first.step() for _ in range(4)] == [second.step() for _ in range(4)]


# ---------------------------------------------------------------------------------------------------- distill
@pytest.mark.parametrize("kind", [k for k in KD_LOSSES if k != "none"])
def test_kd_loss_is_zero_for_identical_logits_and_positive_otherwise(kind):
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(2, 5, 11, generator=g)
    student = teacher + 0.5 * torch.randn(2, 5, 11, generator=g)
    for temperature in (1.0, 2.0):
        same = distill_loss(teacher.clone(), teacher, kind, temperature)
        assert same.abs().item() < 1e-5
        assert distill_loss(student, teacher, kind, temperature).item() > 1e-3
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[0, :2] = True
    mixed = teacher.clone()
    mixed[1] = student[1]  # differs only where the mask is off
    assert distill_loss(mixed, teacher, kind, mask=mask).abs().item() < 1e-5
    assert distill_loss(student, teacher, "none").item() == 0


# ---------------------------------------------------------------------------------------------------- LoRA
def test_lora_adapters_get_gradients_only_in_active_slices(tiny):
    space, _ = tiny
    supernet = apply_lora(Supernet.from_space(space), r=4, alpha=8, dropout=0.0, init_lora_weights=False)
    arch = dict(space.smallest(), n_layers=1, embed_dim=24, n_heads=2, n_kv_groups=1, head_size=6,
                intermediate_size=20)
    run_picks(supernet, [Pick("sub", space.canonical(arch))], _batch(space.reference.vocab_size), precision="fp32")
    layer0, layer1 = supernet.wiring.blocks[0], supernet.wiring.blocks[1]
    q, down = layer0.self_attn.q_proj, layer0.mlp.down_proj
    assert isinstance(q.lora_A["default"], ElasticLoraA) and isinstance(q.lora_B["default"], ElasticLoraB)
    a, b = q.lora_A["default"].weight.grad, q.lora_B["default"].weight.grad
    assert a[:, :24].abs().sum() > 0 and a[:, 24:].abs().sum() == 0  # input columns: the first embed_dim channels
    rows = q.base_layer.out_index  # the active query rows (2 heads x 6 channels, rotary pairs)
    active = torch.zeros(b.shape[0], dtype=torch.bool)
    active[rows if isinstance(rows, torch.Tensor) else torch.arange(rows)] = True
    assert b[active].abs().sum() > 0 and b[~active].abs().sum() == 0
    assert down.lora_A["default"].weight.grad[:, 20:].abs().sum() == 0
    assert down.lora_B["default"].weight.grad[24:].abs().sum() == 0
    assert all(p.grad is None for n, p in layer1.named_parameters() if "lora_" in n)  # dropped layer: untouched
    assert all(p.grad is None for n, p in supernet.named_parameters() if "lora_" not in n)  # base frozen


def test_extract_after_lora_training_equals_the_sliced_supernet(tiny):
    space, _ = tiny
    supernet = apply_lora(Supernet.from_space(space), r=4, alpha=8, dropout=0.0)
    optimizer = torch.optim.AdamW([p for p in supernet.parameters() if p.requires_grad], lr=5e-2)
    sampler = make_sampler("sandwich", space, make_config("quick"))
    batch = _batch(space.reference.vocab_size)
    for _ in range(3):
        run_picks(supernet, sampler.step(), batch, kd="cosine", teacher_first=True, precision="fp32")
        optimizer.step()
        optimizer.zero_grad()
    supernet.eval()
    ids = _ids(space.reference.vocab_size)
    assert any(p.abs().sum() > 0 for n, p in supernet.named_parameters() if "lora_B" in n)  # adapters trained
    for arch in [space.largest(), space.smallest(), *space.sample(2, seed=5)]:
        supernet.set_sub_network(arch)
        with torch.no_grad():
            sliced = supernet(input_ids=ids).logits
            dense = supernet.extract(arch)(input_ids=ids).logits
        torch.testing.assert_close(dense, sliced, rtol=1e-5, atol=1e-5)
    supernet.reset()


def test_importance_strategy_keeps_the_top_ranked_layers(tmp_path, tiny):
    space, data_dir = tiny
    sorted_dir = tmp_path / "sorted"
    AutoModelForCausalLM.from_pretrained(space.model.hf).save_pretrained(sorted_dir)
    ref = space.reference
    Importance("mean-mean", [[1.0] * ref.n_heads] * ref.n_layers, [[1.0] * ref.intermediate_size] * ref.n_layers,
               [1.0] * ref.embed_dim, layers=[0.1, 0.9],
               layer_scheme="block-importance").save(sorted_dir / IMPORTANCE_FILE)
    from nasbench.importance import load_importance

    importance = load_importance(sorted_dir)
    supernet = apply_lora(Supernet(AutoModelForCausalLM.from_pretrained(sorted_dir), space), r=4, alpha=8, dropout=0.0,
                          init_lora_weights=False)
    run_picks(supernet, [Pick("sub", dict(space.largest(), n_layers=1))], _batch(ref.vocab_size),
              importance=importance, precision="fp32")
    grads = {i: [p.grad for n, p in supernet.wiring.blocks[i].named_parameters() if "lora_" in n] for i in (0, 1)}
    assert all(g is None for g in grads[0]) and all(g is not None for g in grads[1])  # layer 1 ranks first
    result = train(space, strategy="importance-random", kd="none", peft="lora", preset="quick", out=tmp_path / "out",
                   max_steps=2, batch_size=2, seq_len=48, data_dir=data_dir, sorted_supernet=sorted_dir, progress=False,
                   precision="fp32")
    assert result.complete and (tmp_path / "out" / IMPORTANCE_FILE).is_file()


# ---------------------------------------------------------------------------------------------------- the loop
def test_resume_after_an_interruption_reproduces_the_uninterrupted_run(tmp_path, tiny):
    space, data_dir = tiny
    common = dict(strategy="sandwich", kd="cosine", peft="lora", preset="quick", max_steps=6, batch_size=2,
                  seq_len=48, data_dir=data_dir, progress=False, checkpoint_every=2, lora_dropout=0.3, lr=1e-2,
                  precision="fp32")
    whole = train(space, out=tmp_path / "whole", **common)
    part = train(space, out=tmp_path / "part", stop_at=3, **common)
    assert (part.steps, part.complete) == (3, False)
    (tmp_path / "part" / CHECKPOINTS / ".tmp-step-000004").mkdir()  # a checkpoint killed while being written
    with pytest.raises(NasBenchError, match="^out: holds a training run already"):
        train(space, out=tmp_path / "part", **common)
    resumed = train(space, out=tmp_path / "part", resume=True, **common)
    assert (resumed.steps, resumed.tokens, resumed.complete) == (whole.steps, whole.tokens, True)
    assert resumed.losses == whole.losses
    a = load_file(str(Path(whole.checkpoint) / "trainable.safetensors"))
    b = load_file(str(Path(resumed.checkpoint) / "trainable.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    merged_a = load_file(str(tmp_path / "whole" / "model.safetensors"))
    merged_b = load_file(str(tmp_path / "part" / "model.safetensors"))
    assert all(torch.equal(merged_a[k], merged_b[k]) for k in merged_a)
    with pytest.raises(NasBenchError, match="^lr: differs from the run being resumed"):
        train(space, out=tmp_path / "part", resume=True, **dict(common, lr=1e-3))


def test_a_deadline_shrinks_the_schedule_to_the_steps_that_fit(tmp_path, tiny, monkeypatch):
    import json
    import time

    from nasbench.train import loop

    space, data_dir = tiny
    monkeypatch.setattr(loop, "DEADLINE_SHARE", 0.0)  # as if the deadline were now: end right after the timed steps
    result = train(space, strategy="sandwich", kd="none", peft="lora", preset="quick", out=tmp_path / "out",
                   max_steps=40, batch_size=2, seq_len=48, data_dir=data_dir, progress=False, precision="fp32",
                   deadline=time.time() + 3600)
    timed = loop.FIT_AFTER_STEPS + 1  # the call's first step is not timed
    assert (result.steps, result.complete) == (timed, True)
    assert json.loads((tmp_path / "out" / RUN_FILE).read_text())["config"]["steps"] == timed
    with pytest.raises(NasBenchError, match="^deadline: "):
        train(space, strategy="sandwich", kd="none", peft="lora", preset="quick", out=tmp_path / "late",
              max_steps=4, data_dir=data_dir, progress=False, deadline=time.time() - 1)


def test_a_few_steps_lower_the_loss_and_record_the_supernet(tmp_path, tiny):
    space, data_dir = tiny
    db = tmp_path / "nasbench.duckdb"
    result = train(space, strategy="standard", kd="none", peft="full", preset="quick", out=tmp_path / "out",
                   max_steps=12, batch_size=4, seq_len=48, data_dir=data_dir, progress=False, lr=3e-3,
                   warmup_steps=1, db=db, precision="fp32")
    from nasbench.train.data import build_data

    from transformers import AutoTokenizer

    rows = build_data(space, AutoTokenizer.from_pretrained(space.model.hf), seq_len=48, data_dir=data_dir)
    batch = rows.batch(torch.arange(16))

    def loss(path: str) -> float:
        model = AutoModelForCausalLM.from_pretrained(path).eval()
        with torch.no_grad():
            return lm_loss(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                           batch["labels"]).item()

    assert loss(result.out) < loss(space.model.hf) - 0.1
    from nasbench.store import Store

    with Store(db) as store:
        row = store.query("SELECT steps, tokens, strategy, kd, peft, checkpoint FROM supernets WHERE id = ?",
                          [result.supernet_id]).iloc[0]
    assert (row.steps, row.tokens, row.strategy, row.kd, row.peft) == (12, result.tokens, "standard", "none", "full")
    assert row.checkpoint == str(tmp_path / "out") and result.tokens > 0


@pytest.mark.parametrize("kwargs, name", [
    (dict(strategy="nas"), "strategy"),
    (dict(kd="l2"), "kd"),
    (dict(peft="qlora"), "peft"),
    (dict(preset="slow"), "preset"),
    (dict(strategy="random", kd="cosine"), "kd"),
    (dict(strategy="importance-random"), "sorted_supernet"),
    (dict(batch_size=0), "batch_size"),
    (dict(kd_alpha=1.5), "kd_alpha"),
    (dict(no_such_option=1), "no_such_option"),
])
def test_bad_inputs_name_the_argument(tmp_path, tiny, kwargs, name):
    space, data_dir = tiny
    args = dict(strategy="sandwich", kd="none", peft="lora", preset="quick", out=tmp_path / "o", data_dir=data_dir,
                progress=False)
    with pytest.raises(NasBenchError) as info:
        train(space, **{**args, **kwargs})
    assert info.value.where == name


_DDP_SCRIPT = """
import sys, torch, torch.distributed as dist
from nasbench.space import load_space
from nasbench.train import train
from safetensors.torch import save_file
import nasbench.train.loop as loop

captured = {}
original = loop._Run.fit
def fit(self, resume):
    result = original(self, resume)
    captured.update({n: p.detach().clone() for n, p in self.params})
    return result
loop._Run.fit = fit
space = load_space(sys.argv[1])
train(space, strategy="sandwich", kd="cosine", peft="lora", preset="quick", out=sys.argv[2], max_steps=3,
      batch_size=2, seq_len=48, data_dir=sys.argv[3], progress=False, lora_dropout=0.2, lr=1e-2, precision="fp32")
save_file(captured, f"{sys.argv[2]}/rank{dist.get_rank()}.safetensors")
dist.destroy_process_group()
"""


@pytest.mark.slow  # two processes under torchrun
def test_two_process_data_parallel_ranks_end_with_identical_weights(tmp_path, tiny):
    space, data_dir = tiny
    script = tmp_path / "ddp.py"
    script.write_text(_DDP_SCRIPT, encoding="utf-8")
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    with socket.socket() as probe:  # a free port (torchrun's --master_port 0 does not rendezvous here)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           str(script), space.path, str(out), str(data_dir)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group: a hang is killed whole
    try:
        _, stderr = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("torchrun with 2 processes did not finish in 180 s")
    assert proc.returncode == 0, stderr[-3000:]
    a, b = load_file(str(out / "rank0.safetensors")), load_file(str(out / "rank1.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(a[k].abs().sum() > 0 for k in a if "lora_B" in k)  # trained (B starts at zero)
    assert json.loads((out / "train.json").read_text())["world"] == 2
