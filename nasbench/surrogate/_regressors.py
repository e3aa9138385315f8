"""The candidate surrogate models: scikit-learn regressors that also give a predictive spread.

Every candidate answers ``predict_dist(X) -> (mean, std)`` on the model scale (log for log metrics), and
``predict_mean(X)`` when the spread is not needed (cheaper for the GP and the quantile models). The raw spread
is what the model knows (the trees' disagreement, the GP posterior, the quantile gap); :mod:`._fit` rescales it on
out-of-fold residuals so that mean +- 1.645 std is a 90% interval on data the model has not seen.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["CANDIDATES", "Z90", "make_regressor"]

Z90 = 1.6448536269514722
"""Standard-normal quantile of 0.95: mean +- Z90 * std covers 90%."""


class _Forest:
    """Random forest or extra trees; the spread is the standard deviation across trees.

    Prediction calls each fitted tree directly: the same numbers as ``predict`` of the ensemble without joblib's
    per-call overhead (0.3 ms instead of 5 ms for one row and 100 trees), which keeps single queries under 1 ms.
    """

    def __init__(self, kind: str, seed: int, n_trees: int = 64) -> None:
        from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor

        cls = ExtraTreesRegressor if kind == "extra-trees" else RandomForestRegressor
        self.model = cls(n_estimators=n_trees, min_samples_leaf=2, max_features=1.0, random_state=seed, n_jobs=1)

    def fit(self, x: np.ndarray, y: np.ndarray) -> "_Forest":
        self.model.fit(x.astype(np.float32), y)
        self.trees = [est.tree_ for est in self.model.estimators_]
        return self

    def predict_dist(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x32 = np.ascontiguousarray(x, dtype=np.float32)
        per_tree = np.empty((len(self.trees), len(x32)))
        for i, tree in enumerate(self.trees):
            per_tree[i] = tree.predict(x32)[:, 0]
        return per_tree.mean(axis=0), per_tree.std(axis=0)

    def predict_mean(self, x: np.ndarray) -> np.ndarray:
        return self.predict_dist(x)[0]


class _QuantileBoosting:
    """Gradient boosting fitted three times: the median and the 5% / 95% quantiles (the 90% interval)."""

    def __init__(self, seed: int) -> None:
        from sklearn.ensemble import GradientBoostingRegressor

        common: dict[str, Any] = dict(loss="quantile", n_estimators=150, max_depth=3, learning_rate=0.05,
                                      subsample=0.8, random_state=seed)
        self.models = [GradientBoostingRegressor(alpha=a, **common) for a in (0.05, 0.5, 0.95)]

    def fit(self, x: np.ndarray, y: np.ndarray) -> "_QuantileBoosting":
        for model in self.models:
            model.fit(x, y)
        # the init estimator of the quantile loss is a constant (the training quantile)
        self.intercepts = [float(np.ravel(m.init_.predict(x[:1]))[0]) for m in self.models]
        return self

    def _predict(self, k: int, x: np.ndarray) -> np.ndarray:
        """``models[k].predict(x)``: the same tree loop without sklearn's per-call input checks, which cost ten times
        more than the loop for a single row (tests compare the two)."""
        from sklearn.ensemble._gradient_boosting import predict_stages

        model = self.models[k]
        out = np.full((len(x), 1), self.intercepts[k])
        predict_stages(model.estimators_, np.ascontiguousarray(x, dtype=np.float32), model.learning_rate, out)
        return out[:, 0]

    def predict_dist(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        low, mid, high = (self._predict(k, x) for k in range(3))
        # quantile models are fitted separately and may cross; the gap's size is what carries the spread
        return mid, np.abs(high - low) / (2 * Z90)

    def predict_mean(self, x: np.ndarray) -> np.ndarray:
        return self._predict(1, x)


class _GaussianProcess:
    """A GP with an ARD Matern-5/2 kernel and a noise term on standardised inputs; only offered for small data."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def fit(self, x: np.ndarray, y: np.ndarray) -> "_GaussianProcess":
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        self.mu, self.sigma = x.mean(axis=0), x.std(axis=0) + 1e-12
        self.y_mu, self.y_sigma = float(y.mean()), float(y.std()) + 1e-12
        kernel = ConstantKernel(1.0) * Matern(length_scale=np.ones(x.shape[1]), nu=2.5) + WhiteKernel(0.1)
        self.model = GaussianProcessRegressor(kernel=kernel, normalize_y=False, n_restarts_optimizer=1,
                                              random_state=self.seed)
        y = (y - self.y_mu) / self.y_sigma
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model.fit((x - self.mu) / self.sigma, y)
        return self

    def predict_dist(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, std = self.model.predict((x - self.mu) / self.sigma, return_std=True)
        return mean * self.y_sigma + self.y_mu, std * self.y_sigma

    def predict_mean(self, x: np.ndarray) -> np.ndarray:
        """The posterior mean k(x, X) @ alpha of ``GaussianProcessRegressor.predict``, computed in chunks with
        in-place operations (3x faster on large batches, and without its per-call checks on small ones).

        k(x, X) is the fitted Constant * Matern(5/2) part: the white-noise term is zero between distinct inputs.
        """
        from scipy.spatial.distance import cdist

        product = self.model.kernel_.k1
        scale, length = float(product.k1.constant_value), np.asarray(product.k2.length_scale, dtype=np.float64)
        train = self.model.X_train_ / length
        alpha = np.ravel(self.model.alpha_)
        z = (np.asarray(x, dtype=np.float64) - self.mu) / self.sigma / length
        out = np.empty(len(z))
        for start in range(0, len(z), 2048):
            d = cdist(z[start:start + 2048], train)
            d *= np.sqrt(5.0)
            k = np.exp(-d)
            k *= 1.0 + d + d * d / 3.0
            out[start:start + 2048] = k @ alpha
        return out * scale * self.y_sigma + self.y_mu


class _MLP:
    """A small MLP on standardised inputs and target; it has no spread of its own, so its raw std is 1 and the
    calibration turns it into the out-of-fold residual scale (a homoscedastic interval)."""

    def __init__(self, seed: int) -> None:
        from sklearn.neural_network import MLPRegressor

        self.model = MLPRegressor(hidden_layer_sizes=(64, 64), alpha=1e-3, learning_rate_init=3e-3, max_iter=3000,
                                  n_iter_no_change=50, tol=1e-6, random_state=seed)

    def fit(self, x: np.ndarray, y: np.ndarray) -> "_MLP":
        import warnings

        from sklearn.exceptions import ConvergenceWarning

        self.mu, self.sigma = x.mean(axis=0), x.std(axis=0) + 1e-12
        self.y_mu, self.y_sigma = float(y.mean()), float(y.std()) + 1e-12
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model.fit((x - self.mu) / self.sigma, (y - self.y_mu) / self.y_sigma)
        return self

    def predict_dist(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.predict_mean(x), np.ones(len(x))

    def predict_mean(self, x: np.ndarray) -> np.ndarray:
        import sklearn

        # inputs are the project's own finite matrices: skip the checks that cost more than a one-row prediction
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            return self.model.predict((x - self.mu) / self.sigma) * self.y_sigma + self.y_mu


CANDIDATES: tuple[str, ...] = ("random-forest", "extra-trees", "quantile-boosting", "gp", "mlp")
"""Model names as they appear in fidelity cards."""

GP_MAX_ROWS = 1000
"""The GP is a candidate up to this many training rows (its fit is cubic in them)."""


def make_regressor(name: str, seed: int) -> Any:
    if name in ("random-forest", "extra-trees"):
        return _Forest(name, seed)
    if name == "quantile-boosting":
        return _QuantileBoosting(seed)
    if name == "gp":
        return _GaussianProcess(seed)
    if name == "mlp":
        return _MLP(seed)
    raise ValueError(f"unknown surrogate model {name!r}; known: {', '.join(CANDIDATES)}")
