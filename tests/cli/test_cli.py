"""The CLI: the interface later checks use, and one-line errors with exit code 2 for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nasbench.cli import main
from nasbench.space import arch_id, load_space

from conftest import REPO, SPACES, tiny_space_doc

DEFAULT = str(SPACES / "smollm2-135m.yaml")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("nasbench: error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_validate_every_shipped_space(capsys) -> None:
    code, out, _ = run(capsys, "space", "validate", *map(str, sorted(SPACES.glob("*.yaml"))))
    assert code == 0 and out.count("\nok  ") + out.startswith("ok  ") == len(list(SPACES.glob("*.yaml")))


def test_show_prints_dimensions_cardinality_and_params(capsys) -> None:
    code, out, _ = run(capsys, "space", "show", DEFAULT)
    space = load_space(DEFAULT)
    assert code == 0
    for name in space.dimensions:
        assert name in out
    assert f"{space.params(space.smallest()):,} .. {space.params(space.largest()):,}" in out
    assert "cardinality" in out


def test_sample_is_byte_identical_for_a_seed(capsys) -> None:
    first = run(capsys, "space", "sample", DEFAULT, "--n", "20", "--seed", "7")[1]
    second = run(capsys, "space", "sample", DEFAULT, "--n", "20", "--seed", "7")[1]
    other = run(capsys, "space", "sample", DEFAULT, "--n", "20", "--seed", "8")[1]
    assert first == second and first != other
    lines = [json.loads(line) for line in first.splitlines()]
    assert len(lines) == 20
    space = load_space(DEFAULT)
    for line in lines:
        assert set(line) == {"arch_id", "params", "arch"}
        assert line["arch_id"] == arch_id(line["arch"]) and line["params"] == space.params(line["arch"])


def test_sample_grid_and_db_then_sql(capsys, tmp_path) -> None:
    db = str(tmp_path / "b.duckdb")
    code, out, _ = run(capsys, "space", "sample", DEFAULT, "--n", "12", "--seed", "0", "--grid-params", "4",
                       "--grid-trials", "2000", "--db", db)
    assert code == 0 and len(out.splitlines()) == 12
    ids = {json.loads(line)["arch_id"] for line in out.splitlines()}
    code, out, _ = run(capsys, "sql", "SELECT arch_id FROM architectures ORDER BY arch_id", "--db", db,
                       "--format", "json")
    assert code == 0 and {json.loads(line)["arch_id"] for line in out.splitlines()} == ids
    code, out, _ = run(capsys, "sql", "SELECT count(*) AS n FROM wide_smollm2_135m", "--db", db, "--format", "csv")
    assert code == 0 and out.splitlines() == ["n", str(len(ids))]


@pytest.mark.parametrize("query", [
    "DELETE FROM architectures",
    "DROP TABLE measurements",
    "SELECT 1; INSERT INTO meta VALUES ('x', 'y')",
    "COPY architectures TO 'leak.csv'",
])
def test_sql_is_read_only(capsys, tmp_path, query) -> None:
    db = str(tmp_path / "b.duckdb")
    run(capsys, "space", "sample", DEFAULT, "--n", "3", "--db", db)
    code, _, err = run(capsys, "sql", query, "--db", db)
    assert_one_line_error(code, err, "QUERY", "read-only")
    code, out, _ = run(capsys, "sql", "SELECT count(*) AS n FROM architectures", "--db", db, "--format", "csv")
    assert out.splitlines() == ["n", "3"]


def test_sql_missing_db(capsys, tmp_path) -> None:
    code, _, err = run(capsys, "sql", "SELECT 1", "--db", str(tmp_path / "missing.duckdb"))
    assert_one_line_error(code, err, "missing.duckdb", "not found")


def test_sql_bad_query(capsys, tmp_path) -> None:
    db = str(tmp_path / "b.duckdb")
    run(capsys, "space", "sample", DEFAULT, "--n", "1", "--db", db)
    code, _, err = run(capsys, "sql", "SELECT nope FROM architectures", "--db", db)
    assert_one_line_error(code, err, "QUERY", "query failed")


BAD_DOCS = {
    "malformed YAML": ("name: x\ndimensions: {embed_dim: [1, 2\n", "malformed YAML"),
    "unknown key": (dict(tiny_space_doc(), colour="red"), ":colour: unknown key"),
    "wrong type": (dict(tiny_space_doc(), version="one"), ":version: must be an integer"),
    "empty choice": ("empty", ":dimensions.n_heads.choice: must not be empty"),
    "low > high": ("lowhigh", ":dimensions.n_layers.int: low must be <= high"),
    "unsatisfiable": (dict(tiny_space_doc(), constraints={"max_params": 100}), "unsatisfiable"),
}


@pytest.mark.parametrize("case", sorted(BAD_DOCS))
def test_bad_space_file_gives_one_line_and_exit_2(capsys, write_space, case) -> None:
    doc, fragment = BAD_DOCS[case]
    if doc == "empty":
        doc = tiny_space_doc()
        doc["dimensions"]["n_heads"] = {"choice": []}
    elif doc == "lowhigh":
        doc = tiny_space_doc()
        doc["dimensions"]["n_layers"] = {"int": {"low": 3, "high": 1}}
    path = write_space(doc)
    for verb in ("validate", "show", "sample"):
        code, out, err = run(capsys, "space", verb, str(path))
        assert_one_line_error(code, err, str(path), fragment)
        assert out == ""


def test_include_cycle_and_missing_file(capsys, write_space, tmp_path) -> None:
    a = write_space("include: b.yaml\n", "a.yaml")
    write_space("include: a.yaml\n", "b.yaml")
    code, _, err = run(capsys, "space", "validate", str(a))
    assert_one_line_error(code, err, "include cycle")
    code, _, err = run(capsys, "space", "validate", str(tmp_path / "nope.yaml"))
    assert_one_line_error(code, err, "nope.yaml", "file not found")


def test_bad_flags_give_one_line(capsys) -> None:
    code, _, err = run(capsys, "space", "sample", DEFAULT, "--n", "many")
    assert_one_line_error(code, err, "--n", "invalid int value")
    code, _, err = run(capsys, "frobnicate")
    assert_one_line_error(code, err, "invalid choice")
    code, _, err = run(capsys, "space", "sample", DEFAULT, "--n", "0")
    assert_one_line_error(code, err, "--n", "must be >= 1")


def test_console_script_runs_as_a_module() -> None:
    proc = subprocess.run([sys.executable, "-m", "nasbench", "space", "validate", DEFAULT], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "nasbench", "space", "show", "missing.yaml"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == "nasbench: error: missing.yaml: file not found " \
                                                           "(got 'missing.yaml')"


def test_validate_check_model_cross_checks_the_reference(capsys, tmp_path) -> None:
    import yaml

    from nasbench.models import tiny_space

    space = tiny_space(tmp_path, "llama", seed=0)
    code, out, err = run(capsys, "space", "validate", "--check-model", space.path)
    assert code == 0 and "reference matches the model config" in out, err
    doc = yaml.safe_load(open(space.path))
    doc["model"]["reference"]["intermediate_size"] += 8
    doc["dimensions"]["intermediate_size"] = {"int": {"low": 1, "high": doc["model"]["reference"]["intermediate_size"]}}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    code, _, err = run(capsys, "space", "validate", "--check-model", str(bad))
    assert_one_line_error(code, err, f"{bad}:model.reference.intermediate_size", "disagrees with the model")
    code, out, _ = run(capsys, "space", "validate", "--check-model", str(SPACES / "llama-3.1-8b.yaml"))
    assert code == 0 and "not available offline" in out


def test_tasks_left_out_are_the_spaces_eval_tasks(write_space) -> None:
    import argparse

    from nasbench.cli._common import normalize
    from nasbench.profile import ProfileConfig

    doc = tiny_space_doc()
    doc["data"]["eval"] = {"kind": "tasks", "tasks": ["boolq", "piqa"]}
    with_eval, without = str(write_space(doc)), str(write_space(tiny_space_doc(), "plain.yaml"))
    assert load_space(with_eval).eval_tasks == ("boolq", "piqa")
    for space, given, want in ((with_eval, None, "boolq,piqa"), (without, None, ",".join(ProfileConfig.tasks)),
                               (with_eval, "arc_easy", "arc_easy")):
        args = argparse.Namespace(verb="profile", space=space, tasks=given)
        normalize(args)
        assert args.tasks == want
    assert load_space(DEFAULT).eval_tasks[:2] == ("arc_easy", "arc_challenge")


#: Verb groups whose parser still imports torch (none now). The test fails once a group is light, so the list only
#: shrinks.
_TORCH_PARSERS: tuple[str, ...] = ()
_PARSER_WITHOUT_TORCH = """
import argparse, importlib.abc, sys
import nasbench.cli as cli
heavy = {{name: getattr(cli, name).add_verbs for name in {heavy!r}}}
for name in heavy:
    getattr(cli, name).add_verbs = lambda verbs: None
