"""Hostile-but-fair input: no SQL injection, no file access from SQL, no tracebacks, no hangs.

Every case here is one of the probe's findings or a generated malformed space; each must end in exit code 0 or in one
line ``nasbench: error: ...`` with exit code 2, change nothing it should not, and finish quickly.
"""

from __future__ import annotations

import copy
import json
import math
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest
import yaml

from nasbench.cli import main
from nasbench.space import arch_id, load_space
from nasbench.store import Measurement, Store

from conftest import REPO, SPACES, tiny_space_doc

DEFAULT = str(SPACES / "smollm2-135m.yaml")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str, *fragments: str) -> str:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nasbench: error: "), err
    assert len(lines[0]) < 600, lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


# ----------------------------------------------------------------------------------------------- a benchmark DB
@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> tuple[Path, str]:
    """12 archs with ppl and latency on one supernet: enough for pareto, fit and query."""
    space = load_space(DEFAULT)
    path = tmp_path_factory.mktemp("hostile") / "bench.duckdb"
    with Store(path) as store:
        store.add_space(space)
        for arch in space.sample(12, seed=1):
            a, p = arch_id(arch), space.params(arch) / 1e6
            store.add_results(space, arch, [
                Measurement(a, "pretrained", "ppl", float(np.exp(8 - p / 30)), "perplexity", device="cpu",
                            cost_s=1.0),
                Measurement(a, "pretrained", "latency_rel", (10 + p) / 100, "x full model", device="cpu", cost_s=0.5,
                            extra={"reference_ms": 100.0})])
    return path, space.name


def _rows(path: Path) -> int:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("SELECT count(*) FROM measurements").fetchone()[0]
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------- pareto --where
WHERE_ATTACKS = [
    "1=1) ; ATTACH '{db}' AS v; DELETE FROM v.measurements; SELECT * FROM measured WHERE (1=1",
    "metric_ppl > 0; COPY (SELECT 1) TO '{out}'",
    "metric_ppl > 0) UNION SELECT * FROM read_csv('/etc/passwd') --",
    "metric_ppl > (SELECT count(*) FROM glob('/*'))",
    "read_text('/etc/passwd') IS NOT NULL",
    "metric_ppl > 0 -- comment",
    "metric_ppl > 0 /* c */",
    "\"metric_ppl\" > 0",
    "metric_ppl > 1e999",
    "(" * 40 + "metric_ppl > 0" + ")" * 40,
    "NOT " * 40 + "metric_ppl > 0",
    "x" * 5000,
    "",
    "metric_ppl >",
    "nope > 1",
    "metric_ppl > 'a'",
]


@pytest.mark.parametrize("attack", WHERE_ATTACKS)
def test_pareto_where_is_parsed_never_pasted(capsys, bench, tmp_path, attack) -> None:
    path, space = bench
    before = _rows(path)
    out = tmp_path / "written.csv"
    code, _, err = run(capsys, "pareto", "--db", str(path), "--space", space,
                       "--where", attack.format(db=path, out=out))
    one_line_error(code, err, "--where")
    assert _rows(path) == before and not out.exists()


