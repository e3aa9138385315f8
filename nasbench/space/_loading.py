"""Loading a space: the YAML document (read and merged by :mod:`~nasbench.space._yaml_io`) checked key by key into a
:class:`~nasbench.space.SearchSpace`; every error names file:key, the rule and the value."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import yaml

from nasbench.errors import InvalidSpaceError, one_of
from nasbench.families import FAMILIES
from nasbench.metrics import OBJECTIVE_METRICS, TASK_METRICS, is_maximized
from nasbench.metrics import unit as metric_unit
from nasbench.space._searchspace import MAX_ENUMERATION, SearchSpace
from nasbench.space._yaml_io import MAX_FILE_BYTES, read_merged, yaml_mapping
from nasbench.space.schema import (DIMENSIONS, KINDS, PER_LAYER_DIMENSIONS, Constraints, DataSource, Dimension,
                                   ModelReference, ModelSpec, Objective)

__all__ = ["load_space", "parse_space", "METRICS"]

#: ``allocation`` (optional): the layer-wise allocation map of a per-layer space, read and validated by
#: :class:`nasbench.baselines.allocation.Allocation` (the space keeps it in its YAML text).
_TOP_KEYS = {"name", "version", "description", "include", "model", "dimensions", "constraints", "objectives", "data",
             "allocation"}
_REFERENCE_KEYS = {
    "n_layers", "embed_dim", "n_heads", "n_kv_groups", "head_size", "intermediate_size", "vocab_size", "tied_head",
    "attention_bias", "mlp_bias",
}
_DATA_KINDS = ("text", "instructions", "tasks")

_INT32_MAX = 2**31 - 1
"""DuckDB INTEGER: dimension columns, version."""
_INT64_MAX = 2**63 - 1
"""DuckDB BIGINT: params, min_params, max_params."""
#: Largest reference values nasbench accepts (far beyond today's LLMs; they keep per-layer lists, enumerations and
#: parameter counts bounded).
_REFERENCE_MAX = {"n_layers": 1024, "embed_dim": 1 << 20, "n_heads": 1024, "n_kv_groups": 1024, "head_size": 1 << 12,
                  "intermediate_size": 1 << 22, "vocab_size": 1 << 24}
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$")
#: Metrics an objective may name (the metric registry); task metrics may carry a task suffix (``acc_arc_easy``).
METRICS = OBJECTIVE_METRICS


# -------------------------------------------------------------------------------------------------------- loading
def load_space(path: str | Path) -> SearchSpace:
    """Read, merge (``include:``) and validate a search-space file; raise InvalidSpaceError with file:key on error."""
    path = Path(path)
    doc = read_merged(path)
    return _parse(doc, str(path))


def parse_space(text: str, where: str) -> SearchSpace:
    """A space from merged YAML text (what the store records), e.g. to rebuild a benchmark's space from its DB."""
    if not isinstance(text, str):
        raise InvalidSpaceError(where, "a search space is YAML text", type(text).__name__)
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise InvalidSpaceError(where, f"must be at most {MAX_FILE_BYTES:,} bytes", len(text))
    return _parse(yaml_mapping(text, where), where)


