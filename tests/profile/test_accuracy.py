"""The packed log-likelihoods (nasbench.profile._packed) against lm-eval's own HFLM loop, on tiny random models."""

from __future__ import annotations

import random

import pytest
import torch

from nasbench.models import load_tokenizer, tiny_model, tiny_space, tiny_tokenizer
from nasbench.supernet import Supernet


def _requests(seed: int, vocab: int, items: int = 12) -> list:
    """Multiple-choice-like requests: contexts shared by 2-4 choices of different lengths, some contexts alone."""
    rng = random.Random(seed)
    requests = []
    for item in range(items):
        context = [rng.randrange(3, vocab) for _ in range(rng.randint(1, 20))]
        for _ in range(rng.choice([1, 2, 4])):
            cont = [rng.randrange(3, vocab) for _ in range(rng.randint(1, 6))]
            requests.append(((f"c{item}", f"{cont}"), context, cont))
    rng.shuffle(requests)  # lm-eval hands them over interleaved; the answers must come back in request order
    return requests


def _lms(model, tokenizer, **kwargs):
    from lm_eval.models.huggingface import HFLM

    from nasbench.profile._packed import PackedLM

    return (PackedLM(pretrained=model, tokenizer=tokenizer, device="cpu", **kwargs),
            HFLM(pretrained=model, tokenizer=tokenizer, device="cpu", **kwargs))


@pytest.mark.parametrize("family,attention", [("llama", "sdpa"), ("llama", "eager"), ("gpt_neox", "sdpa")])
def test_packed_loglikelihoods_equal_hflm_on_a_sub_network(tmp_path, family, attention) -> None:
    space = tiny_space(tmp_path, family, seed=1)
    supernet = Supernet.from_space(space)
    supernet.model.set_attn_implementation(attention)
    arch = space.sample(1, seed=3)[0]
    assert arch != space.largest()
    supernet.set_sub_network(arch)
    model = supernet.model
    tokenizer = load_tokenizer(space.model)
    requests = _requests(0, model.config.vocab_size)
    packed, hflm = _lms(supernet.model, tokenizer, batch_size=3)
    got, want = packed._loglikelihood_tokens(requests), hflm._loglikelihood_tokens(requests)
    assert len(got) == len(want) == len(requests)
    for (g, g_greedy), (w, w_greedy) in zip(got, want):
        assert g == pytest.approx(w, abs=1e-4)
        assert g_greedy == w_greedy
    # packing really shared the contexts: fewer rows than requests
    assert len(packed._rows(requests)) < len(requests)


def test_packed_window_cuts_long_contexts_as_hflm() -> None:
    model = tiny_model("llama", seed=1).float().eval()
    tokenizer = tiny_tokenizer(model.config.vocab_size)
    rng = random.Random(1)
    context = [rng.randrange(3, 100) for _ in range(30)]
    requests = [(("c", "a"), context, [5, 6, 7]), (("c", "b"), context, [8]),
                (("d", "e"), [9, 10, 11, 12, 13], [rng.randrange(3, 100) for _ in range(10)])]  # the window's size
    # four choices of 4 tokens behind a 4-token context make a row of 16 > 10: the group is split
    requests += [(("f", str(k)), [3, 4, 5, 6], [10 + k, 20 + k, 30 + k, 40 + k]) for k in range(4)]
    packed, hflm = _lms(model, tokenizer, batch_size=2, max_length=10)
    assert max(len(row) for row in packed._rows(requests)) <= 10
    for (g, g_greedy), (w, w_greedy) in zip(packed._loglikelihood_tokens(requests),
                                            hflm._loglikelihood_tokens(requests), strict=True):
        assert g == pytest.approx(w, abs=1e-4) and g_greedy == w_greedy


