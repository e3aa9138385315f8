"""What every verb group of the CLI shares: the one-line-error parser, arch parsing, comma lists, common flags."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any, NoReturn

from nasbench.errors import NasBenchError

EXIT_USAGE = 2
DATA_DIR_HELP = "data directory (default: NASBENCH_DATA_DIR)"
#: ``--supernet`` means the same in every verb: a supernet id as stored in the DB (``pretrained`` is the base model),
#: or a trained supernet directory / packed artifact (``results/supernets/<id>``) that names one.
SUPERNET_HELP = ("a supernet id (`pretrained`: the base model) or a trained directory / packed artifact "
                 "(results/supernets/<id>) that resolves to one")
SPACE_HELP = "a space YAML file or a space name (a file spaces/<name>.yaml, or a space stored in the DB)"
#: Verbs that read a benchmark DB: a space name is looked up there first (the YAML it was measured with), then in
#: ``spaces/``; their ``--db`` defaults to the space's benchmark, :func:`benchmark_db`.
DB_VERBS = ("fit", "query", "compare", "pareto", "supernets", "bench query", "bench compare")
#: Where a space name finds its file, ``<dir>/<name>.yaml``: the working directory's spaces/, then the one beside the
#: installed package (a source checkout).
SPACES_DIRS = (Path("spaces"), Path(__file__).resolve().parents[2] / "spaces")


def defaults_of(function: Any) -> dict[str, Any]:
    """The keyword defaults of the function a verb calls: the flags' defaults are read here, never typed again."""
    import inspect

    return {name: p.default for name, p in inspect.signature(function).parameters.items()
            if p.default is not inspect.Parameter.empty}


