"""Fit one metric's surrogate: choose the model by cross-validation, calibrate its interval, write its fidelity card.

The procedure, per (space, supernet, metric):

1. hold out ``test_fraction`` of the measured archs (seeded); the card's figures come from them only;
2. on the rest, every candidate gets k-fold out-of-fold predictions; the one with the best Kendall tau wins (an
   optimizer only ever compares configs, so ranking is what a surrogate must get right; ties go to the lower MSE);
3. the winner's out-of-fold residuals set the interval scale: mean +- 1.645 * scale * raw_std covers 90% of them;
4. the winner is refitted on the train split and scored on the held-out archs (tau, rho, R2, MAE on the model's
   scale, coverage of the 90% interval); with other supernets in the DB, a model fitted on their rows alone predicts
   this supernet's archs (leave-one-strategy-out tau);
5. the winner is refitted on every measured arch (:func:`refit_surrogate`): that is the surrogate; the cache
   keeps steps 1-4's outcome as JSON and repeats step 5 on load.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nasbench.stats import spearman
from nasbench.surrogate._regressors import CANDIDATES, GP_MAX_ROWS, Z90, make_regressor

__all__ = ["FidelityCard", "Surrogate", "fit_surrogate", "refit_surrogate", "MIN_ROWS"]

MIN_ROWS = 10
"""Fewer measured archs than this cannot be split into train, CV folds and a test set."""


@dataclass
class FidelityCard:
    """How far one surrogate can be trusted, measured on archs it was not fitted on."""

    space: str
    supernet_id: str
    metric: str
    model: str
    """The candidate chosen by cross-validation."""
    transform: str
    """``log`` or ``identity``: the scale the model works on (and ``r2`` / ``mae`` are reported on)."""
    n_train: int
    n_test: int
    kendall_tau: float
    spearman_rho: float
    r2: float
    mae: float
    coverage_90: float
    """Share of held-out values inside the predicted 90% interval (0.9 is calibrated)."""
    loso_kendall_tau: float | None
    """Kendall tau on this supernet's archs of a model fitted on the other supernets only (None: no others)."""
    loso_n: int | None
    cv: dict[str, float] = field(default_factory=dict)
    """Out-of-fold Kendall tau of every candidate (the selection)."""
    data_hash: str = ""


