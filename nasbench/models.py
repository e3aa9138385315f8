"""Loading base models: the embedded GGUF, a hub id or local directory, and tiny random models for tests.

Every loader checks the loaded config against the space's ``model.reference`` (:func:`check_reference`), so a space
whose reference does not describe its model fails at load time, naming the key.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from nasbench.errors import InvalidSpaceError, NasBenchError, check_choice
from nasbench.families import FAMILIES, family as family_entry
from nasbench.space import DIMENSIONS, ModelSpec, SearchSpace, load_space

__all__ = [
    "load_base_model",
    "load_tokenizer",
    "load_config",
    "check_reference",
    "reference_from_config",
    "tiny_model",
    "tiny_tokenizer",
    "tiny_space",
]

# ------------------------------------------------------------------------------------------------------ sources
def _gguf_path(spec: ModelSpec) -> tuple[Path, str]:
    found = importlib.util.find_spec(spec.gguf_package) if spec.gguf_package else None
    if found is None or not found.submodule_search_locations:
        raise NasBenchError("model.gguf.package", "the Python package holding the GGUF file is not installed "
                                                  f"(pip install {str(spec.gguf_package).replace('_', '-')})",
                            spec.gguf_package)
    directory = Path(list(found.submodule_search_locations)[0])
    if not (directory / str(spec.gguf_file)).is_file():
        raise NasBenchError("model.gguf.file", f"no such file in the package directory {directory}", spec.gguf_file)
    return directory, str(spec.gguf_file)


def _hf_source(spec: ModelSpec) -> str:
    """A local directory for the ``hf:`` source: the directory itself, or the hub id's snapshot in the local cache.

    The cache is looked up first (no network) because ``from_pretrained`` probes the hub for adapter files even with
    ``local_files_only=True`` and retries for tens of seconds on a machine without network.
    """
    if not spec.hf:
        raise NasBenchError("model", "the space names no model source (gguf: or hf:)", spec.source)
    if Path(spec.hf).is_dir():
        return spec.hf
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(spec.hf, local_files_only=True)
    except Exception as exc:  # LocalEntryNotFoundError, HFValidationError (not a valid id), ...
        raise _unreachable(spec, exc) from None


def _unreachable(spec: ModelSpec, exc: Exception) -> NasBenchError:
    return NasBenchError("model.hf", "not a local directory and not in the local Hugging Face cache (there is no "
                                     "network): download it first or point hf: at a local directory "
                                     f"[{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}]",
                         spec.hf)


def load_base_model(spec: ModelSpec, dtype: torch.dtype = torch.float32) -> PreTrainedModel:
    """The pretrained model of ``spec`` in ``dtype``, in eval mode, checked against ``spec.reference``.

    A GGUF source is dequantized by transformers; its quantizer marks are cleared so that ``save_pretrained`` works.
    An ``hf:`` source is a local directory or a hub id already in the local cache (no download).
    """
    if spec.gguf_file:
        directory, file = _gguf_path(spec)
        model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=file, dtype=dtype)
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.is_quantized = False
    else:
        source = _hf_source(spec)
        try:
            model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise _unreachable(spec, exc) from None
    check_reference(spec, model.config)
    return model.eval()


def load_config(spec: ModelSpec) -> Any:
    """The HF config of ``spec``'s model without its weights (GGUF metadata, a local directory or the local cache)."""
    from transformers import AutoConfig

    return _from_source(AutoConfig, spec)


def load_tokenizer(spec: ModelSpec) -> PreTrainedTokenizerBase:
    """The tokenizer that goes with :func:`load_base_model` (from the GGUF file or the ``hf:`` source)."""
    return _from_source(AutoTokenizer, spec)


def _from_source(auto: Any, spec: ModelSpec) -> Any:
    """``auto.from_pretrained`` on the GGUF file or the ``hf:`` source, offline."""
    if spec.gguf_file:
        directory, file = _gguf_path(spec)
        return auto.from_pretrained(directory, gguf_file=file)
    source = _hf_source(spec)
    try:
        return auto.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise _unreachable(spec, exc) from None