def test_pareto_where_filters_with_bound_values(capsys, bench) -> None:
    path, space = bench
    code, out, _ = run(capsys, "pareto", "--db", str(path), "--space", space, "--format", "json")
    everything = [json.loads(line) for line in out.splitlines()]
    cut = sorted(r["metric_latency_ms"] for r in everything)[len(everything) // 2]
    code, out, err = run(capsys, "pareto", "--db", str(path), "--space", space, "--format", "json", "--where",
                         f"metric_latency_ms <= {cut} AND (hp_n_layers BETWEEN 1 AND 99 OR arch_id IN ('x', 'y'))"
                         " AND metric_ppl IS NOT NULL AND NOT metric_ppl < 0")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows and all(r["metric_latency_ms"] <= cut for r in rows)


# ---------------------------------------------------------------------------------------------------------- sql
SQL_ATTACKS = [
    ("EXPLAIN ANALYZE COPY (SELECT 1 AS x) TO '{out}'", "QUERY"),
    ("SELECT * FROM read_text('/etc/passwd')", "QUERY"),
    ("SELECT * FROM read_csv('/etc/hosts')", "QUERY"),
    ("SELECT * FROM glob('/*')", "QUERY"),
    ("SELECT * FROM '/etc/passwd'", "QUERY"),
    ("IMPORT DATABASE '{dir}'", "QUERY"),  # DuckDB runs it as a PRAGMA: the connection's settings refuse it
    ("EXPORT DATABASE '{dir}/dump'", "read-only"),
    ("ATTACH '{db}' AS v", "read-only"),
    ("SET enable_external_access = true", "read-only"),
    ("PRAGMA enable_profiling", "QUERY"),
    ("INSTALL httpfs", "read-only"),
    ("LOAD httpfs", "read-only"),
    ("SELECT 1; SELECT 2", "exactly one statement"),
    ("", "empty"),
    ("   ;  ", "empty"),
    ("-- only a comment", "empty"),
    ("SELECT", "QUERY"),
]


@pytest.mark.parametrize("query,fragment", SQL_ATTACKS)
def test_sql_cannot_touch_files(capsys, bench, tmp_path, query, fragment) -> None:
    path, _ = bench
    before = _rows(path)
    out = tmp_path / "leak.csv"
    code, _, err = run(capsys, "sql", query.format(out=out, dir=tmp_path, db=path), "--db", str(path))
    one_line_error(code, err, fragment)
    assert not out.exists() and not (tmp_path / "dump").exists() and _rows(path) == before


# ------------------------------------------------------------------------------------------------ bad --db files
def _bad_db(kind: str, folder: Path) -> Path:
    path = folder / f"{kind}.duckdb"
    if kind == "zero-byte":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("hello, not a database\n")
    elif kind == "sqlite":
        con = sqlite3.connect(path)
        con.execute("CREATE TABLE t (x)")
        con.commit()
        con.close()
    elif kind in ("empty", "unrelated", "newer"):
        con = duckdb.connect(str(path))
        if kind == "unrelated":
            con.execute("CREATE TABLE t (x INTEGER)")
        if kind == "newer":
            con.execute("CREATE TABLE meta (key VARCHAR, value VARCHAR)")
            con.execute("INSERT INTO meta VALUES ('schema_version', '99')")
        con.close()
    elif kind == "truncated":
        path.write_bytes((REPO / "results" / "smollm2-135m.duckdb").read_bytes()[:5000])
    elif kind == "directory":
        path.mkdir()
    return path  # "missing": never created


BAD_DBS = {"zero-byte": "empty file", "text": "not a DuckDB database", "sqlite": "SQLite",
           "empty": "not a nasbench database", "unrelated": "not a nasbench database", "newer": "newer nasbench",
           "truncated": "cannot open", "directory": "not a regular file", "missing": "not found"}
DB_VERBS = {
    "query": ["query", "smollm2-135m", "--arch", "{}", "--no-cache", "--db"],
    "fit": ["fit", "--space", "smollm2-135m", "--no-cache", "--db"],
    "compare": ["compare", "smollm2-135m", "--no-cache", "--db"],
    "pareto": ["pareto", "--space", "smollm2-135m", "--db"],
    "sql": ["sql", "SELECT 1", "--db"],
    "merge": ["merge", "OUT"],
}


@pytest.mark.parametrize("verb", sorted(DB_VERBS))
@pytest.mark.parametrize("kind", sorted(BAD_DBS))
def test_bad_db_files_give_one_line(capsys, tmp_path, verb, kind) -> None:
    path = _bad_db(kind, tmp_path)
    argv = [str(tmp_path / "out.duckdb") if a == "OUT" else a for a in DB_VERBS[verb]]
    code, _, err = run(capsys, *argv, str(path))
    one_line_error(code, err, BAD_DBS[kind])


def test_a_db_held_by_a_writer_is_named_so(capsys, bench, tmp_path) -> None:
    path = tmp_path / "held.duckdb"
    path.write_bytes(bench[0].read_bytes())
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom nasbench.store import Store\ns = Store(sys.argv[1])\n"
                               "print('ready', flush=True)\ntime.sleep(60)", str(path)],
        stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "ready"
        code, _, err = run(capsys, "sql", "SELECT count(*) FROM measurements", "--db", str(path))
        one_line_error(code, err, "in use by a writer")
        code, _, err = run(capsys, "pareto", "--db", str(path), "--space", bench[1])
        one_line_error(code, err, "in use by a writer")
    finally:
        holder.kill()
        holder.wait()


