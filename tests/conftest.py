"""Shared fixtures: tiny search spaces written to tmp dirs, and the data directory the tests read."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SPACES = REPO / "spaces"
# a relative data directory (CI passes ../shared/data) would move with the tests that chdir into a tmp dir
if os.environ.get("NASBENCH_DATA_DIR"):
    os.environ["NASBENCH_DATA_DIR"] = str(Path(os.environ["NASBENCH_DATA_DIR"]).resolve())

TINY_LLAMA_REFERENCE = dict(n_layers=3, embed_dim=48, n_heads=6, n_kv_groups=2, head_size=8, intermediate_size=96,
                            vocab_size=100, tied_head=True)
TINY_NEOX_REFERENCE = dict(n_layers=3, embed_dim=48, n_heads=6, n_kv_groups=6, head_size=8, intermediate_size=96,
                           vocab_size=100, tied_head=False)


def tiny_space_doc(family: str = "llama", **overrides: Any) -> dict[str, Any]:
    """A small valid search-space document; ``overrides`` replace top-level keys."""
    if family == "llama":
        reference = dict(TINY_LLAMA_REFERENCE)
        dimensions: dict[str, Any] = {
            "embed_dim": {"choice": [16, 32, 48]},
            "n_layers": {"int": {"low": 1, "high": 3}},
            "n_heads": {"choice": [1, 2, 3, 4, 6]},
            "head_size": {"choice": [4, 6, 8]},
            "n_kv_groups": {"choice": [1, 2]},
            "intermediate_size": {"log_int": {"low": 8, "high": 96}},
        }
    else:
        reference = dict(TINY_NEOX_REFERENCE)
        dimensions = {
            "embed_dim": {"choice": [16, 32, 48]},
            "n_layers": {"int": {"low": 1, "high": 3}},
            "n_heads": {"choice": [2, 4, 6]},
            "head_size": 8,
            "intermediate_size": {"choice": [24, 48, 96]},
        }
    doc = {
        "name": f"tiny-{family}",
        "version": 1,
        "description": "tiny test space",
        "model": {"hf": "unused-in-these-tests", "family": family, "reference": reference},
        "dimensions": dimensions,
        "objectives": [{"name": "ppl", "minimize": True, "unit": "perplexity"}],
        "data": {"perplexity": {"kind": "text", "path": "wikitext-2-raw/wiki.test.raw",
                                "hf": "Salesforce/wikitext:wikitext-2-raw-v1@test"}},
    }
    doc.update(overrides)
    return doc


@pytest.fixture
def write_space(tmp_path: Path) -> Callable[..., Path]:
    """``write_space(doc, name="space.yaml")`` writes a YAML document (or raw text) and returns its path."""

    def write(doc: dict[str, Any] | str, name: str = "space.yaml") -> Path:
        path = tmp_path / name
        path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data directory: NASBENCH_DATA_DIR, else ../shared/data beside the repository."""
    path = Path(os.environ.get("NASBENCH_DATA_DIR", REPO.parent / "shared" / "data")).resolve()
    if not path.is_dir():
        pytest.fail(f"data directory not found: {path} (set NASBENCH_DATA_DIR)")
    return path


def make_tiny_with_data(tmp_path: Path, **model: Any) -> tuple[Any, Path]:
    """A tiny random llama space (nasbench.models.tiny_space; ``model``: its config overrides, e.g.
    ``num_hidden_layers``) with its own data directory: a calibration text and a WikiText-2 stand-in, both random
    words of the tiny tokenizer. Returns (space, data_dir)."""
    import numpy as np

    from nasbench.models import tiny_space
    from nasbench.space import load_space

    space = tiny_space(tmp_path, "llama", seed=2, **model)
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    for name in ("calib.txt", "wikitext-2-raw/wiki.test.raw"):
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_text(" ".join(f"w{i}" for i in rng.integers(3, 96, 3000)), encoding="utf-8")
    doc = yaml.safe_load(Path(space.path).read_text(encoding="utf-8"))
    doc["data"] = {"calibration": {"kind": "text", "path": "calib.txt"},
                   "perplexity": {"kind": "text", "path": "wikitext-2-raw/wiki.test.raw"}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    return load_space(tmp_path / "space.yaml"), data


@pytest.fixture
def tiny_with_data(tmp_path: Path) -> tuple[Any, Path]:
    """:func:`make_tiny_with_data` in the test's own directory."""
    return make_tiny_with_data(tmp_path)