# ------------------------------------------------------------------------------------------------ cross-check
def reference_from_config(family: str, config: Any) -> dict[str, Any]:
    """The ``model.reference`` entries an HF config implies (the keys of :class:`~nasbench.space.ModelReference`)."""
    return family_entry(family).reference_from_config(config)


def check_reference(spec: ModelSpec, config: Any) -> None:
    """Raise InvalidSpaceError naming the first ``model.reference`` key that disagrees with the model's config."""
    model_type = getattr(config, "model_type", None)
    entry = FAMILIES.get(spec.family)
    if entry is None or model_type != entry.model_type:
        raise InvalidSpaceError("model.family", f"the model at {spec.source} is a {model_type!r} model", spec.family)
    entry.check_config(config, spec.source)
    actual = reference_from_config(spec.family, config)
    for key, value in actual.items():
        expected = getattr(spec.reference, key)
        if expected != value:
            raise InvalidSpaceError(f"model.reference.{key}",
                                    f"disagrees with the model at {spec.source}, whose config says {value!r}",
                                    expected)


# ----------------------------------------------------------------------------------------------- tiny models
def tiny_model(family: str, seed: int = 0, **config: Any) -> PreTrainedModel:
    """A small random HF model of ``family`` (2 layers, width 48-64, vocab 96 unless ``config`` overrides).

    Weights are drawn with a large scale (and norm weights around 1) so that slicing mistakes change the logits.
    """
    entry = FAMILIES[check_choice("family", family, FAMILIES)]
    values = {**entry.tiny_config, **config}
    torch.manual_seed(seed)
    model: PreTrainedModel = entry.hf_model(values)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if param.ndim == 1 and "norm" in name and name.endswith("weight"):
                param.copy_(1.0 + 0.2 * noise)
            else:
                param.copy_(noise * (0.5 / param.shape[-1] ** 0.5 if param.ndim == 2 else 0.1))
    return model.eval()


def tiny_tokenizer(vocab_size: int = 96) -> PreTrainedTokenizerBase:
    """A word-level tokenizer with ``vocab_size`` entries: ``<unk>``, ``<s>``, ``</s>``, then ``w3``, ``w4``, ..."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i for i in range(3, vocab_size)}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="</s>")


def tiny_space(directory: str | Path, family: str, seed: int = 0, dimensions: dict[str, Any] | None = None,
               **config: Any) -> SearchSpace:
    """Save :func:`tiny_model` and its tokenizer under ``directory/model`` and load a space over it.

    The space file ``directory/space.yaml`` has ``hf: <directory/model>``, the reference read from the model's
    config and, unless ``dimensions`` is given, every dimension searchable over all values the reference allows
    (even head sizes).
    """
    directory = Path(directory)
    model = tiny_model(family, seed, **config)
    model.save_pretrained(directory / "model")
    tiny_tokenizer(model.config.vocab_size).save_pretrained(directory / "model")
    ref = reference_from_config(family, model.config)
    if dimensions is None:
        dimensions = {
            "embed_dim": {"choice": sorted({ref["embed_dim"] // 2, 3 * ref["embed_dim"] // 4, ref["embed_dim"]})},
            "n_layers": {"int": {"low": 1, "high": ref["n_layers"]}},
            "n_heads": {"int": {"low": 1, "high": ref["n_heads"]}},
            "head_size": {"choice": list(range(2, ref["head_size"] + 1, 2))},
            "intermediate_size": {"int": {"low": 1, "high": ref["intermediate_size"]}},
        }
        if not family_entry(family).kv_follows_heads:
            dimensions["n_kv_groups"] = {"int": {"low": 1, "high": ref["n_kv_groups"]}}
    doc = {
        "name": f"tiny-{family}",
        "version": 1,
        "description": f"tiny random {family} model (tests)",
        "model": {"hf": str(directory / "model"), "family": family, "reference": ref},
        "dimensions": {k: dimensions[k] for k in DIMENSIONS if k in dimensions},
        "objectives": [{"name": "ppl", "minimize": True, "unit": "perplexity"},
                       {"name": "params", "minimize": True, "unit": "params"}],
    }
    path = directory / "space.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return load_space(path)