# -------------------------------------------------------------------------------------------------------- flags
BAD_FLAGS = [
    (["space", "sample", DEFAULT, "--seed", "-1"], "--seed"),
    (["space", "sample", DEFAULT, "--grid-params", "3", "--grid-trials", "0"], "--grid-trials"),
    (["space", "sample", DEFAULT, "--grid-params", "0"], "--grid-params"),
    (["space", "sample", DEFAULT, "--n", str(2**40)], "--n"),
    (["profile", DEFAULT, "--grid-params", "0"], "--grid-params"),
    (["profile", DEFAULT, "--metrics", ","], "--metrics"),
    (["profile", DEFAULT, "--tasks", " , "], "--tasks"),
    (["profile", DEFAULT, "--seed", "-5"], "--seed"),
    (["profile", DEFAULT, "--latency-repeats", "0"], "--latency-repeats"),
    (["profile", DEFAULT, "--decode-tokens", "-1"], "--decode-tokens"),
    (["compare", "smollm2-135m", "--methods", ","], "--methods"),
    (["compare", "smollm2-135m", "--objectives", "ppl,ppl"], "--objectives"),
    (["compare", "smollm2-135m", "--max-sim-time", "nan"], "--max-sim-time"),
    (["compare", "smollm2-135m", "--max-sim-time", "-1"], "--max-sim-time"),
    (["compare", "smollm2-135m", "--max-sim-time", "inf"], "--max-sim-time"),
    (["compare", "smollm2-135m", "--workers", "0"], "--workers"),
    (["compare", "smollm2-135m", "--models", ","], "--models"),
    (["query", "smollm2-135m", "--arch", "{}", "--seed", "-1"], "--seed"),
    (["query", "smollm2-135m", "--arch", "{}", "--metrics", ",,"], "--metrics"),
    (["fit", "--space", "smollm2-135m", "--db", "x.duckdb", "--metrics", "ppl,ppl"], "--metrics"),
    (["importance", DEFAULT, "--out", "x", "--tokens", "0"], "--tokens"),
    (["bench", "rpd", DEFAULT, "--seed", "-2"], "--seed"),
    (["bench", "slicing", DEFAULT, "--batch", "0"], "--batch"),
    (["bench", "query", "--n-batch", "0"], "--n-batch"),
]


@pytest.mark.parametrize("argv,flag", BAD_FLAGS)
def test_bad_numeric_and_list_flags_give_one_line(capsys, argv, flag) -> None:
    code, out, err = run(capsys, *argv)
    one_line_error(code, err, flag)
    assert out == ""


# ---------------------------------------------------------------------------------------------- malformed spaces
def _doc(**overrides) -> dict:
    return tiny_space_doc(**overrides)


def _dims(**dims) -> dict:
    doc = _doc()
    doc["dimensions"].update(dims)
    return doc


def _ref(**ref) -> dict:
    doc = _doc()
    doc["model"]["reference"].update(ref)
    return doc


def _data(**source) -> dict:
    return _doc(data={"src": source})


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi"))

