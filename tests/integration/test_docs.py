"""The README and the documentation cannot drift from the code: their cheap examples run against the shipped DB and
print what the pages show, every `nasbench` command they show parses with its flags, the generated block is current,
the API pages list every public name, and no page speaks of how the project was developed."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
#: The pages whose examples are checked: the README and the site's own pages (docs/changelog.md and docs/smollm2-135m/
#: are links to CHANGELOG.md and the generated report, not pages of their own).
PAGES = [REPO / "README.md", *sorted(p for p in DOCS.glob("*.md") if not p.is_symlink())]
#: Commands cheap enough to run here (read a DB or compute from a space file), whose printed output a page may show.
CHEAP = (("sql",), ("bench", "retest"), ("cost",), ("bench", "latency-model"))
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def _blocks(page: Path) -> list[tuple[str, str]]:
    """(language, text) of every fenced code block, in order."""
    return [(m[1], m[2]) for m in FENCE.finditer(page.read_text(encoding="utf-8"))]


def _pairs(page: Path) -> list[tuple[str, str, str]]:
    """(language, code, shown output) for every code block followed directly by a ```text block."""
    blocks = _blocks(page)
    return [(lang, code, out) for (lang, code), (nxt, out) in zip(blocks, blocks[1:])
            if nxt == "text" and lang in ("bash", "python")]


def _run_cli(argv: list[str]) -> str:
    from nasbench.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    assert code == 0, f"nasbench {shlex.join(argv)} exited {code}"
    return out.getvalue()


def _example_ids() -> list[tuple[Path, int, str, str, str]]:
    return [(page, i, *pair) for page in PAGES for i, pair in enumerate(_pairs(page))]


@pytest.mark.parametrize("page, index, lang, code, shown", _example_ids(),
                         ids=lambda v: v.name if isinstance(v, Path) else (str(v) if isinstance(v, int) else ""))
def test_examples_print_what_the_page_shows(page, index, lang, code, shown, monkeypatch):
    monkeypatch.chdir(REPO)
    if lang == "python":
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"{page.name} example {index}", "exec"), {"__name__": "__docs__"})
        printed = out.getvalue()
    else:
        commands = _commands(code)
        assert len(commands) == 1 and any(tuple(commands[0][:len(c)]) == c for c in CHEAP), (
            f"{page.name}: only one cheap command ({CHEAP}) may show its output, not {code[:80]!r}")
        printed = _run_cli(commands[0])
    assert printed.rstrip("\n") == shown.rstrip("\n"), f"{page.name}, example {index}: the output changed"


# --------------------------------------------------------------------------------------------- commands and flags
_SEPARATORS = {"&&", "||", "|", ";", "&", "\n"}


def _uncommented(text: str) -> str:
    """The shell text without its comments (a `#` outside quotes that starts a word, up to the end of its line);
    line continuations joined."""
    out, quote, i = [], None, 0
    text = text.replace("\\\n", " ")
    while i < len(text):
        c = text[i]
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or text[i - 1].isspace()):
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _commands(text: str) -> list[list[str]]:
    """The `nasbench` invocations of a shell text (also inside "$( ... )" and after `-m nasbench`), as argv lists
    without the leading `nasbench`."""
    lex = shlex.shlex(_uncommented(text), posix=True, punctuation_chars="();<>|&\n")
    lex.whitespace = " \t\r"
    lex.whitespace_split = True
    found, segment = [], []
    for token in [*lex, "\n"]:
        for inner in re.findall(r"\$\(([^()]*)\)", token):
            found += _commands(inner)
        if set(token) <= set("();<>|&\n"):
            if "nasbench" in segment:
                start = segment.index("nasbench")
                if start == 0 or segment[start - 1] == "-m" or all("=" in t for t in segment[:start]):
                    found.append(segment[start + 1:])
            segment = []
        else:
            segment.append(token)
    return found


def _parser_for(argv: list[str]):
    """The (sub)parser of an invocation and the tokens after its verb(s)."""
    import argparse

    from nasbench.cli import build_parser

    parser = build_parser()
    while argv:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            break
        choices = subs[0].choices
        if argv[0] not in choices:
            if parser.prog == "nasbench":
                raise AssertionError(f"no verb {argv[0]!r}")
            break
        parser, argv = choices[argv[0]], argv[1:]
    return parser, argv


def _shown_commands() -> list[tuple[str, list[str]]]:
    out = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for lang, code in _blocks(page):
            if lang in ("bash", ""):
                out += [(f"{page.name}: {shlex.join(c[:2])}", c) for c in _commands(code)]
        # synopses in the prose: `nasbench verb ... --flag ...`
        for inline in re.findall(r"`(nasbench [^`]+)`", FENCE.sub("", text)):
            words = inline.split()
            verbs = [w for w in words[1:3] if re.fullmatch(r"[a-z][a-z-]*", w)]
            flags = [f for f in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", inline)]
            out.append((f"{page.name}: `{inline[:40]}`", verbs[:2] + flags))
    return out


def test_every_shown_command_names_real_verbs_and_flags():
    problems = []
    for where, argv in _shown_commands():
        if argv and argv[0] in ("--help", "-h"):
            continue
        try:
            parser, rest = _parser_for(argv)
        except AssertionError as exc:
            problems.append(f"{where}: {exc}")
            continue
        known = set(parser._option_string_actions)
        for token in rest:
            flag = token.split("=", 1)[0].strip("[]|")
            if flag.startswith("--") and flag not in known:
                problems.append(f"{where}: {parser.prog} has no {flag}")
    assert not problems, "\n".join(problems)


def test_help_lines_run():
    """`--help` of the verbs the README shows works without loading a model (the parser imports no torch)."""
    for argv in (["--help"], ["sql", "--help"], ["compare", "--help"], ["pareto", "--help"], ["run", "--help"]):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
            from nasbench.cli import main

            main(argv)
        assert done.value.code == 0 and out.getvalue().startswith("usage: nasbench")


# ------------------------------------------------------------------------------------------------ generated parts
def test_readme_glance_block_is_current(monkeypatch):
    from nasbench.report.glance import glance_section
    from nasbench.space import load_space

    monkeypatch.chdir(REPO)
    space = load_space("spaces/smollm2-135m.yaml")
    bands = {p.stem.rsplit("-", 1)[-1]: p for p in Path("results/bands").glob(f"{space.name}-[0-9]*.jsonl")}
    body = glance_section("results/smollm2-135m.duckdb", space, bands)
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- nasbench report: glance -->\n(.*?)<!-- /nasbench report: glance -->", text, re.S)
    assert block, "README.md has no glance block"
    assert block[1] == body, "README.md's glance block is stale: run the report command of docs/report.md"

def test_readme_exports_the_knee_pareto_prints(monkeypatch):
    monkeypatch.chdir(REPO)
    recipe = next(code for lang, code in _blocks(REPO / "README.md") if lang == "bash"
                  and code.startswith("nasbench pareto"))
    pareto, export = _commands(recipe)
    lines = [json.loads(x) for x in _run_cli([*pareto[:pareto.index("--plot")], "--format", "json"]).splitlines()]
    knee = [x["arch"] for x in lines if x["knee"]]
    assert export[0] == "export" and knee == [json.loads(export[export.index("--arch") + 1])], (
        "the README exports another arch than the knee")


def test_api_pages_list_every_public_name():
    problems = []
    for page in sorted((DOCS / "api").glob("*.md")):
        sections = re.split(r"^## `([\w.]+)`$", page.read_text(encoding="utf-8"), flags=re.M)
        for package, body in zip(sections[1::2], sections[2::2]):
            shown = {target.rsplit(".", 1)[-1] for target in re.findall(r"^::: ([\w.]+)$", body, re.M)}
            missing = [n for n in importlib.import_module(package).__all__ if n not in shown]
            if missing:
                problems.append(f"{page.name}: {package}: {', '.join(missing)}")
    assert not problems, "API pages lack public names:\n" + "\n".join(problems)


def test_version_and_changelog_agree():
    import nasbench

    version = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    latest = re.search(r"^## \[(\d+\.\d+\.\d+)\]", (REPO / "CHANGELOG.md").read_text(encoding="utf-8"), re.M)
    assert latest and latest[1] == version == nasbench.__version__


def test_readme_links_and_citation():
    from nasbench.cards import SEED_CITATION

    text = (REPO / "README.md").read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if not re.match(r"[a-z]+://", target):
            assert (REPO / target).exists(), f"README.md links to {target}, which does not exist"
    assert SEED_CITATION in text
    assert len(text.splitlines()) <= 300


def test_no_page_speaks_of_how_the_project_was_made():
    """The repository speaks of what it does and how to use it, not of numbered work periods or tickets (the words
    are split here so that this file does not match itself)."""
    pattern = re.compile(r"\b(?:sess" r"ion|iss" r"ue) \d|\(iss" r"ue", re.I)
    files = [REPO / "README.md", REPO / "CHANGELOG.md", REPO / "mkdocs.yml",
             *(p for p in DOCS.rglob("*") if p.is_file() and "smollm2-135m" not in p.parts and not p.is_symlink()),
             *(p for p in (REPO / "tools").rglob("*") if p.is_file() and "experiments" not in p.parts
               and p.suffix in (".py", ".sh", ".md")),
             *(REPO / "spaces").rglob("*.yaml")]
    hits = [f"{p.relative_to(REPO)}:{i}: {line.strip()}" for p in files
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert not hits, "\n".join(hits)