@dataclass
class Surrogate:
    """A fitted surrogate of one metric: predictions with calibrated spread, and a model of the measuring cost."""

    space: str
    supernet_id: str
    metric: str
    transform: str
    model_name: str
    regressor: Any
    scale: float
    """Calibration factor applied to the regressor's raw spread."""
    cost_regressor: Any | None
    """Predicts log(seconds) to measure this metric (None: the DB holds no costs for it)."""
    cost_median: float
    card: FidelityCard

    def predict_dist(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) on the model's scale; mean +- 1.645 std is the calibrated 90% interval."""
        mean, raw = self.regressor.predict_dist(x)
        return mean, np.maximum(raw, 0.0) * self.scale

    def predict(self, x: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Point predictions (the predictive median) in the metric's units; with ``rng``, one draw from the
        predictive distribution instead."""
        if rng is None:
            return _inverse(self.regressor.predict_mean(x), self.transform)
        mean, std = self.predict_dist(x)
        return _inverse(mean + std * rng.standard_normal(len(mean)), self.transform)

    def interval(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, std = self.predict_dist(x)
        return _inverse(mean - Z90 * std, self.transform), _inverse(mean + Z90 * std, self.transform)

    def predict_cost(self, x: np.ndarray) -> np.ndarray:
        if self.cost_regressor is None:
            return np.full(len(x), self.cost_median)
        return np.exp(self.cost_regressor.predict_mean(x))


def fit_surrogate(x: np.ndarray, y: np.ndarray, cost: np.ndarray, *, space: str, supernet: str, metric: str,
                  transform: str, data_hash: str, others: tuple[np.ndarray, np.ndarray] | None = None,
                  candidates: tuple[str, ...] = CANDIDATES, folds: int = 5, test_fraction: float = 0.2,
                  seed: int = 0) -> Surrogate:
    """Select, calibrate, score and refit (see the module docstring). ``x``: encoded archs; ``y``: values in the
    metric's units; ``cost``: seconds per measurement (NaN where unknown); ``others``: (x, y) of the same metric on
    other supernets, for the leave-one-strategy-out figure."""
    n = len(y)
    if n < MIN_ROWS:
        raise ValueError(f"{metric}: a surrogate needs at least {MIN_ROWS} measured archs, got {n}")
    z = _forward(y, transform)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_test = max(2, int(round(test_fraction * n)))
    test, train = order[:n_test], order[n_test:]
    usable = tuple(c for c in candidates if c != "gp" or len(train) <= GP_MAX_ROWS)
    cv_tau, cv_mse, oof = {}, {}, {}
    for name in usable:
        mean, std = _out_of_fold(name, x[train], z[train], folds, seed)
        cv_tau[name], cv_mse[name] = _kendall(z[train], mean), float(np.mean((mean - z[train]) ** 2))
        oof[name] = (mean, std)
    best = max(usable, key=lambda c: (np.nan_to_num(cv_tau[c], nan=-2.0), -cv_mse[c]))
    scale = _calibration(z[train], *oof[best])

    held_out = make_regressor(best, seed).fit(x[train], z[train])
    mean, raw = held_out.predict_dist(x[test])
    std = np.maximum(raw, 0.0) * scale
    inside = (z[test] >= mean - Z90 * std) & (z[test] <= mean + Z90 * std)
    loso_tau, loso_n = None, None
    if others is not None and len(others[1]) >= MIN_ROWS:
        ox, oy = others
        if best == "gp" and len(oy) > GP_MAX_ROWS:  # a GP chosen on few rows would factor a matrix of all others'
            keep = np.sort(rng.permutation(len(oy))[:GP_MAX_ROWS])
            ox, oy = ox[keep], oy[keep]
        transfer = make_regressor(best, seed).fit(ox, _forward(oy, transform))
        loso_tau, loso_n = _kendall(z, transfer.predict_dist(x)[0]), int(len(z))
    card = FidelityCard(space=space, supernet_id=supernet, metric=metric, model=best, transform=transform,
                        n_train=int(len(train)), n_test=int(n_test), kendall_tau=_kendall(z[test], mean),
                        spearman_rho=spearman(z[test], mean), r2=_r2(z[test], mean),
                        mae=float(np.mean(np.abs(z[test] - mean))), coverage_90=float(inside.mean()),
                        loso_kendall_tau=loso_tau, loso_n=loso_n,
                        cv={c: round(float(v), 4) for c, v in cv_tau.items()}, data_hash=data_hash)

    return refit_surrogate(x, y, cost, card=card, scale=scale, seed=seed)


def refit_surrogate(x: np.ndarray, y: np.ndarray, cost: np.ndarray, *, card: FidelityCard, scale: float,
                    seed: int = 0) -> Surrogate:
    """Step 5 alone: fit the model the card names on every measured arch (and the cost model).

    Seeded and deterministic, so the cache stores only the selection (card, calibration scale: plain JSON) and
    rebuilds the surrogate from the DB's rows with this function instead of unpickling a fitted model.
    """
    final = make_regressor(card.model, seed).fit(x, _forward(y, card.transform))
    known = np.isfinite(cost) & (cost > 0)
    cost_model = None
    if known.sum() >= MIN_ROWS:
        cost_model = make_regressor("extra-trees", seed).fit(x[known], np.log(cost[known]))
    cost_median = float(np.median(cost[known])) if known.any() else 0.0
    return Surrogate(space=card.space, supernet_id=card.supernet_id, metric=card.metric, transform=card.transform,
                     model_name=card.model, regressor=final, scale=scale, cost_regressor=cost_model,
                     cost_median=cost_median, card=card)


# ------------------------------------------------------------------------------------------------------- helpers
def _forward(y: np.ndarray, transform: str) -> np.ndarray:
    return np.log(y) if transform == "log" else np.asarray(y, dtype=np.float64)


def _inverse(z: np.ndarray, transform: str) -> np.ndarray:
    return np.exp(z) if transform == "log" else z


def _out_of_fold(name: str, x: np.ndarray, z: np.ndarray, folds: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import KFold

    mean, std = np.empty(len(z)), np.empty(len(z))
    for fit_idx, val_idx in KFold(n_splits=min(folds, len(z)), shuffle=True, random_state=seed).split(x):
        model = make_regressor(name, seed).fit(x[fit_idx], z[fit_idx])
        mean[val_idx], std[val_idx] = model.predict_dist(x[val_idx])
    return mean, std


def _calibration(z: np.ndarray, mean: np.ndarray, raw_std: np.ndarray) -> float:
    """The factor that makes mean +- Z90 * factor * raw_std cover 90% of out-of-fold residuals."""
    floor = 1e-6 * max(float(np.std(z)), 1e-12)
    ratio = np.abs(z - mean) / np.maximum(raw_std, floor)
    return float(max(np.quantile(ratio, 0.9) / Z90, 1e-12))


def _kendall(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import kendalltau

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(kendalltau(a, b).statistic)


def _r2(a: np.ndarray, b: np.ndarray) -> float:
    total = float(np.sum((a - a.mean()) ** 2))
    return float("nan") if total == 0 else 1.0 - float(np.sum((a - b) ** 2)) / total