SPACE_CASES = {
    "not UTF-8": (b"name: \xff\xfe\n", "must be UTF-8"),
    "control character": ("name: a\x16b\n", "malformed YAML"),
    "deep nesting": ("name: " + "[" * 5000 + "]" * 5000 + "\n", "nests too deeply"),
    "deep mapping": ("name: " + "{a: " * 100 + "1" + "}" * 100 + "\n", "nests too deeply"),
    "alias bomb in name": (BOMB + "name: *i\n", "YAML nodes"),
    "alias bomb in version": (BOMB + "version: *i\n", "YAML nodes"),
    "alias bomb in description": (BOMB + "description: *i\n", "YAML nodes"),
    "alias bomb in constraints": (BOMB + "constraints: {min_params: *i}\n", "YAML nodes"),
    "huge file": ("description: " + "x" * (1 << 21) + "\n", "at most"),
    "duplicate key": ("name: a\nname: b\n", "duplicate key"),
    "duplicate nested key": (yaml.safe_dump(_doc()) + "version: 2\n", "duplicate key"),
    "empty document": ("", "YAML mapping"),
    "huge int range": (_dims(n_layers={"int": {"low": 1, "high": 3 * 10**9}}), "must be <="),
    "huge reference": (_ref(n_layers=10**30), "must be <="),
    "reference beyond DB int": (_ref(embed_dim=2**40), "must be <="),
    "huge version": (_doc(version=2**40), "version"),
    "huge constraint": (_doc(constraints={"min_params": 10**30}), "must be <="),
    "float dimension": (_dims(head_size=4.5), "must be an integer"),
    "unknown task": (_data(kind="tasks", tasks=["arc_easy", "rm -rf"]), "unknown task"),
    "unknown objective": (_doc(objectives=[{"name": "happiness", "minimize": True, "unit": "x"}]), "unknown metric"),
    "objective direction": (_doc(objectives=[{"name": "ppl", "minimize": False, "unit": "x"}]), "minimized"),
    "absolute data path": (_data(kind="text", path="/etc/passwd"), "inside the data directory"),
    "dotdot data path": (_data(kind="text", path="../../etc/passwd"), "inside the data directory"),
    "home data path": (_data(kind="text", path="~/.ssh/id_rsa"), "inside the data directory"),
    "bad name": (_doc(name="../../x"), ":name:"),
    # the tiny space's parameter counts jump from 60,720 to 61,152
    "no arch in the window": (_doc(constraints={"min_params": 60_800, "max_params": 61_000}), "unsatisfiable"),
}


@pytest.mark.parametrize("case", sorted(SPACE_CASES))
def test_malformed_space_files(capsys, tmp_path, case) -> None:
    doc, fragment = SPACE_CASES[case]
    path = tmp_path / "space.yaml"
    if isinstance(doc, bytes):
        path.write_bytes(doc)
    else:
        path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    for verb in ("validate", "show", "sample"):
        start = time.monotonic()
        code, out, err = run(capsys, "space", verb, str(path))
        one_line_error(code, err, fragment)
        assert time.monotonic() - start < 5, (case, verb)


def test_non_utf8_include(capsys, tmp_path) -> None:
    (tmp_path / "base.yaml").write_bytes(b"description: caf\xe9\n")
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(dict(_doc(), include="base.yaml")), encoding="utf-8")
    code, _, err = run(capsys, "space", "validate", str(path))
    one_line_error(code, err, "base.yaml", "must be UTF-8")


def test_per_layer_cardinality_beyond_a_float_is_shown(capsys, tmp_path) -> None:
    doc = _ref(n_layers=1000)
    doc["dimensions"]["n_layers"] = {"int": {"low": 1, "high": 1000}}
    doc["dimensions"]["intermediate_size"] = {"int": {"low": 8, "high": 96}, "per_layer": True}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    code, out, err = run(capsys, "space", "show", str(path))
    assert code == 0, err
    digits = int(math.log10(load_space(path).cardinality()))  # about 89^1000 per-layer combinations
    assert digits > 1900 and f"e+{digits} (dimension combinations" in out


def test_sample_gives_up_on_constraints_that_admit_almost_nothing(tmp_path) -> None:
    """A per-layer space is too large to enumerate at validation: sampling gives up after a bounded run of misses."""
    doc = _doc(constraints={"min_params": 1})
    doc["dimensions"]["intermediate_size"] = {"log_int": {"low": 8, "high": 96}, "per_layer": True}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    space = load_space(path)
    target = space.params(space.largest()) - 1  # only archs one param short of the largest: none exist
    object.__setattr__(space.constraints, "min_params", target)
    object.__setattr__(space.constraints, "max_params", target)
    start = time.monotonic()
    with pytest.raises(Exception, match="admit .almost. no arch"):
        space.sample(3, seed=0)
    assert time.monotonic() - start < 30


def test_task_registry_is_the_shipped_task_files() -> None:
    from nasbench.profile.accuracy import TASKS
    from nasbench.space import _known_tasks

    assert _known_tasks() == set(TASKS)