class _Reader:
    """Typed access to the YAML document; every error names file:key, the rule and the value."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, key: str, rule: str, got: Any = None, show_got: bool = True) -> InvalidSpaceError:
        return InvalidSpaceError(f"{self.file}:{key}", rule, got, show_got=show_got)

    def mapping(self, value: Any, key: str, allowed: set[str] | None = None) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, "must be a mapping", value)
        if allowed is not None:
            unknown = sorted(set(map(str, value)) - allowed)
            if unknown:
                raise self.fail(f"{key}.{unknown[0]}" if key else unknown[0],
                                f"unknown key; allowed: {', '.join(sorted(allowed))}", unknown[0])
        return value

    def integer(self, value: Any, key: str, minimum: int | None = 1, maximum: int = _INT32_MAX) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, "must be an integer", value)
        if minimum is not None and value < minimum:
            raise self.fail(key, f"must be >= {minimum}", value)
        if value > maximum:
            raise self.fail(key, f"must be <= {maximum:,}", value)
        return value

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, "must be a non-empty string", value)
        return value

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, "must be true or false", value)
        return value

    def strings(self, value: Any, key: str) -> tuple[str, ...]:
        items = value if isinstance(value, list) else [value]
        if not items:
            raise self.fail(key, "must not be empty", value)
        return tuple(self.string(v, f"{key}[{i}]") for i, v in enumerate(items))


def _parse(doc: dict[str, Any], file: str) -> SearchSpace:
    r = _Reader(file)
    r.mapping(doc, "", _TOP_KEYS - {"include"})
    for key in ("name", "version", "model", "dimensions"):
        if key not in doc:
            raise r.fail(key, "required key is missing", None, show_got=False)
    name = r.string(doc["name"], "name")
    if not _NAME_PATTERN.match(name) or ".." in name:
        raise r.fail("name", "may hold only letters, digits and _.+- (at most 100, no '..'): it names DB views and "
                             "cache folders", name)
    version = r.integer(doc["version"], "version")
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise r.fail("description", "must be a string", description)
    model = _parse_model(r, doc["model"])
    dimensions = _parse_dimensions(r, doc["dimensions"], model)
    constraints = _parse_constraints(r, doc.get("constraints") or {})
    objectives = _parse_objectives(r, doc.get("objectives") or [])
    data = _parse_data(r, doc.get("data") or {})
    text = yaml.safe_dump(doc, sort_keys=False)
    space = SearchSpace(name, version, description, model, dimensions, constraints, objectives, data, file, text)
    _check_satisfiable(r, space)
    return space


def _parse_model(r: _Reader, value: Any) -> ModelSpec:
    m = r.mapping(value, "model", {"gguf", "hf", "family", "reference"})
    family = m.get("family")
    if not isinstance(family, str) or family not in FAMILIES:
        raise r.fail("model.family", one_of(FAMILIES), family)
    rules = FAMILIES[family]
    if ("gguf" in m) == ("hf" in m):
        raise r.fail("model", "give exactly one source: gguf: or hf:", sorted(k for k in m if k in ("gguf", "hf")))
    gguf_package = gguf_file = hf = None
    if "gguf" in m:
        g = r.mapping(m["gguf"], "model.gguf", {"package", "file"})
        for key in ("package", "file"):
            if key not in g:
                raise r.fail(f"model.gguf.{key}", "required key is missing", None, show_got=False)
        gguf_package, gguf_file = r.string(g["package"], "model.gguf.package"), r.string(g["file"], "model.gguf.file")
    else:
        hf = r.string(m["hf"], "model.hf")
    if "reference" not in m:
        raise r.fail("model.reference", "required key is missing", None, show_got=False)
    ref = r.mapping(m["reference"], "model.reference", _REFERENCE_KEYS)
    values: dict[str, Any] = {}
    for key in ("n_layers", "embed_dim", "n_heads", "n_kv_groups", "head_size", "intermediate_size", "vocab_size"):
        if key not in ref:
            raise r.fail(f"model.reference.{key}", "required key is missing", None, show_got=False)
        values[key] = r.integer(ref[key], f"model.reference.{key}", maximum=_REFERENCE_MAX[key])
    if "tied_head" not in ref:
        raise r.fail("model.reference.tied_head", "required key is missing", None, show_got=False)
    values["tied_head"] = r.boolean(ref["tied_head"], "model.reference.tied_head")
    for key in ("attention_bias", "mlp_bias"):
        if key in ref:
            if key not in rules.reference_switches:
                owners = [f.name for f in FAMILIES.values() if key in f.reference_switches]
                raise r.fail(f"model.reference.{key}", f"only {' and '.join(owners)} models have this switch",
                             ref[key])
            values[key] = r.boolean(ref[key], f"model.reference.{key}")
    if values["n_heads"] % values["n_kv_groups"]:
        raise r.fail("model.reference.n_kv_groups", f"must divide n_heads={values['n_heads']}", values["n_kv_groups"])
    broken = rules.check_reference(values)
    if broken is not None:
        raise r.fail(*broken)
    return ModelSpec(family, ModelReference(**values), gguf_package, gguf_file, hf)


def _parse_dimensions(r: _Reader, value: Any, model: ModelSpec) -> dict[str, Dimension]:
    dims_doc = r.mapping(value, "dimensions", set(DIMENSIONS))
    ref = model.reference
    rules = FAMILIES[model.family]
    dims: dict[str, Dimension] = {}
    for name in DIMENSIONS:
        key = f"dimensions.{name}"
        if name == "n_kv_groups" and rules.kv_follows_heads:
            if name in dims_doc:
                raise r.fail(key, f"{rules.name} has no grouped-query attention; n_kv_groups follows n_heads, leave "
                                  f"it out", dims_doc[name])
            dims[name] = Dimension(name, "fixed", (ref.n_heads,))
            continue
        spec = dims_doc.get(name, getattr(ref, name))  # a dimension left out is fixed at the reference value
        dims[name] = _parse_dimension(r, name, spec, key)
        if dims[name].per_layer and name == "n_heads" and not rules.per_layer_heads:
            raise r.fail(f"{key}.per_layer", f"{rules.name} ties n_heads to embed_dim / head_size; it cannot vary by "
                                             f"layer", True)
        high = getattr(ref, name)
        if dims[name].high > high:
            raise r.fail(key, f"values must be <= the reference model's {name}={high}", dims[name].high)
    return dims


def _parse_dimension(r: _Reader, name: str, spec: Any, key: str) -> Dimension:
    if not isinstance(spec, dict):
        return Dimension(name, "fixed", (r.integer(spec, key),))
    spec = r.mapping(spec, key, {*KINDS, "per_layer"})
    per_layer = r.boolean(spec.get("per_layer", False), f"{key}.per_layer")
    if per_layer and name not in PER_LAYER_DIMENSIONS:
        raise r.fail(f"{key}.per_layer", f"only {', '.join(PER_LAYER_DIMENSIONS)} can vary by layer", True)
    kinds = [k for k in KINDS if k in spec]
    if len(kinds) != 1:
        raise r.fail(key, f"give exactly one of {', '.join(KINDS)} (or a plain integer for a fixed value)", kinds)
    kind = kinds[0]
    if kind == "choice":
        choices = spec["choice"]
        if not isinstance(choices, list):
            raise r.fail(f"{key}.choice", "must be a list of integers", choices)
        if not choices:
            raise r.fail(f"{key}.choice", "must not be empty", choices)
        values = tuple(r.integer(v, f"{key}.choice[{i}]") for i, v in enumerate(choices))
        if len(set(values)) != len(values):
            raise r.fail(f"{key}.choice", "values must be distinct", list(values))
        return Dimension(name, "choice", values, per_layer)
    bounds = r.mapping(spec[kind], f"{key}.{kind}", {"low", "high"})
    for b in ("low", "high"):
        if b not in bounds:
            raise r.fail(f"{key}.{kind}.{b}", "required key is missing", None, show_got=False)
    low, high = r.integer(bounds["low"], f"{key}.{kind}.low"), r.integer(bounds["high"], f"{key}.{kind}.high")
    if low > high:
        raise r.fail(f"{key}.{kind}", "low must be <= high", {"low": low, "high": high})
    return Dimension(name, kind, (low, high), per_layer)


def _parse_constraints(r: _Reader, value: Any) -> Constraints:
    c = r.mapping(value, "constraints", {"min_params", "max_params"})
    # null lifts a bound an included file sets
    low = (r.integer(c["min_params"], "constraints.min_params", maximum=_INT64_MAX)
           if c.get("min_params") is not None else None)
    high = (r.integer(c["max_params"], "constraints.max_params", maximum=_INT64_MAX)
            if c.get("max_params") is not None else None)
    if low is not None and high is not None and low > high:
        raise r.fail("constraints", "unsatisfiable: min_params must be <= max_params",
                     {"min_params": low, "max_params": high})
    return Constraints(low, high)


def _parse_objectives(r: _Reader, value: Any) -> tuple[Objective, ...]:
    if not isinstance(value, list):
        raise r.fail("objectives", "must be a list of {name, minimize, unit}", value)
    out = []
    for i, item in enumerate(value):
        key = f"objectives[{i}]"
        o = r.mapping(item, key, {"name", "minimize", "unit"})
        for k in ("name", "minimize", "unit"):
            if k not in o:
                raise r.fail(f"{key}.{k}", "required key is missing", None, show_got=False)
        name = r.string(o["name"], f"{key}.name")
        if not _known_metric(name):
            raise r.fail(f"{key}.name", f"unknown metric; known: {', '.join(METRICS)}, or {', '.join(TASK_METRICS)} "
                                        f"with an optional _<task> suffix", name)
        minimize = r.boolean(o["minimize"], f"{key}.minimize")
        if minimize == is_maximized(name):
            raise r.fail(f"{key}.minimize", f"{name} is {'maximized' if minimize else 'minimized'} everywhere in "
                                            f"nasbench", minimize)
        unit = r.string(o["unit"], f"{key}.unit")
        if metric_unit(name) and unit != metric_unit(name):
            raise r.fail(f"{key}.unit", f"{name} is measured in {metric_unit(name)} everywhere in nasbench", unit)
        out.append(Objective(name, minimize, unit))
    names = [o.name for o in out]
    if len(set(names)) != len(names):
        raise r.fail("objectives", "names must be distinct", names)
    return tuple(out)


def _parse_data(r: _Reader, value: Any) -> dict[str, DataSource]:
    sources = r.mapping(value, "data")
    out = {}
    for name, item in sources.items():
        key = f"data.{name}"
        s = r.mapping(item, key, {"kind", "path", "hf", "tasks", "skip_tokens"})
        kind = s.get("kind")
        if kind not in _DATA_KINDS:
            raise r.fail(f"{key}.kind", one_of(_DATA_KINDS), kind)
        paths = r.strings(s["path"], f"{key}.path") if "path" in s else ()
        hf = r.strings(s["hf"], f"{key}.hf") if "hf" in s else ()
        tasks = r.strings(s["tasks"], f"{key}.tasks") if "tasks" in s else ()
        if kind == "tasks" and not tasks:
            raise r.fail(f"{key}.tasks", "a tasks source lists its task names", None, show_got=False)
        for i, task in enumerate(tasks):
            if task not in _known_tasks():
                raise r.fail(f"{key}.tasks[{i}]", f"unknown task; known: {', '.join(sorted(_known_tasks()))}", task)
        for i, path in enumerate(paths):
            if not _inside_data_dir(path):
                raise r.fail(f"{key}.path" + (f"[{i}]" if len(paths) > 1 else ""),
                             "must be a relative path inside the data directory (no '..', no absolute path)", path)
        if kind != "tasks" and not paths:
            raise r.fail(f"{key}.path", "a text or instructions source needs a path in the data directory", None,
                         show_got=False)
        if hf and paths and len(hf) != len(paths):
            raise r.fail(f"{key}.hf", f"give one HF id per path ({len(paths)} paths)", list(hf))
        skip = s.get("skip_tokens", 0)
        if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
            raise r.fail(f"{key}.skip_tokens", "must be an integer >= 0", skip)
        if skip and kind != "text":
            raise r.fail(f"{key}.skip_tokens", "only a text source skips tokens", kind)
        out[str(name)] = DataSource(str(name), kind, paths, hf, tasks, skip)
    return out


def _check_satisfiable(r: _Reader, space: SearchSpace) -> None:
    small, large = space.smallest(), space.largest()  # raises when the structural rules cannot be met
    dims, ref = space.dimensions, space.reference
    if dims["n_heads"].kind == "choice":  # a listed head count that no kv grouping admits is a typo, not a choice
        for h in dims["n_heads"].values:
            ok, rule = space.model_family.head_count_possible(h, dims, ref)
            if not ok:
                raise r.fail("dimensions.n_heads.choice", rule, list(dims["n_heads"].values))
    c = space.constraints
    if c.max_params is not None and space.params(small) > c.max_params:
        raise r.fail("constraints.max_params",
                     f"unsatisfiable: the smallest arch already has {space.params(small)} params", c.max_params)
    if c.min_params is not None and space.params(large) < c.min_params:
        raise r.fail("constraints.min_params",
                     f"unsatisfiable: the largest arch has only {space.params(large)} params", c.min_params)
    if space.params(large) > _INT64_MAX:
        raise r.fail("model.reference", "the largest arch's parameter count must fit in 64 bits", space.params(large))
    if (c.min_params is not None or c.max_params is not None) and not space.per_layer \
            and space.cardinality() <= MAX_ENUMERATION * 5:
        # exact: enumerate every combination (vectorised) and ask whether any meets the structural rules and the
        # constraints; larger spaces are left to sampling, which gives up after a bounded run of misses
        if not _any_valid(space):
            raise r.fail("constraints", "unsatisfiable: no arch of the space has min_params <= params <= max_params",
                         {"min_params": c.min_params, "max_params": c.max_params})


def _any_valid(space: SearchSpace) -> bool:
    lists = [np.asarray(space.dimensions[d].candidates(), dtype=np.int64) for d in DIMENSIONS]
    grids = np.meshgrid(*lists, indexing="ij")
    matrix = np.stack([g.ravel() for g in grids], axis=1)
    return bool(space.valid_mask(matrix).any())


def _known_metric(name: str) -> bool:
    if name in METRICS or name in TASK_METRICS:
        return True
    return any(name.startswith(m + "_") and name[len(m) + 1:] in _known_tasks() for m in TASK_METRICS)


def _known_tasks() -> frozenset[str]:
    """The evaluation tasks nasbench ships (the lm-eval task YAMLs of ``nasbench/profile/tasks/``), read without
    importing the profiling stage."""
    global _TASKS
    if _TASKS is None:
        _TASKS = frozenset(p.stem for p in (Path(__file__).parent.parent / "profile" / "tasks").glob("*.yaml"))
    return _TASKS


_TASKS: frozenset[str] | None = None


def _inside_data_dir(path: str) -> bool:
    """A data path stays inside the data directory: relative, no ``..``, no drive, no home, no NUL."""
    if "\x00" in path or "\\" in path or path.startswith("~") or PureWindowsPath(path).drive:
        return False
    pure = PurePosixPath(path)
    return not pure.is_absolute() and ".." not in pure.parts and pure != PurePosixPath(".")