def test_evaluate_uses_the_packed_model(tiny_with_data, tmp_path, shared_data, monkeypatch) -> None:
    """``evaluate`` scores through PackedLM (it must not silently fall back to HFLM's loop on our families)."""
    from nasbench.profile import _packed
    from nasbench.profile.accuracy import evaluate, write_tasks

    space, data = tiny_with_data
    (data / "commonsense_eval").symlink_to(shared_data / "commonsense_eval")
    calls = []
    original = _packed.PackedLM._score
    monkeypatch.setattr(_packed.PackedLM, "_score", lambda self, *a: calls.append(1) or original(self, *a))
    model = tiny_model("llama", seed=2).float().eval()
    scores = evaluate(model, load_tokenizer(space.model), ["arc_easy"], write_tasks(data, tmp_path / "t", ["arc_easy"]),
                      limit=4)
    assert calls and {s.metric for s in scores} == {"acc", "acc_norm"}


def test_bench_accuracy_prints_both_loops_and_their_agreement(tiny_with_data, shared_data, capsys) -> None:
    import json

    from nasbench.cli import main

    space, data = tiny_with_data
    (data / "commonsense_eval").symlink_to(shared_data / "commonsense_eval")
    capsys.readouterr()
    assert main(["bench", "accuracy", space.path, "--items", "3", "--tasks", "arc_easy,piqa", "--supernet",
                 "pretrained", "--data-dir", str(data)]) == 0  # weights: `pretrained` is the base model
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["bench"] == "accuracy" and out["items"] == 3 and out["speedup"] > 0
    for task in ("arc_easy", "piqa"):
        assert 0.0 <= out[task]["acc_packed"] <= 1.0 and 0.0 <= out[task]["acc_hflm"] <= 1.0
    for argv, flag in ((["--items", "0"], "--items"), (["--tasks", "arc_easy,nope"], "--tasks"),
                       (["--archs", "missing.jsonl"], "--archs")):
        assert main(["bench", "accuracy", space.path, "--data-dir", str(data), *argv]) == 2
        err = capsys.readouterr().err
        assert flag in err and len(err.strip().splitlines()) == 1, err


def test_compiled_templates_render_as_lm_eval_renders_them() -> None:
    from lm_eval import utils

    from nasbench.profile._packed import cache_template_compilation

    cache_template_compilation()
    cache_template_compilation()  # idempotent: one wrapper, not a wrapper of a wrapper
    assert utils.apply_template.nasbench_cached
    template = "Question: {{question}}\nAnswer:{{ ' ' + choices[gold] | regex_replace('a', 'A') }}"
    for doc in ({"question": "why?", "choices": ["a cat", "dog"], "gold": 0},
                {"question": "how?", "choices": ["x", "banana"], "gold": 1}):
        assert utils.apply_template(template, doc) == utils.env.from_string(template).render(**doc)


def test_tasks_loaded_once_give_simple_evaluates_scores_on_every_call(tiny_with_data, tmp_path, shared_data) -> None:
    import logging

    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from nasbench.profile import accuracy
    from nasbench.profile._packed import PackedLM

    space, data = tiny_with_data
    (data / "commonsense_eval").symlink_to(shared_data / "commonsense_eval")
    task_dir = accuracy.write_tasks(data, tmp_path / "t", ["arc_easy", "winogrande"])
    tokenizer = load_tokenizer(space.model)
    logging.getLogger("lm_eval").setLevel(logging.WARNING)
    want = {}
    for task in ("arc_easy", "winogrande"):
        out = simple_evaluate(model=PackedLM(pretrained=tiny_model("llama", seed=2).float().eval(), tokenizer=tokenizer,
                                             batch_size=8, device="cpu"),
                              tasks=[task], task_manager=TaskManager(include_path=str(task_dir),
                                                                     include_defaults=False),
                              limit=6, log_samples=False, bootstrap_iters=0, verbosity="WARNING")
        want |= {(task, k.split(",")[0]): v for k, v in out["results"][task].items() if k.startswith("acc")
                 and isinstance(v, float)}
    for seed in (2, 2, 3):  # the same model twice on the loaded tasks, then another model
        scores = accuracy.evaluate(tiny_model("llama", seed=seed).float().eval(), tokenizer,
                                   ["arc_easy", "winogrande"], task_dir, limit=6)
        got = {(s.task, s.metric): s.value for s in scores}
        assert set(got) == set(want)
        if seed == 2:
            assert got == pytest.approx(want, abs=1e-12)
    assert sum(1 for key in accuracy._LOADED if key[0] == str(task_dir.resolve())) == 2
