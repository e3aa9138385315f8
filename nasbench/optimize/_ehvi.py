"""EHVI: Syne Tune 0.16's searcher with a usable reference point (kept apart because it imports botorch)."""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
from syne_tune.optimizer.schedulers.multiobjective.expected_hyper_volume_improvement import (
    ExpectedHyperVolumeImprovement,
)

from nasbench.optimize.discrete import DiscreteSpace, _fresh

__all__ = ["EHVISearcher"]

logger = logging.getLogger(__name__)


class EHVISearcher(ExpectedHyperVolumeImprovement):
    """Syne Tune 0.16's ``ExpectedHyperVolumeImprovement`` with a usable reference point and discrete candidates.

    0.16 negates the (minimised) metrics for BoTorch and then fixes the reference point at 2 in every objective, a
    point that no negated positive metric (perplexity, latency, params) dominates: the hypervolume improvement is
    then zero everywhere and the argmax arbitrary. This subclass keeps 0.16's GP (one ``SingleTaskGP`` per objective
    fitted by marginal likelihood, ``_make_gp``) and ``qLogExpectedHypervolumeImprovement``, but models the
    objectives normalised to [0, 1] by their observed range and puts the reference point at the observed worst plus
    10 % of the range (BoTorch's usual choice). The acquisition is evaluated on a candidate set instead of by gradient
    ascent on the one-hot relaxation: the unevaluated table rows in table mode, else ``num_raw_samples`` random
    configs. Marginal-likelihood fits happen every ``refit_every`` suggestions; in between, the last
    hyperparameters are reused with the new data (the fit is ~90 % of the cost). Observations are paired with their
    configs by trial id (0.16 pairs them by list position, which breaks with several workers). Runs in float64 (the
    runner sets ``torch.set_default_dtype`` around the run).
    """

    def __init__(self, config_space: dict[str, Any], candidates: Sequence[dict[str, Any]] | None = None,
                 num_init_random: int = 10, num_raw_samples: int = 256, mc_samples: int = 64,
                 max_num_observations: int | None = 100, refit_every: int = 5, noise_level: float = 1e-4,
                 random_seed: int | None = None, points_to_evaluate: list[dict] | None = None) -> None:
        super().__init__(config_space, points_to_evaluate=points_to_evaluate, num_init_random=num_init_random,
                         max_num_observations=max_num_observations, num_raw_samples=num_raw_samples,
                         mc_samples=mc_samples, noise_level=noise_level, optimization_strategy="random",
                         random_seed=random_seed)
        self.refit_every = max(1, refit_every)
        self._hyper: dict[str, Any] | None = None
        self._steps = 0
        self.space = DiscreteSpace(config_space)
        self.candidates = None if candidates is None else [{n: c[n] for n in self.space.names} for c in candidates]
        self.suggested: set[tuple] = set()

    def replace_last_suggestion(self, config: dict[str, Any]) -> None:
        """Table mode: the scheduler projected the last suggestion onto a profiled arch; model that arch."""
        last = len(self.trial_configs) - 1
        self.trial_configs[last] = {n: config[n] for n in self.space.names}
        self.suggested.add(self.space.key(config))

    def _get_random_config(self) -> dict[str, Any]:
        if self.candidates is not None:
            free = [c for c in self.candidates if self.space.key(c) not in self.suggested]
            if free:
                return dict(free[self.random_state.randint(len(free))])
        return _fresh(self.space, self.suggested, lambda: self.space.sample(self.random_state))

    def suggest(self) -> dict | None:
        config = super().suggest()
        if config is not None:
            self.suggested.add(self.space.key(config))
        return config

    def _sample_next_candidate(self) -> dict | None:
        import torch
        from botorch.acquisition.multi_objective import qLogExpectedHypervolumeImprovement
        from botorch.exceptions.errors import ModelFittingError
        from botorch.fit import fit_gpytorch_mll
        from botorch.sampling import SobolQMCNormalSampler
        from botorch.utils.multi_objective.box_decompositions import NondominatedPartitioning
        from gpytorch.mlls.sum_marginal_log_likelihood import SumMarginalLogLikelihood
        from linear_operator.utils.errors import NotPSDError

        ids = list(self.trial_observations)
        configs = [self.trial_configs[t] for t in ids]
        Y = np.asarray([self.trial_observations[t] for t in ids], dtype=float)
        if self.max_num_observations is not None and len(Y) > self.max_num_observations:
            keep = np.sort(self.random_state.permutation(len(Y))[: self.max_num_observations])
            configs, Y = [configs[i] for i in keep], Y[keep]
        lo, hi = Y.min(axis=0), Y.max(axis=0)
        # BoTorch maximises: negate the [0, 1]-normalised minimised metrics, so the worst observed value is -1.
        Yt = torch.tensor(-(Y - lo) / np.where(hi > lo, hi - lo, 1.0), dtype=torch.float64)
        X = torch.tensor(self.space.encode(configs), dtype=torch.float64)
        if self.candidates is not None:
            pool = [c for c in self.candidates if self.space.key(c) not in self.suggested]
        else:
            raw = self.space.sample_many(self.random_state, self.num_raw_samples)
            pool = list({self.space.key(c): c for c in raw if self.space.key(c) not in self.suggested}.values())
        if not pool:
            return self._get_random_config()
        try:
            gp = self._make_gp(X_tensor=X, Y_tensor=Yt)
            if self._hyper is None or self._steps % self.refit_every == 0:
                fit_gpytorch_mll(SumMarginalLogLikelihood(gp.likelihood, gp), max_attempts=1)
                # Keep only the kernel and mean hyperparameters: the rest depends on the training data.
                self._hyper = {k: v.clone() for k, v in gp.state_dict().items() if "raw_" in k}
            else:
                gp.load_state_dict(self._hyper, strict=False)
            self._steps += 1
            gp.eval()
            ref_point = torch.full((Yt.shape[1],), -1.1, dtype=torch.float64)
            sampler = SobolQMCNormalSampler(torch.Size([self.mc_samples]),
                                            seed=int(self.random_state.randint(2**31 - 1)))
            acq = qLogExpectedHypervolumeImprovement(
                model=gp, ref_point=ref_point, sampler=sampler,
                partitioning=NondominatedPartitioning(ref_point=ref_point, Y=Yt))
            with torch.no_grad():
                values = acq(torch.tensor(self.space.encode(pool), dtype=torch.float64)[:, None, :])
            return dict(pool[int(torch.argmax(values))])
        except (NotPSDError, ModelFittingError) as exc:
            logger.warning("EHVI: GP fit failed (%s); sampling at random", type(exc).__name__)
            return self._get_random_config()
