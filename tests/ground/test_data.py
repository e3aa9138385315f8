"""nasbench.data: the data directory, local files of a source, text and instruction readers, the online fallback."""

from __future__ import annotations

import hashlib
import json

import pytest

from nasbench import data
from nasbench.errors import DataError
from nasbench.space import DataSource

WIKI_TEST = DataSource("perplexity", "text", ("wikitext-2-raw/wiki.test.raw",),
                       ("Salesforce/wikitext:wikitext-2-raw-v1@test",))
WIKI_TEST_SHA256 = "173c87a53759e0201f33e0ccf978e510c2042d7f2cb78229d9a50d79b9e7dd08"  # shared/data/README.md



# ------------------------------------------------------------------------------------------------ data directory
def test_data_dir_flag_wins_over_env(tmp_path, monkeypatch):
    (tmp_path / "flag").mkdir()
    (tmp_path / "env").mkdir()
    monkeypatch.setenv("NASBENCH_DATA_DIR", str(tmp_path / "env"))
    assert data.data_dir(str(tmp_path / "flag")) == (tmp_path / "flag").resolve()
    assert data.data_dir() == (tmp_path / "env").resolve()
    monkeypatch.delenv("NASBENCH_DATA_DIR")
    assert data.data_dir() is None
    monkeypatch.setenv("NASBENCH_DATA_DIR", "")
    assert data.data_dir() is None


def test_data_dir_missing_names_flag_or_env_and_path(tmp_path, monkeypatch):
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match=r"^data_dir: the data directory does not exist") as e:
        data.data_dir(str(missing))
    assert str(missing) in str(e.value)
    monkeypatch.setenv("NASBENCH_DATA_DIR", str(missing))
    with pytest.raises(DataError, match=r"^NASBENCH_DATA_DIR: the data directory does not exist") as e:
        data.data_dir()
    assert str(missing) in str(e.value)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="^data_dir: must be a directory"):
        data.data_dir(tmp_path / "file")


# --------------------------------------------------------------------------------------------------------- resolve
def test_resolve_lists_files_in_order(shared_data):
    mix = DataSource("calibration", "text", ("wikitext-2-raw/wiki.valid.raw", "corpus/tinystories_valid_subset.txt"))
    assert data.resolve(mix, shared_data) == [shared_data / p for p in mix.paths]


def test_resolve_missing_file_names_path_and_hf_id(tmp_path):
    with pytest.raises(DataError) as e:
        data.resolve(WIKI_TEST, tmp_path)
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path}/wikitext-2-raw/wiki.test.raw: file not found")
    assert "Salesforce/wikitext:wikitext-2-raw-v1@test" in msg
    no_hf = DataSource("x", "text", ("a.txt",))
    with pytest.raises(DataError, match="declares no HF id"):
        data.resolve(no_hf, tmp_path)


def test_resolve_rejects_tasks_and_no_data_dir(tmp_path):
    with pytest.raises(DataError, match="data.eval: a tasks source names evaluation tasks"):
        data.resolve(DataSource("eval", "tasks", tasks=("arc_easy",)), tmp_path)
    with pytest.raises(DataError, match="need a data directory"):
        data.resolve(WIKI_TEST, None)


# ------------------------------------------------------------------------------------------------------------ text
def test_read_text_wikitext_test_is_the_canonical_file(shared_data):
    text = data.read_text(WIKI_TEST, shared_data)
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == WIKI_TEST_SHA256
    assert text.startswith(" \n = Robert Boulter = \n \n Robert Boulter is an English film")
    assert text.count("\n") == 4358


def test_read_text_joins_files_in_order(shared_data):
    mix = DataSource("calibration", "text", ("wikitext-2-raw/wiki.valid.raw", "corpus/tinystories_valid_subset.txt"))
    text = data.read_text(mix, shared_data)
    valid = (shared_data / mix.paths[0]).read_text(encoding="utf-8")
    stories = (shared_data / mix.paths[1]).read_text(encoding="utf-8")
    assert valid.endswith("\n")
    assert text == valid + stories
    assert text.startswith(" \n = Homarus gammarus = \n")


