"""The one reader and writer of row files (`cord.data.files`): every container round-trips, bad
input is one ConfigError naming the file and line, and a failed write leaves nothing behind."""

from __future__ import annotations

import json

import pytest

from cord.config import ConfigError
from cord.data import files
from cord.data.files import load_dataset, read_rows, write_rows

ROWS = [
    {"id": "a", "text": "café / naïve <think>", "score": 0.12345678901234, "steps": [1, 2], "ok": True},
    {"id": "b", "text": "two\nlines", "score": None, "steps": [], "ok": False},
]


@pytest.mark.parametrize("name", ["rows.jsonl", "rows.json", "rows.parquet", "rows-folder"])
def test_every_container_round_trips(tmp_path, name):
    path = tmp_path / "sub" / name
    write_rows(ROWS, path)
    read = read_rows(path)
    assert [row for _, row in read] == ROWS
    assert read[1][0].startswith(str(path)) and read[1][0].split()[-1] == ("2" if name.endswith(".jsonl") else "1")
    assert load_dataset(path)["id"] == ["a", "b"]  # (datasets' reader of a JSON array rounds floats to 9 digits)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == [name]  # no temporary left beside it


def test_jsonl_and_json_are_written_by_hand_as_exports_have_always_been(tmp_path):
    write_rows(ROWS, tmp_path / "r.jsonl")
    write_rows(ROWS, tmp_path / "r.json")
    assert (tmp_path / "r.jsonl").read_text(encoding="utf-8") == "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS)
    assert (tmp_path / "r.json").read_text(encoding="utf-8") == json.dumps(ROWS, ensure_ascii=False, indent=1) + "\n"


def test_a_rewrite_replaces_a_folder_and_a_failed_write_leaves_the_old_one(tmp_path, monkeypatch):
    out = tmp_path / "folder"
    write_rows(ROWS, out)
    write_rows(ROWS[:1], out)
    assert [row for _, row in read_rows(out)] == ROWS[:1]
    with pytest.raises(ConfigError, match="row 1: column 'id' holds a number, the rows before it a str"):
        write_rows([{"id": "a"}, {"id": 1}], out)  # two schemas: refused before anything is written

    def half_written(lines, target, cache):
        target.write_text("half")
        raise OSError("disk full")

    monkeypatch.setattr(files, "_write", half_written)
    with pytest.raises(OSError, match="disk full"):
        write_rows(ROWS, out)
    assert [row for _, row in read_rows(out)] == ROWS[:1] and [p.name for p in tmp_path.iterdir()] == ["folder"]


def test_rows_stream_out_and_no_rows_write_nothing(tmp_path):
    rows = ({"id": str(i), "text": "x" * 10} for i in range(1000))  # a generator: never held as a list
    assert write_rows(rows, tmp_path / "big.parquet") == 1000 and load_dataset(tmp_path / "big.parquet").num_rows == 1000
    assert write_rows(iter(()), tmp_path / "none.jsonl") == 0 and not (tmp_path / "none.jsonl").exists()


def test_a_bad_line_is_named_by_file_and_number(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"a": 1}\n\n{"a": \n')
    with pytest.raises(ConfigError, match=r"p\.jsonl line 3: not valid JSON \("):
        read_rows(path)
    path.write_bytes(b'{"a": 1}\n{"a": "caf\xe9"}\n')
    with pytest.raises(ConfigError, match=r"p\.jsonl line 2: not UTF-8 \(byte 0xe9 at column 11\)"):
        read_rows(path)
    (tmp_path / "p.json").write_bytes(b'[\n{"a": 1},\n{"a": 2\n]')
    with pytest.raises(ConfigError, match=r"p\.json line 4: not valid JSON"):
        read_rows(tmp_path / "p.json")


def test_a_byte_order_mark_and_crlf_read_like_any_other_file(tmp_path):
    (tmp_path / "w.jsonl").write_bytes(b"\xef\xbb\xbf" + b"".join(json.dumps(r).encode() + b"\r\n" for r in ROWS))
    (tmp_path / "w.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(ROWS).encode())
    for name in ("w.jsonl", "w.json"):
        assert [row for _, row in read_rows(tmp_path / name)] == ROWS


def test_json_holds_one_list_or_a_mapping_of_one_list(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps({"data": ROWS, "note": "x"}))
    assert [where for where, _ in read_rows(tmp_path / "d.json")] == [f"{tmp_path / 'd.json'} item {i}" for i in range(2)]
    (tmp_path / "two.json").write_text(json.dumps({"train": ROWS, "test": ROWS}))
    with pytest.raises(ConfigError, match=r"two\.json: expected a list of problems or a mapping holding one list"):
        read_rows(tmp_path / "two.json", what="problems")
    (tmp_path / "n.json").write_text("3")
    with pytest.raises(ConfigError, match=r"n\.json: expected a list of rows$"):
        read_rows(tmp_path / "n.json")


def test_an_unknown_suffix_and_an_unreadable_parquet_are_config_errors(tmp_path):
    (tmp_path / "p.csv").write_text("a,b\n")
    with pytest.raises(ConfigError, match=r"p\.csv: unknown data format '\.csv'"):
        read_rows(tmp_path / "p.csv")
    (tmp_path / "p.parquet").write_text("not parquet")
    with pytest.raises(ConfigError, match=r"p\.parquet: could not load dataset"):
        read_rows(tmp_path / "p.parquet")
