"""Pareto fronts, knee points and quality indicators, in plain numpy.

Every function takes an ``(n, m)`` matrix of objective values and one ``minimize`` flag per column, so minimised and
maximised objectives mix freely (``ppl`` and ``latency_ms`` go down, ``acc`` goes up). Internally everything is turned
into minimisation by negating the maximised columns once (:func:`to_minimization`).

Offline fronts (:func:`measured_front`) come from measured rows of a benchmark DB only, never from a surrogate: the
arch_id they name is a sub-network that was actually profiled, ready for ``nasbench export``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from nasbench.errors import NasBenchError

__all__ = [
    "to_minimization",
    "normalize",
    "non_dominated_mask",
    "non_dominated_ranks",
    "crowding_distance",
    "pareto_front",
    "knee_point",
    "hypervolume",
    "igd",
    "objective_directions",
    "MeasuredFront",
    "measured_front",
    "parse_filter",
    "plot_front",
]

# Metrics whose larger values are better; every other metric (ppl, latency_ms, params, flops, memory_mb, energy_j,
# cost_s) is minimised. Task metrics carry a suffix (``acc_arc_easy``), so the prefix decides.
_MAXIMIZED_PREFIXES = ("acc", "mc2")


def objective_directions(objectives: Sequence[str]) -> list[bool]:
    """``minimize`` flags for metric names (with or without the ``metric_`` prefix): accuracies are maximised."""
    flags = []
    for name in objectives:
        bare = name[len("metric_"):] if name.startswith("metric_") else name
        flags.append(not bare.startswith(_MAXIMIZED_PREFIXES))
    return flags


def _matrix(Y: Any, where: str) -> np.ndarray:
    Y = np.asarray(Y, dtype=float)
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2:
        raise NasBenchError(where, "objective values must be an (n, m) matrix", Y.shape)
    if not np.isfinite(Y).all():
        bad = Y[~np.isfinite(Y).all(axis=1)]
        raise NasBenchError(where, "objective values must be finite", bad[:3].tolist())
    return Y


def _flags(minimize: Sequence[bool] | bool, m: int, where: str) -> np.ndarray:
    if isinstance(minimize, (bool, np.bool_)):
        return np.full(m, bool(minimize))
    flags = np.asarray(list(minimize), dtype=bool)
    if flags.shape != (m,):
        raise NasBenchError(where, f"need one minimize flag per objective ({m})", list(minimize))
    return flags


def to_minimization(Y: Any, minimize: Sequence[bool] | bool = True, where: str = "pareto") -> np.ndarray:
    """A copy of ``Y`` with the maximised columns negated, so that smaller is better everywhere."""
    Y = _matrix(Y, where)
    sign = np.where(_flags(minimize, Y.shape[1], where), 1.0, -1.0)
    return Y * sign


def normalize(Y: Any, lower: Any = None, upper: Any = None) -> np.ndarray:
    """Scale each column to [0, 1] by ``lower``/``upper`` (default: the column's min/max).

    A column with ``upper == lower`` maps to 0 rather than dividing by zero: it carries no trade-off.
    """
    Y = _matrix(Y, "normalize")
    lo = Y.min(axis=0) if lower is None else np.asarray(lower, dtype=float)
    hi = Y.max(axis=0) if upper is None else np.asarray(upper, dtype=float)
    if lo.shape != (Y.shape[1],) or hi.shape != (Y.shape[1],):
        raise NasBenchError("normalize", f"bounds need one value per objective ({Y.shape[1]})",
                            (np.shape(lo), np.shape(hi)))
    if (hi < lo).any():
        raise NasBenchError("normalize", "upper bound below lower bound", (lo.tolist(), hi.tolist()))
    span = np.where(hi > lo, hi - lo, 1.0)
    return (Y - lo) / span


def _dominated_by_any(Y: np.ndarray) -> np.ndarray:
    """For minimisation: row i is dominated when some row is <= everywhere and < somewhere."""
    n = len(Y)
    dominated = np.zeros(n, dtype=bool)
    # Row-by-row against all rows keeps memory O(n m) for the few thousand rows a benchmark holds.
    for i in range(n):
        le = (Y <= Y[i]).all(axis=1)
        lt = (Y < Y[i]).any(axis=1)
        dominated[i] = bool((le & lt).any())
    return dominated


def non_dominated_mask(Y: Any, minimize: Sequence[bool] | bool = True) -> np.ndarray:
    """Boolean mask of the rows no other row dominates. Identical rows do not dominate each other: all are kept."""
    Ymin = to_minimization(Y, minimize, "non_dominated_mask")
    if len(Ymin) == 0:
        return np.zeros(0, dtype=bool)
    return ~_dominated_by_any(Ymin)


def non_dominated_ranks(Y: Any, minimize: Sequence[bool] | bool = True) -> np.ndarray:
    """Front index per row (0 = non-dominated, 1 = non-dominated once front 0 is removed, ...): NSGA-II's sort."""
    Ymin = to_minimization(Y, minimize, "non_dominated_ranks")
    ranks = np.full(len(Ymin), -1, dtype=int)
    remaining = np.arange(len(Ymin))
    rank = 0
    while len(remaining):
        front = ~_dominated_by_any(Ymin[remaining])
        ranks[remaining[front]] = rank
        remaining = remaining[~front]
        rank += 1
    return ranks


def crowding_distance(Y: Any) -> np.ndarray:
    """NSGA-II crowding distance of the rows of one front (extremes get ``inf``); larger means lonelier."""
    Y = _matrix(Y, "crowding_distance")
    n, m = Y.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(Y[:, j], kind="stable")
        span = Y[order[-1], j] - Y[order[0], j]
        distance[order[0]] = distance[order[-1]] = np.inf
        if span > 0:
            distance[order[1:-1]] += (Y[order[2:], j] - Y[order[:-2], j]) / span
    return distance


def pareto_front(Y: Any, minimize: Sequence[bool] | bool = True) -> np.ndarray:
    """Indices of the non-dominated rows, sorted by the first objective (best first), ties by row order."""
    Ymin = to_minimization(Y, minimize, "pareto_front")
    idx = np.flatnonzero(non_dominated_mask(Ymin, True))
    return idx[np.argsort(Ymin[idx, 0], kind="stable")]


def knee_point(Y: Any, minimize: Sequence[bool] | bool = True) -> int:
    """Row index of the knee of the front of ``Y``.

    The front is normalised to [0, 1] per objective (0 = best). With two objectives the knee is the front point
    farthest from the straight line through the two extreme points, on the side of the ideal point (the classic
    "maximum distance to the chord" knee). With three or more objectives extremes no longer define a unique
    hyperplane for small fronts, so the knee is the point closest (Euclidean) to the ideal point (0, ..., 0).
    Ties go to the lowest row index. A front of one point is its own knee.
    """
    Ymin = to_minimization(Y, minimize, "knee_point")
    if len(Ymin) == 0:
        raise NasBenchError("knee_point", "need at least one point", Ymin.shape)
    front = np.flatnonzero(non_dominated_mask(Ymin, True))
    if len(front) == 1:
        return int(front[0])
    F = normalize(Ymin[front])
    if F.shape[1] == 2:
        a = F[np.argmin(F[:, 0] + 1e-12 * F[:, 1])]  # best in objective 0 (ties: better in 1)
        b = F[np.argmin(F[:, 1] + 1e-12 * F[:, 0])]
        chord = b - a
        length = np.linalg.norm(chord)
        if length == 0:
            return int(front[0])
        # Signed distance to the chord, positive towards the ideal point (the origin after normalisation).
        normal = np.array([-chord[1], chord[0]]) / length
        if normal @ (np.zeros(2) - a) < 0:
            normal = -normal
        score = (F - a) @ normal
        return int(front[int(np.argmax(score))])
    return int(front[int(np.argmin(np.linalg.norm(F, axis=1)))])


def hypervolume(Y: Any, ref: Any, minimize: Sequence[bool] | bool = True) -> float:
    """Hypervolume dominated by ``Y`` and bounded by the reference point ``ref`` (pymoo's exact ``HV``).

    ``ref`` is in the same units and directions as ``Y`` (for a maximised objective it is a low value). Rows that
    do not strictly beat ``ref`` in every objective add nothing and are dropped before the library call.
    """
    from pymoo.indicators.hv import HV

    Ymin = to_minimization(Y, minimize, "hypervolume")
    m = Ymin.shape[1]
    ref_arr = np.asarray(ref, dtype=float).reshape(-1)
    if ref_arr.shape != (m,) or not np.isfinite(ref_arr).all():
        raise NasBenchError("hypervolume", f"reference point needs {m} finite values", np.asarray(ref).tolist())
    ref_min = ref_arr * np.where(_flags(minimize, m, "hypervolume"), 1.0, -1.0)
    inside = Ymin[(Ymin < ref_min).all(axis=1)]
    if len(inside) == 0:
        return 0.0
    return float(HV(ref_point=ref_min)(inside))


def igd(Y: Any, front: Any) -> float:
    """Inverted generational distance: mean over ``front`` points of the Euclidean distance to the nearest row of ``Y``.

    Direction-free (a distance), so normalise both with the same bounds first (:func:`normalize`) when the objectives
    have different units. 0 exactly when every front point is in ``Y``.
    """
    Y = _matrix(Y, "igd")
    F = _matrix(front, "igd")
    if len(F) == 0 or len(Y) == 0:
        raise NasBenchError("igd", "need at least one point and one front point", (len(Y), len(F)))
    if Y.shape[1] != F.shape[1]:
        raise NasBenchError("igd", "points and front need the same objectives", (Y.shape[1], F.shape[1]))
    d = np.sqrt(((F[:, None, :] - Y[None, :, :]) ** 2).sum(axis=2))
    return float(d.min(axis=1).mean())


# ------------------------------------------------------------------------------------------------- measured fronts
@dataclass(frozen=True)
class MeasuredFront:
    """The Pareto front of measured rows of one space."""

    objectives: tuple[str, ...]
    """Metric names without the ``metric_`` prefix, in column order."""
    minimize: tuple[bool, ...]
    rows: Any
    """pandas DataFrame of every candidate row that passed the filter (``arch_id``, ``hp_*``, ``metric_*``), with a
    boolean ``pareto`` column."""
    front: Any
    """The non-dominated rows only, sorted by the first objective, with a boolean ``knee`` column."""
    knee_arch_id: str
    """arch_id of the knee point: feed it to ``nasbench export``."""


def measured_front(db: str | Path, space: str, objectives: Sequence[str], where: str | None = None,
                   supernet_id: str | None = None, device: str | None = None) -> MeasuredFront:
    """Front over the measured archs of one (space, supernet) in ``db`` (read-only), optionally filtered.

    The rows are :meth:`nasbench.surrogate.Benchmark.measured`: measured values only, never a prediction (latency and
    memory, measured once on the dense model, are shared by every supernet; ``acc_avg`` is available). ``where`` is a
    filter over its columns (``"metric_latency_ms < 200 AND hp_n_layers >= 20"``, see :func:`parse_filter`): parsed
    by nasbench, its column names checked and its values bound as parameters, never pasted into SQL; it runs on an
    in-memory copy that cannot touch any file. Rows missing any objective are left out (never imputed).
    """
    import duckdb

    from nasbench.surrogate import Benchmark

    names = [o[len("metric_"):] if o.startswith("metric_") else o for o in objectives]
    if len(names) < 2:
        raise NasBenchError("--objectives", "a front needs at least two objectives", list(objectives))
    table = Benchmark.open(db, space, supernet_id, device=device, cache=None).measured()
    columns = [f"metric_{o}" for o in names]
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise NasBenchError("--objectives", f"metrics not measured here; known: "
                                            f"{', '.join(c[7:] for c in table.columns if c.startswith('metric_'))}",
                            ",".join(c[7:] for c in missing))
    condition = " AND ".join(f'"{c}" IS NOT NULL' for c in columns)
    params: list[Any] = []
    if where is not None:
        sql, params = parse_filter(where, list(table.columns))
        condition += f" AND ({sql})"
    from nasbench.store import SAFE_CONFIG

    con = duckdb.connect(":memory:", config=dict(SAFE_CONFIG))
    try:
        con.register("measured", table)
        try:
            df = con.execute(f"SELECT * FROM measured WHERE {condition} ORDER BY arch_id", params).df()
        except duckdb.Error as exc:  # e.g. a number compared with a string column
            raise NasBenchError("--where", "cannot be evaluated over the measured columns",
                                str(exc).splitlines()[0]) from None
    finally:
        con.close()
    if df.empty:
        raise NasBenchError("--where", "no measured rows left after the filter", where)
    minimize = objective_directions(names)
    Y = df[columns].to_numpy(dtype=float)
    mask = non_dominated_mask(Y, minimize)
    df = df.assign(pareto=mask)
    order = pareto_front(Y, minimize)
    # the knee is found on ln(ppl), as the comparison measures fronts: sub-network perplexities span orders of
    # magnitude and on a linear scale the knee would sit wherever the largest perplexity is
    from nasbench.optimize.methods import LOG_SCALE

    logged = np.array([o in LOG_SCALE and (Y[:, i] > 0).all() for i, o in enumerate(names)])
    knee = knee_point(np.where(logged, np.log(np.where(logged, Y, 1.0)), Y), minimize)
    front = df.iloc[order].assign(knee=lambda d: d.index == df.index[knee]).reset_index(drop=True)
    return MeasuredFront(tuple(names), tuple(minimize), df, front, str(df["arch_id"].iloc[knee]))


# ---------------------------------------------------------------------------------------------------- --where
_FILTER_MAX_CHARS = 1000
_FILTER_MAX_DEPTH = 16
_FILTER_TOKEN = re.compile(r"""\s*(?:
    (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | '(?P<string>(?:[^']|'')*)'
  | (?P<op><=|>=|<>|!=|==|=|<|>)
  | (?P<punct>[(),])
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
)""", re.VERBOSE)
_KEYWORDS = {"AND", "OR", "NOT", "IS", "NULL", "IN", "BETWEEN", "TRUE", "FALSE"}


def parse_filter(text: str, columns: Sequence[str]) -> tuple[str, list[Any]]:
    """A ``--where`` filter as (SQL with ``?`` placeholders, bound values).

    The grammar is small on purpose: comparisons ``<column> <op> <value>`` (op one of ``= == != <> < <= > >=``),
    ``<column> [NOT] BETWEEN <value> AND <value>``, ``<column> [NOT] IN (<value>, ...)``, ``<column> IS [NOT] NULL``,
    joined by ``AND``, ``OR``, ``NOT`` and parentheses. Columns must be among ``columns`` (quoted as identifiers);
    values are numbers, ``'strings'``, ``TRUE`` or ``FALSE`` and are bound, never pasted. Anything else (a second
    statement, a function call, a sub-query) is refused with the position of the first token that does not fit.
    """
    if not isinstance(text, str) or not text.strip():
        raise NasBenchError("--where", "must be a non-empty condition", text)
    if len(text) > _FILTER_MAX_CHARS:
        raise NasBenchError("--where", f"must be at most {_FILTER_MAX_CHARS} characters", len(text))
    tokens: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _FILTER_TOKEN.match(text, pos)
        if m is None:
            start = len(text) - len(text[pos:].lstrip())
            raise NasBenchError("--where", f"unexpected character at position {start} (the filter is not SQL: "
                                           f"columns, comparisons, AND/OR/NOT, parentheses)", text[start:start + 20])
        kind = m.lastgroup or ""
        value = m.group(kind)
        tokens.append((kind, value.upper() if kind == "word" and value.upper() in _KEYWORDS else value, m.start(kind)))
        pos = m.end()
    return _FilterParser(tokens, list(columns), text).parse()


class _FilterParser:
    """Recursive descent over the tokens of :func:`parse_filter`; depth-bounded, so no input can exhaust the stack."""

    def __init__(self, tokens: list[tuple[str, str, int]], columns: list[str], text: str) -> None:
        self.tokens, self.columns, self.text, self.i = tokens, columns, text, 0
        self.params: list[Any] = []

    def parse(self) -> tuple[str, list[Any]]:
        sql = self._or(0)
        if self.i < len(self.tokens):
            self._fail("expected AND, OR or the end of the condition")
        return sql, self.params

    def _peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _fail(self, rule: str) -> None:
        token = self._peek()
        where = f" at position {token[2]}" if token else " at the end"
        raise NasBenchError("--where", rule + where, token[1] if token else self.text[-20:])

    def _take(self, kind: str, value: str | None = None) -> bool:
        token = self._peek()
        if token is not None and token[0] == kind and (value is None or token[1] == value):
            self.i += 1
            return True
        return False

    def _or(self, depth: int) -> str:
        if depth > _FILTER_MAX_DEPTH:
            self._fail(f"nests deeper than {_FILTER_MAX_DEPTH} levels")
        parts = [self._and(depth)]
        while self._take("word", "OR"):
            parts.append(self._and(depth))
        return " OR ".join(parts)

    def _and(self, depth: int) -> str:
        parts = [self._not(depth)]
        while self._take("word", "AND"):
            parts.append(self._not(depth))
        return " AND ".join(parts)

    def _not(self, depth: int) -> str:
        if self._take("word", "NOT"):
            if depth + 1 > _FILTER_MAX_DEPTH:
                self._fail(f"nests deeper than {_FILTER_MAX_DEPTH} levels")
            return f"NOT ({self._not(depth + 1)})"
        if self._take("punct", "("):
            inner = self._or(depth + 1)
            if not self._take("punct", ")"):
                self._fail("expected ')'")
            return f"({inner})"
        return self._comparison()

    def _column(self) -> str:
        token = self._peek()
        if token is None or token[0] != "word" or token[1] in _KEYWORDS:
            self._fail("expected a column name (arch_id, hp_<dimension> or metric_<metric>)")
        name = token[1]
        if name not in self.columns:
            raise NasBenchError("--where", f"unknown column at position {token[2]}; known: "
                                           f"{', '.join(self.columns)}", name)
        self.i += 1
        return '"' + name + '"'

    def _value(self) -> str:
        token = self._peek()
        if token is None:
            self._fail("expected a value")
        kind, text, _ = token
        if kind == "number":
            value: Any = float(text) if any(c in text for c in ".eE") else int(text)
            if isinstance(value, float) and not math.isfinite(value):
                self._fail("numbers must be finite")
            if isinstance(value, int) and not -2**63 <= value < 2**63:
                self._fail("integers must fit in 64 bits")
        elif kind == "string":
            value = text.replace("''", "'")
        elif kind == "word" and text in ("TRUE", "FALSE"):
            value = text == "TRUE"
        else:
            self._fail("expected a number, a 'string', TRUE or FALSE")
        self.i += 1
        self.params.append(value)
        return "?"

    def _comparison(self) -> str:
        column = self._column()
        if self._take("word", "IS"):
            negate = self._take("word", "NOT")
            if not self._take("word", "NULL"):
                self._fail("expected NULL after IS")
            return f"{column} IS {'NOT ' if negate else ''}NULL"
        negate = self._take("word", "NOT")
        if self._take("word", "BETWEEN"):
            low = self._value()
            if not self._take("word", "AND"):
                self._fail("expected AND in BETWEEN")
            return f"{column} {'NOT ' if negate else ''}BETWEEN {low} AND {self._value()}"
        if self._take("word", "IN"):
            if not self._take("punct", "("):
                self._fail("expected '(' after IN")
            values = [self._value()]
            while self._take("punct", ","):
                values.append(self._value())
            if not self._take("punct", ")"):
                self._fail("expected ')'")
            return f"{column} {'NOT ' if negate else ''}IN ({', '.join(values)})"
        if negate:
            self._fail("expected BETWEEN or IN after NOT")
        token = self._peek()
        if token is None or token[0] != "op":
            self._fail("expected a comparison (= != <> < <= > >=), BETWEEN, IN or IS [NOT] NULL")
        self.i += 1
        op = {"==": "=", "!=": "<>"}.get(token[1], token[1])
        return f"{column} {op} {self._value()}"


def plot_front(result: MeasuredFront, out: str | Path, title: str | None = None) -> Path:
    """Scatter of all filtered rows, the front as a step line and the knee marked (first two objectives)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y = (f"metric_{o}" for o in result.objectives[:2])
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter(result.rows[x], result.rows[y], s=12, c="0.7", label="measured")
    ax.plot(result.front[x], result.front[y], "o-", ms=5, drawstyle="steps-post", label="Pareto front")
    knee = result.front[result.front["knee"]]
    ax.scatter(knee[x], knee[y], s=160, facecolors="none", edgecolors="red", linewidths=2,
               label=f"knee {result.knee_arch_id}")
    ax.set_xlabel(result.objectives[0])
    ax.set_ylabel(result.objectives[1])
    if result.objectives[1] == "ppl" or result.objectives[0] == "ppl":
        # Perplexities of compressed sub-networks span orders of magnitude.
        (ax.set_yscale if result.objectives[1] == "ppl" else ax.set_xscale)("log")
    ax.set_title(title or " vs ".join(result.objectives[:2]))
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