def test_read_text_puts_a_newline_between_files_only_where_missing(tmp_path):
    (tmp_path / "a.txt").write_text("no newline at end", encoding="utf-8")
    (tmp_path / "b.txt").write_text("second\n", encoding="utf-8")
    (tmp_path / "c.txt").write_text("third", encoding="utf-8")
    src = DataSource("t", "text", ("a.txt", "b.txt", "c.txt"))
    assert data.read_text(src, tmp_path) == "no newline at end\nsecond\nthird"


def test_read_text_errors(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"ok \xff\xfe")
    with pytest.raises(DataError, match=r"bad.txt: must be UTF-8 text \(got .*offset 3"):
        data.read_text(DataSource("t", "text", ("bad.txt",)), tmp_path)
    with pytest.raises(DataError, match=r"data.ft.kind: this reader needs a text source \(got 'instructions'\)"):
        data.read_text(DataSource("ft", "instructions", ("x.json",)), tmp_path)


# --------------------------------------------------------------------------------------------------- instructions
def test_read_instructions_alpaca_first335(shared_data):
    src = DataSource("finetune", "instructions", ("finetune/alpaca_data_first335.json",))
    recs = data.read_instructions(src, shared_data)
    assert len(recs) == 335
    assert all(list(r) == ["instruction", "input", "output"] for r in recs)
    assert recs[0]["instruction"] == "Give three tips for staying healthy."
    assert recs[1]["instruction"] == "What are the three primary colors?"
    assert sum(r["input"] == "" for r in recs) == 163  # as shared/data/README.md counts


def test_read_instructions_drops_extra_keys(shared_data):
    src = DataSource("ft", "instructions", ("finetune/llm_adapters_boolq_train.json",))
    recs = data.read_instructions(src, shared_data)
    assert len(recs) == 9427
    assert recs[0]["output"].startswith("the correct answer is ")
    assert "answer" not in recs[0]


def test_read_instructions_seed_tasks_are_not_alpaca_format(shared_data):
    # alpaca_seed_tasks.jsonl keeps its outputs under "instances": a real file the reader must refuse, by record
    src = DataSource("ft", "instructions", ("finetune/alpaca_seed_tasks.jsonl",))
    with pytest.raises(DataError, match=r"alpaca_seed_tasks.jsonl: record 0: required field 'output' is missing"):
        data.read_instructions(src, shared_data)


def test_read_instructions_malformed_record_names_file_and_index(tmp_path):
    good = {"instruction": "Say hi.", "input": "", "output": "hi"}
    path = tmp_path / "ft.json"
    path.write_text(json.dumps([good, good, {"instruction": "Add.", "input": "1, 2", "output": 3}]), encoding="utf-8")
    src = DataSource("ft", "instructions", ("ft.json",))
    with pytest.raises(DataError) as e:
        data.read_instructions(src, tmp_path)
    assert str(e.value) == f"{path}: record 2: field 'output' must be a string (got 3)"

    path.write_text(json.dumps([good, "not an object"]), encoding="utf-8")
    with pytest.raises(DataError, match=r"ft.json: record 1: must be a JSON object"):
        data.read_instructions(src, tmp_path)
    path.write_text(json.dumps({"records": [good]}), encoding="utf-8")
    with pytest.raises(DataError, match=r"ft.json: must hold a JSON list .* \(got 'dict'\)"):
        data.read_instructions(src, tmp_path)
    path.write_text('[{"instruction": "x",\n "output": }]', encoding="utf-8")
    with pytest.raises(DataError, match=r"ft.json:2: invalid JSON"):
        data.read_instructions(src, tmp_path)