cli.build_parser()
print("torch" in sys.modules)
class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, _Blocked())
for name, add_verbs in heavy.items():
    try:
        add_verbs(argparse.ArgumentParser().add_subparsers())
        print("light:", name)
    except ImportError:
        pass
"""


def test_building_the_parser_imports_no_torch() -> None:
    """``nasbench --help`` and one-line usage errors stay fast: the parser reads names and defaults from light
    modules (train.config, profile.config, the importance schemes), the torch-heavy code loads when a verb runs."""
    done = subprocess.run([sys.executable, "-c", _PARSER_WITHOUT_TORCH.format(heavy=_TORCH_PARSERS)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["False"], done.stdout  # "light: <group>": drop it from _TORCH_PARSERS


def test_library_names_become_the_flags_of_the_verb_that_ran() -> None:
    from nasbench.cli import _as_flags, _spellings, build_parser
    from nasbench.errors import NasBenchError

    def shown(argv: list[str], where: str) -> str:
        parser = build_parser()
        return _as_flags(NasBenchError(where, "must hold", 1), _spellings(parser, parser.parse_args(argv))).line()

    profile = ["profile", DEFAULT]
    assert shown(profile, "ppl_tokens") == "--ppl-tokens: must hold (got 1)"  # a dest: its flag
    assert shown(profile, "archs[3].n_layers") == "--archs[3].n_layers: must hold (got 1)"
    assert shown(profile, "space") == "SPACE: must hold (got 1)"  # a positional: its metavar
    assert shown(profile, "supernet_id") == "--supernet: must hold (got 1)"  # not a dest: the table
    for other in ("data.perplexity", "spaces/x.yaml", "ppl_selection", "n_layers"):  # not an argument: as raised
        assert shown(profile, other) == f"{other}: must hold (got 1)"
    assert shown(["space", "sample", DEFAULT], "seed") == "--seed: must hold (got 1)"  # a verb of a verb group
    assert shown(["migrate", "x.duckdb"], "db") == "DB: must hold (got 1)"
    assert shown(["bench", "retest", "a", "b", "--space", "s", "--metrics", "m"], "db") == "DB: must hold (got 1)"
    assert shown(["pareto", DEFAULT], "db") == "--db: must hold (got 1)"
