"""The models of one baseline run, built on demand: pruned (2:4, SliceGPT), cut from the importance-sorted model
(``sliced``), distilled alone (``sliced-recovered``) or re-allocated layer by layer (``dsa``); SliceGPT and DSA models
then distilled with a token budget when the config has one (``slicegpt-recovered``, ``dsa-recovered``)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from nasbench.baselines._config import BaselineConfig
from nasbench.baselines.methods import SLICED
from nasbench.baselines.prune import pruned_model
from nasbench.space import SearchSpace, arch_id
from nasbench.supernet.ref import SupernetRef

__all__ = ["Builder", "UNTRAINED"]

#: What the rows of a recovered baseline's model measured without its training say (shape-only rows: latency,
#: memory).
UNTRAINED = {"weights": "untrained: these rows depend on the model's shapes only, which training does not change"}


class Builder:
    """The models of one baseline, built on demand (the base model, the sorted model and the tokenizer load once)."""

    def __init__(self, space: SearchSpace, config: BaselineConfig, supernet: SupernetRef,
                 data_dir: Path | None, progress: bool, work_dir: str | Path | None, sid: str,
                 recover: Callable[..., Any] | None = None, recover_model: Callable[..., Any] | None = None) -> None:
        self.space, self.config, self.supernet, self.data_dir = space, config, supernet, data_dir
        self.recover = recover
        """``sliced-recovered``: the training stage's distillation of one arch alone (``recover_arch``)."""
        self.recover_model = recover_model
        """A recovered SliceGPT or DSA baseline: the training stage's distillation of a dense model
        (``recover_model``)."""
        self._teacher: Any = None
        self.progress = progress
        self.work = Path(work_dir or tempfile.mkdtemp(prefix="nasbench-baseline-")) / sid.replace(":", "_")
        self.seconds = 0.0
        """Pruning or training seconds of this run (all models)."""
        self.trained = False
        """This run trained a model (a recovered baseline's), so ``seconds`` holds its training."""
        self.source: dict[str, Any] = {}
        self._tokenizer: Any = None
        self._sorted_model: Any = None
        self._supernet: Any = None
        self._dsa_supernet: Any = None
        self._windows: Any = None
        self.searches: dict[str, Any] = {}
        """``dsa``: band arch_id -> its search record, for the searches of this run."""

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from nasbench.models import load_tokenizer

            self._tokenizer = load_tokenizer(self.space.model)
        return self._tokenizer

    def model(self, arch: dict[str, Any], aid: str, stored: dict[str, Any] | None = None, train: bool = True
              ) -> tuple[Any, Any, dict[str, Any], tuple[dict[str, Any], str, bool]]:
        """(float32 model, tokenizer, what its rows' extra should say about how it was built, (arch, arch_id, in the
        space) of the model: ``arch`` itself except for ``dsa``, whose search chooses it). ``stored``: a ``dsa``
        model's extra from its stored rows (``arch`` is then the chosen arch: rebuilt, not searched). ``train``
        False: a recovered baseline's model as pruned, untrained, for rows that depend on its shapes only."""
        unit = (arch, aid, True)
        if self.config.method not in SLICED:
            model, seconds = pruned_model(self.space, self.config, self.supernet, self.data_dir, self.progress,
                                     self.tokenizer)
            self.seconds += seconds
            return self._recovered(model, {}, (arch, aid, self.config.method != "slicegpt"), train)
        plain, importance = self._sorted()
        layers = {"layers": importance.layers_for(arch["n_layers"])} if importance and importance.layers else {}
        if self.config.method == "dsa":
            model, tokenizer, info, unit = self._dsa(arch, aid, stored, importance, layers)
            return self._recovered(model, info, unit, train)
        if self.config.method == "sliced" or not train:
            if self._supernet is None:
                from nasbench.supernet import Supernet

                self._supernet = Supernet(plain, self.space)  # made elastic in place: cut, never trained
            return (self._supernet.extract(arch, **layers).float().eval(), self.tokenizer,
                    {} if train or self.config.method == "sliced" else dict(UNTRAINED), unit)
        saved = self.work / aid
        if (saved / "recovery.json").is_file():  # trained by an earlier, interrupted run: measure it
            info = json.loads((saved / "recovery.json").read_text(encoding="utf-8"))
            return SupernetRef.at(saved).load(self.space, torch.float32).model, self.tokenizer, info, unit
        assert self.recover is not None  # run_baseline checks it before any model is built
        result = self.recover(self.space, plain, importance, arch, self.config.tokens,
                              data_dir=self.data_dir, tokenizer=self.tokenizer, progress=self.progress)
        self.seconds += result.seconds
        self.trained = True
        info = _training_info(result)
        saved.mkdir(parents=True, exist_ok=True)
        result.model.save_pretrained(saved)
        (saved / "recovery.json").write_text(json.dumps(info), encoding="utf-8")
        return result.model, self.tokenizer, info, unit

    def _recovered(self, model: Any, info: dict[str, Any], unit: tuple[dict[str, Any], str, bool], train: bool
                   ) -> tuple[Any, Any, dict[str, Any], tuple[dict[str, Any], str, bool]]:
        """``model`` as built, or, for a recovered SliceGPT / DSA baseline, distilled with the config's tokens from
        the space's full model (saved under the work directory, by the arch_id its rows carry, until they are all
        stored, so a rerun measures it instead of training again; ``train`` False: as built, said in its extra)."""
        if not (self.config.tokens and self.config.method != "sliced-recovered"):
            return model, self.tokenizer, info, unit
        if not train:
            return model, self.tokenizer, {**info, **UNTRAINED}, unit
        saved = self.work / unit[1]
        if (saved / "recovery.json").is_file():  # trained by an earlier, interrupted run: its weights on the rebuilt
            model.load_state_dict(torch.load(saved / "recovered.pt", weights_only=True))  # (deterministic) model
            trained = json.loads((saved / "recovery.json").read_text(encoding="utf-8"))
            return model.float().eval(), self.tokenizer, {**info, **trained}, unit
        assert self.recover_model is not None  # run_baseline checks it before any model is built
        if self._teacher is None:
            self._teacher = SupernetRef.pretrained().load(self.space, torch.float32).model.eval()
        result = self.recover_model(self.space, model, self._teacher, self.config.tokens, data_dir=self.data_dir,
                                    tokenizer=self.tokenizer, progress=self.progress)
        self.seconds += result.seconds
        self.trained = True
        trained = _training_info(result)
        saved.mkdir(parents=True, exist_ok=True)
        torch.save(result.model.state_dict(), saved / "recovered.pt")
        (saved / "recovery.json").write_text(json.dumps(trained), encoding="utf-8")
        return result.model, self.tokenizer, {**info, **trained}, unit

    def _dsa(self, arch: dict[str, Any], aid: str, stored: dict[str, Any] | None, importance: Any,
             layers: dict[str, Any]) -> tuple[Any, Any, dict[str, Any], tuple[dict[str, Any], str, bool]]:
        """The ``dsa`` model of one band arch: searched (:func:`nasbench.baselines.dsa.search`), or rebuilt from the
        chosen arch its stored rows name."""
        from nasbench.baselines.allocation import layer_scores
        from nasbench.baselines.dsa import dense_model, per_layer_space, search, uniform_arch

        if self._dsa_supernet is None:
            from nasbench.supernet import Supernet

            plain, _ = self._sorted()  # made elastic over the per-layer twin of the space: cut, never trained
            self._dsa_supernet = Supernet(plain, per_layer_space(self.space))
        if stored is not None:
            model = dense_model(self._dsa_supernet, arch, **layers).float().eval()
            return model, self.tokenizer, dict(stored), (arch, aid, uniform_arch(self.space, arch) is not None)
        if self._windows is None:
            from nasbench.importance import calibration_windows

            self._windows = calibration_windows(self.space, self.tokenizer, self.data_dir,
                                                self.config.calibration_tokens, self.config.calibration_seq_len)
        from tqdm.auto import tqdm

        with tqdm(total=len(set(self.config.alpha)) * len(set(self.config.beta)), unit="combo",
                  desc=f"{self.config.method_id} {aid}", disable=not self.progress) as bar:
            result, model = search(self._dsa_supernet, self.space, arch, layer_scores(importance, arch["n_layers"]),
                                   self._windows, float(self.config.target), alpha=self.config.alpha,
                                   beta=self.config.beta, layers=layers.get("layers"),
                                   batch_size=self.config.protocol.batch_size, device=self.config.protocol.device,
                                   progress=bar.update)
        self.seconds += result.seconds
        record = result.record()
        self.searches[aid] = record
        chosen = result.chosen.arch
        flat = uniform_arch(self.space, chosen)
        arch = flat if flat is not None else chosen
        uniform = next((c.calibration_ppl for c in result.combos if c.beta == 0 and c.calibration_ppl is not None),
                       None)
        info = {"band_arch_id": aid, "alpha": record["alpha"], "beta": record["beta"],
                "calibration_ppl": record["calibration_ppl"], "uniform_calibration_ppl": uniform, "search": record}
        return model, self.tokenizer, info, (arch, arch_id(arch), flat is not None)

    def done(self, aid: str) -> None:
        """Every row of ``aid`` is stored: its saved model is no longer needed."""
        import shutil

        shutil.rmtree(self.work / aid, ignore_errors=True)

    def _sorted(self) -> tuple[Any, Any]:
        """The importance-sorted pretrained model (float32, plain HF) and its importance, loaded once."""
        if self._sorted_model is None:
            loaded = self.supernet.load(self.space, torch.float32, merge=False)  # order only, no delta
            self._sorted_model = (loaded.model.eval(), loaded.importance)
            self.source = {"importance_scheme": getattr(loaded.importance, "scheme", None),
                           "layer_scheme": getattr(loaded.importance, "layer_scheme", None)}
        return self._sorted_model


def _training_info(result: Any) -> dict[str, Any]:
    """What a recovered model's rows say about its training (``extra``)."""
    return {"train_tokens": result.tokens, "train_steps": result.steps, "train_s": round(result.seconds, 1),
            "precision": result.precision, "final_kd_loss": result.final_loss}