def test_read_instructions_missing_input_reads_as_empty(tmp_path):
    (tmp_path / "ft.json").write_text(json.dumps([{"instruction": "Say hi.", "output": "hi"}]), encoding="utf-8")
    recs = data.read_instructions(DataSource("ft", "instructions", ("ft.json",)), tmp_path)
    assert recs == [{"instruction": "Say hi.", "input": "", "output": "hi"}]


# ----------------------------------------------------------------------------------------------------------- jsonl
def test_jsonl_line_separator_inside_a_field_is_one_record(tmp_path):
    rec = {"instruction": "Join the\u2028lines\u0085here.", "input": "", "output": "a\u2029b"}
    path = tmp_path / "ft.jsonl"
    path.write_text(json.dumps(rec, ensure_ascii=False) + "\n\n" + json.dumps(rec) + "\n", encoding="utf-8")
    raw = path.read_text(encoding="utf-8")
    assert "\u2028" in raw and len(raw.splitlines()) > 3  # the pitfall is really in the file
    assert list(data.iter_jsonl(path)) == [rec, rec]
    recs = data.read_instructions(DataSource("ft", "instructions", ("ft.jsonl",)), tmp_path)
    assert recs == [rec, rec]


def test_jsonl_invalid_line_names_file_and_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n{"a": \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"x.jsonl:2: invalid JSON"):
        list(data.iter_jsonl(path))


# ---------------------------------------------------------------------------------------------- online (no hub)
def test_hf_dataset_ids_parse():
    assert data.HFDataset.parse("Salesforce/wikitext:wikitext-2-raw-v1@test") == data.HFDataset(
        "Salesforce/wikitext", "wikitext-2-raw-v1", "test")
    assert data.HFDataset.parse("vicgalle/alpaca-gpt4@train") == data.HFDataset("vicgalle/alpaca-gpt4", None, "train")
    assert data.HFDataset.parse("roneneldan/TinyStories") == data.HFDataset("roneneldan/TinyStories", None, "train")
    for bad in ("x:@test", "x:cfg@", "@test"):
        with pytest.raises(DataError, match="id\\[:config\\]\\[@split\\]"):
            data.HFDataset.parse(bad)


def test_online_text_rebuilds_the_raw_file_from_hf_rows(shared_data, monkeypatch):
    datasets = pytest.importorskip("datasets")
    raw = data.read_text(WIKI_TEST, shared_data)
    # the HF layout: one row per line, the line's "\n" kept, blank " \n" lines stored as ""
    lines = [line + "\n" for line in raw.split("\n")[:-1]]
    rows = [{"text": "" if line == " \n" else line} for line in lines]
    assert rows[0] == {"text": ""} and rows[1] == {"text": " = Robert Boulter = \n"}
    calls = []

    def fake_load_dataset(name, config=None, split=None):
        calls.append((name, config, split))
        return rows

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert data.read_text(WIKI_TEST, None) == raw
    assert calls == [("Salesforce/wikitext", "wikitext-2-raw-v1", "test")]


def test_online_rows_without_newlines_and_instructions(monkeypatch):
    datasets = pytest.importorskip("datasets")
    tables = {
        "stories": [{"text": "Once upon a time."}, {"text": "The end."}],
        "alpaca": [{"instruction": "Say hi.", "input": "", "output": "hi", "text": "ignored"}],
    }
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None, split=None: tables[name])
    stories = DataSource("s", "text", ("x.txt",), ("stories@validation",))
    assert data.read_text(stories, None) == "Once upon a time.\nThe end.\n"
    alpaca = DataSource("ft", "instructions", ("x.json",), ("alpaca@train",))
    assert data.read_instructions(alpaca, None) == [{"instruction": "Say hi.", "input": "", "output": "hi"}]
    with pytest.raises(DataError, match="data.x.hf: no data directory"):
        data.read_text(DataSource("x", "text", ("x.txt",)), None)