def given(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The flags among ``names`` that were given: the rest take the called function's defaults."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def add_supernet_flag(p: argparse.ArgumentParser, default_note: str) -> None:
    """``--supernet``, the same words in every verb."""
    p.add_argument("--supernet", metavar="SUPERNET", help=f"{SUPERNET_HELP} ({default_note})")


def add_space_positional(p: argparse.ArgumentParser, default: str | None = None) -> None:
    """SPACE as a positional (``--space`` stays accepted, hidden: the earlier spelling of these verbs)."""
    note = f" (default {default})" if default else ""
    p.add_argument("space", metavar="SPACE", nargs="?", help=SPACE_HELP + note)
    p.add_argument("--space", dest="space_option", help=argparse.SUPPRESS)
    p.set_defaults(space_fallback=default)


def normalize(args: argparse.Namespace) -> None:
    """One meaning per flag after parsing: ``--space`` joins SPACE, ``--supernet`` becomes a
    :class:`~nasbench.supernet.SupernetRef` (None when not given: each verb has its default), ``--tasks`` left out
    becomes the space's evaluation tasks."""
    if hasattr(args, "space_option"):
        option, fallback = args.__dict__.pop("space_option"), args.__dict__.pop("space_fallback", None)
        if option is not None and args.space is not None and option != args.space:
            raise NasBenchError("--space", "give SPACE once (positional or --space, not both)", option)
        args.space = args.space or option or fallback
        if args.space is None:
            raise NasBenchError("SPACE", f"is required: {SPACE_HELP}", None, show_got=False)
    verb = args.verb if args.verb != "bench" else f"bench {getattr(args, 'what', '')}"
    for name in ("space", "path", "paths", "spaces"):  # every SPACE argument: a file or a name
        value = getattr(args, name, None)
        if value is None or (name == "path" and args.verb != "space") or (name == "space" and verb == "bench retest"):
            continue
        if isinstance(value, list):
            setattr(args, name, [space_path(v) for v in value])
        elif verb == "export" and getattr(args, "db", None) and space_file(value) is None \
                and not Path(value).is_file():
            continue  # a space the DB holds: export reads its YAML there
        elif verb not in DB_VERBS:
            setattr(args, name, space_path(value))
        elif getattr(args, "db", "") is None:
            args.db = str(benchmark_db(value))
    if getattr(args, "supernet", None) is not None:
        from nasbench.supernet.ref import SupernetRef

        args.supernet = SupernetRef.resolve(args.supernet)
    if "tasks" in vars(args) and args.tasks is None and getattr(args, "space", None) is not None:
        args.tasks = ",".join(default_tasks(args.space))


def stored(supernet: Any) -> str | None:
    """The id a DB verb reads rows of: the given reference's (None: the verb's default, the DB's main supernet)."""
    return None if supernet is None else supernet.id


def default_tasks(space: str) -> list[str]:
    """``--tasks`` not given: the tasks of the space's ``data.eval`` source, else ``ProfileConfig``'s."""
    from nasbench.profile.config import ProfileConfig
    from nasbench.space import load_space

    return list(load_space(space).eval_tasks or ProfileConfig.tasks)


def space_path(value: str) -> str:
    """A SPACE argument as a file: a path stays; a name becomes ``spaces/<name>.yaml`` (:data:`SPACES_DIRS`)."""
    if Path(value).is_file() or str(value).endswith((".yaml", ".yml")):
        return str(value)
    found = space_file(value)
    if found is None:
        names = sorted({p.stem for d in SPACES_DIRS if d.is_dir() for p in d.glob("*.yaml")})
        raise NasBenchError("SPACE", f"neither a file nor the name of a space in spaces/ (one of {', '.join(names)})",
                            value)
    return str(found)


def space_file(name: str) -> Path | None:
    """``spaces/<name>.yaml`` where one exists (:data:`SPACES_DIRS`, in order), else None."""
    if "/" in name or "\\" in name or not name or name.startswith("."):
        return None
    for folder in SPACES_DIRS:
        if (folder / f"{name}.yaml").is_file():
            return folder / f"{name}.yaml"
    return None


def space_name(value: str) -> str:
    """The name of a SPACE argument: a file's ``name:``, or the name as given."""
    if Path(value).is_file():
        from nasbench.space import load_space

        return load_space(value).name
    return value


def benchmark_db(space: str) -> Path:
    """The benchmark DB of a space, ``results/<space name>.duckdb`` (the shipped ``results/smollm2-135m.duckdb``):
    the default ``--db`` of the verbs that read one."""
    return Path("results") / f"{space_name(space)}.duckdb"


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump), like every other error of the CLI, that keeps how the user
    spells each argument (:attr:`spellings`) and its verbs (:attr:`verbs`): the library raises in its own words (a
    function argument, a config field), the CLI's error names what the user typed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.spellings: dict[str, str] = {}
        """Each argument's ``dest`` -> its flag (the first long option string) or, for a positional, its metavar."""
        self.verbs: Any = None
        """The sub-parsers action of this parser's verbs, if it has any."""
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        flags = [s for s in action.option_strings if s.startswith("--")] or action.option_strings
        metavar = action.metavar if isinstance(action.metavar, str) else action.dest
        self.spellings.setdefault(action.dest, flags[0] if flags else metavar)
        return action

    def add_subparsers(self, **kwargs: Any) -> Any:
        self.verbs = super().add_subparsers(**kwargs)
        return self.verbs

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


class UsageError(Exception):
    pass


def csv_list(text: str | None) -> list[str] | None:
    """A comma-list flag as its items (blanks dropped); None stays None."""
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def positive(flag: str, value: int) -> None:
    if value < 1:
        raise NasBenchError(flag, "must be >= 1", value)


def number(value: Any) -> Any:
    value = float(value)
    if math.isnan(value):
        return None
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def parse_arch(text: str) -> dict[str, Any]:
    """``--arch``: the ``arch`` object printed by ``space sample``, a whole sample line, or ``@file`` holding either."""
    from nasbench.space.archs import parse_arch_line

    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise NasBenchError("--arch", "file not found", str(path))
        text = path.read_text(encoding="utf-8")
    return parse_arch_line(text, "--arch")


def read_arch_lines(path: str | None, flag: str = "--archs") -> list[dict[str, Any]]:
    """``--archs FILE``: one arch per line (an arch object or a `space sample` line); none without a file."""
    from nasbench.space.archs import read_arch_file

    if path is None:
        return []
    if not Path(path).is_file():
        raise NasBenchError(flag, "file not found", path)
    return read_arch_file(path)