# ---------------------------------------------------------------------------------------------------- the fuzzer
HOSTILE_VALUES = [None, True, -1, 0, 2**31, 10**30, -(10**30), 1.5, float("nan"), float("inf"), "", "x" * 300,
                  "../../etc/passwd", "/etc/passwd", [], [1, 2], [[[]]], {}, {"low": 5}, {"choice": []},
                  {"int": {"low": 3, "high": 1}}, {"choice": [0, -1]}, {"log_int": {"low": 0, "high": 8}}, "1e9",
                  {"per_layer": True}, {"choice": [10**12]}]


def _leaves(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, (*path, i))
    yield path


def _set(doc, path, value):
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


def _delete(doc, path):
    for key in path[:-1]:
        doc = doc[key]
    del doc[path[-1]]


def malformed_spaces(n: int, seed: int = 0) -> list[bytes]:
    """``n`` generated malformed (or merely odd) space files, from three valid seeds (tiny llama, tiny gpt_neox,
    the shipped SmolLM2 space merged): structural mutations of the document, then text- and byte-level ones."""
    rng = random.Random(seed)
    seeds = [tiny_space_doc("llama"), tiny_space_doc("gpt_neox"), yaml.safe_load(load_space(DEFAULT).yaml_text)]
    out = []
    for i in range(n):
        doc = copy.deepcopy(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            paths = [p for p in _leaves(doc) if p]
            path = rng.choice(paths)
            action = rng.random()
            try:
                if action < 0.55:
                    _set(doc, path, copy.deepcopy(rng.choice(HOSTILE_VALUES)))
                elif action < 0.75:
                    _delete(doc, path)
                elif action < 0.85:
                    _set(doc, (*path[:-1], rng.choice(["colour", "per_layer", "include", "choice", "int"])),
                         rng.choice(HOSTILE_VALUES))
                else:
                    value = doc
                    for key in path:
                        value = value[key]
                    if isinstance(value, int) and not isinstance(value, bool):
                        _set(doc, path, rng.choice([value * 1000, -value, value + 1, value // 7]))
            except (TypeError, KeyError, IndexError):
                pass
        text = yaml.safe_dump(doc, sort_keys=False).encode()
        kind = i % 10
        if kind == 7:  # truncate
            text = text[: rng.randint(0, len(text))]
        elif kind == 8:  # corrupt bytes
            data = bytearray(text)
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            text = bytes(data)
        elif kind == 9:  # duplicate a line (duplicate keys), or splice an alias bomb in
            lines = text.splitlines(keepends=True)
            if rng.random() < 0.5:
                j = rng.randrange(len(lines))
                lines.insert(j, lines[j])
                text = b"".join(lines)
            else:
                text = BOMB.encode() + text.replace(b"description:", b"description: *i\nx-description:", 1)
        out.append(text)
    return out


FUZZ_CASES = 300


def test_fuzz_malformed_spaces(capsys, tmp_path) -> None:
    """Every generated file validates (exit 0) or fails with one line (exit 2); valid ones also show and sample;
    nothing raises, nothing takes more than a few seconds."""
    outcomes = {"ok": 0, "error": 0}
    slowest = 0.0
    for i, text in enumerate(malformed_spaces(FUZZ_CASES)):
        path = tmp_path / f"fuzz{i}.yaml"
        path.write_bytes(text)
        for verb in ("validate", "show", "sample"):
            start = time.monotonic()
            code = main(["space", verb, str(path)] + (["--n", "2"] if verb == "sample" else []))
            elapsed = time.monotonic() - start
            slowest = max(slowest, elapsed)
            out, err = capsys.readouterr()
            if code == 0:
                assert err == "", (i, verb, err)
            else:
                one_line_error(code, err)
            assert elapsed < 10, (i, verb, elapsed)
            if verb == "validate":
                outcomes["ok" if code == 0 else "error"] += 1
                if code:
                    break
    print(f"fuzz: {FUZZ_CASES} files, {outcomes}, slowest call {slowest:.2f}s")
    assert outcomes["error"] > FUZZ_CASES // 2  # the generator does produce malformed files
