"""Reading utterance tables: layouts, encodings, delimiters, list cells, vocabularies, hostile files.

Every table here is small and written by the test itself (Excel-like exports included: ';'
with Windows-1252, UTF-16 "Unicode Text" with TABs, BOMs, CRLF line ends). The expected
values come from the rows the test wrote, or from reading the same rows through a plain
UTF-8 CSV, never from the reader's own output. The real MELD and IEMOCAP tables are read
from ``../shared/data`` when that folder exists.
"""
from __future__ import annotations

import argparse
import ast
import codecs
import json
from pathlib import Path

import pytest

from safsd_glnet.data import table_files
from safsd_glnet.data.corpus import DataError
from safsd_glnet.data.tables import (IEMOCAP_CLASSES, MELD_CLASSES, clean_text, describe, iter_records,
                                     parse_columns, read_meld_csvs, read_meld_dir, read_table)
from table_fixtures import (HEADER, MELD_HEADER, SMALL_ROWS, csv_bytes, shared_data, small_csv,  # noqa: F401
                            write_csv)


def error_of(fn, *args, **kwargs) -> str:
    """The DataError message of ``fn(*args, **kwargs)``; it must be one line."""
    with pytest.raises(DataError) as err:
        fn(*args, **kwargs)
    message = str(err.value)
    assert "\n" not in message, message
    return message


def content(table):
    """What a table says, independent of how it was stored: per dialogue in table order."""
    return [(d.id, d.split, [table.class_names[y] for y in d.labels] if d.labels is not None else None,
             d.speaker_labels, d.texts) for d in table.dialogues]


# ----------------------------------------------------------------------------- reading tables

def test_read_table_sorts_normalises_and_indexes(small_csv):
    t = read_table(small_csv)
    assert t.name == "small"
    assert t.class_names == list(IEMOCAP_CLASSES)  # exactly the IEMOCAP six: standard order
    assert t.splits == {"train": ["d1", "d2"], "valid": ["d3"], "test": ["d4"]}  # dev -> valid
    d1 = t.dialogues[0]
    assert d1.texts == ["How you doing?", "Okay.", "We're all going to miss him."]  # sorted, ASCII quote
    assert [t.class_names[y] for y in d1.labels] == ["neutral", "sad", "happy"]
    assert t.speaker_names == ["F", "M"]  # corpus mode: sorted names
    assert d1.speakers == [1, 0, 1]
    assert d1.rows == [2, 1, 3]
    assert t.num_utterances() == 10 and t.num_utterances("test") == 3


def test_dialogue_speaker_mode_is_first_appearance(small_csv):
    t = read_table(small_csv, speaker_mode="dialogue")
    assert t.speaker_names == ["speaker0", "speaker1"]
    by_id = {d.id: d for d in t.dialogues}
    assert by_id["d1"].speakers == [0, 1, 0]  # M speaks first in d1
    assert by_id["d2"].speakers == [0, 0]
    assert by_id["d4"].speakers == [0, 1, 0]  # F first in d4


def test_class_order_other_sets_are_sorted_or_given(tmp_path):
    rows = [["train", "a", 0, "x", "Calm", "hi"], ["train", "a", 1, "y", "angry", "go"],
            ["test", "b", 0, "x", "bored", "meh"]]
    p = write_csv(tmp_path / "t.csv", rows)
    assert read_table(p).class_names == ["angry", "bored", "calm"]  # lower-cased, sorted
    given = read_table(p, class_names="bored,calm,angry")
    assert given.class_names == ["bored", "calm", "angry"]
    assert given.dialogues[0].labels == [1, 2]


def test_meld_label_set_gets_meld_order(tmp_path):
    rows = [["train", "a", i, "x", c, f"s{i}"] for i, c in enumerate(reversed(MELD_CLASSES))]
    assert read_table(write_csv(tmp_path / "m.csv", rows)).class_names == list(MELD_CLASSES)


def test_jsonl_with_column_mapping(tmp_path):
    p = tmp_path / "talks.jsonl"
    lines = [
        {"fold": "validation", "conv": 7, "turn": 1, "who": "Ann", "emo": "joy", "sentence": "Yes!"},
        {"fold": "validation", "conv": 7, "turn": 0, "who": "Bob", "emo": "anger", "sentence": "No."},
        {"fold": "train", "conv": 8, "turn": 0.0, "who": "Ann", "emo": "joy", "sentence": "Hi."},
    ]
    p.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n", encoding="utf-8")
    t = read_table(p, "split=fold,dialogue=conv,order=turn,speaker=who,label=emo,text=sentence")
    assert t.splits == {"train": ["8"], "valid": ["7"]}
    assert t.dialogues[1].texts == ["No.", "Yes!"]
    assert t.class_names == ["anger", "joy"]


def test_text_cleaning_bom_mojibake_and_cp1252(tmp_path):
    assert clean_text("He\u00e2\u20ac\u2122s  \u201cfine\u201d\u2026") == "He's \"fine\"..."
    assert clean_text("caf\u00c3\u00a9 \u2014 ok") == "caf\u00e9 - ok"
    assert clean_text("don\x92t") == "don't"  # a cp1252 byte read as Latin-1
    rows = [["train", "a", 0, "M", "sad", "I can\u2019t"], ["test", "b", 0, "F", "sad", "No"]]
    bom = write_csv(tmp_path / "bom.csv", rows, encoding="utf-8-sig")
    t = read_table(bom)  # the BOM must not end up in the first column's name
    assert t.dialogues[0].texts == ["I can't"]
    cp = write_csv(tmp_path / "cp.csv", rows, encoding="cp1252")
    t = read_table(cp)
    assert t.dialogues[0].texts == ["I can't"]
    assert any("Windows-1252" in n for n in t.notes)
    raw = read_table(bom, fix_text=False)
    assert raw.dialogues[0].texts == ["I can\u2019t"]


# --------------------------------------------------------------------------- bad tables

BAD_TABLES = {
    "missing columns": (
        [["train", "a", 0, "M"]], ["split", "dialogue_id", "utterance_index", "speaker"], {},
        ["bad.csv", "'emotion'", "'text'", "missing column"]),
    "unknown label": (
        [["train", "a", 0, "M", "sad", "x"], ["train", "a", 1, "F", "bored", "y"]], HEADER,
        {"class_names": "iemocap"},
        ["bad.csv", "row 2", "'a'", "'emotion'", "'bored'"]),
    "duplicated position": (
        [["train", "a", 0, "M", "sad", "x"], ["train", "a", 1, "F", "sad", "y"],
         ["train", "a", 1, "M", "sad", "z"]], HEADER, {},
        ["bad.csv", "row 3", "'a'", "'utterance_index'", "used twice", "row 2"]),
    "empty text": (
        [["train", "a", 0, "M", "sad", "x"], ["train", "b", 0, "F", "sad", "   "]], HEADER, {},
        ["bad.csv", "row 2 (line 3)", "'b'", "'text'", "empty"]),
    "dialogue in two splits": (
        [["train", "a", 0, "M", "sad", "x"], ["test", "a", 1, "F", "sad", "y"]], HEADER, {},
        ["bad.csv", "row 2", "'a'", "'test'", "'train'", "one split"]),
    "non-integer order": (
        [["train", "a", "first", "M", "sad", "x"]], HEADER, {},
        ["bad.csv", "row 1", "'a'", "'utterance_index'", "'first'", "integer"]),
    "fractional order": (
        [["train", "a", "1.5", "M", "sad", "x"]], HEADER, {},
        ["bad.csv", "row 1", "'utterance_index'", "'1.5'"]),
    "unknown split": (
        [["train", "a", 0, "M", "sad", "x"], ["holdout", "b", 0, "M", "sad", "y"]], HEADER, {},
        ["bad.csv", "row 2", "'b'", "'split'", "'holdout'"]),
    "empty speaker": (
        [["train", "a", 0, "", "sad", "x"]], HEADER, {}, ["bad.csv", "row 1", "'speaker'"]),
    "empty table": ([], HEADER, {}, ["bad.csv", "empty"]),
    "zero-byte file": ([], None, {}, ["bad.csv", "empty"]),
    "too many fields": (
        [["train", "a", 0, "M", "sad", "x", "extra"]], HEADER, {}, ["bad.csv", "row 1", "7 fields"]),
}


@pytest.mark.parametrize("case", sorted(BAD_TABLES))
def test_bad_tables_raise_clear_errors(tmp_path, case):
    rows, header, kwargs, expected = BAD_TABLES[case]
    p = write_csv(tmp_path / "bad.csv", rows, header=header)
    with pytest.raises(DataError) as err:
        read_table(p, **kwargs)
    message = str(err.value)
    for piece in expected:
        assert piece in message, f"{case}: {piece!r} not in {message!r}"


def test_bad_column_mapping_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="unknown field 'mood'"):
        read_table(tmp_path / "x.csv", "mood=emotion")
    with pytest.raises(DataError, match="x.csv: table file not found"):
        read_table(tmp_path / "x.csv")
    with pytest.raises(DataError, match="dev_sent_emo.csv"):
        read_meld_dir(tmp_path)


def test_meld_layout_from_small_files(tmp_path):
    header = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID",
              "Season", "Episode", "StartTime", "EndTime"]
    def rows(*utts):
        return [[i + 1, text, spk, emo, "neutral", dia, utt, 1, 1, "00:00:01,000", "00:00:02,000"]
                for i, (dia, utt, spk, emo, text) in enumerate(utts)]
    train = write_csv(tmp_path / "train.csv", rows((0, 0, "Ross", "joy", "Hi"), (0, 3, "Rachel", "anger", "Go"),
                                                    (0, 1, "Ross", "fear", "Uh"), (2, 0, "Joey", "neutral", "Hey")),
                      header=header, encoding="utf-8-sig")
    dev = write_csv(tmp_path / "dev.csv", rows((0, 0, "Monica", "sadness", "Oh")), header=header)
    test = write_csv(tmp_path / "test.csv", rows((0, 0, "Phoebe", "surprise", "What?"),
                                                  (0, 1, "Joey", "disgust", "Ew")), header=header)
    t = read_meld_csvs(train, dev, test)
    assert t.class_names == list(MELD_CLASSES)
    assert t.splits == {"train": ["train_0", "train_2"], "valid": ["valid_0"], "test": ["test_0"]}
    d = t.dialogues[0]
    assert d.texts == ["Hi", "Uh", "Go"] and d.orders == [0, 1, 3]  # a gap, kept as ranks
    assert d.speakers == [0, 0, 1] and t.speaker_names == ["speaker0", "speaker1"]
    assert any("gaps" in n for n in t.notes)
    corpus_mode = read_meld_csvs(train, dev, test, speaker_mode="corpus")
    assert corpus_mode.speaker_names == ["Joey", "Monica", "Phoebe", "Rachel", "Ross"]
    bad = write_csv(tmp_path / "bad_dev.csv", rows((0, 0, "Monica", "sad", "Oh")), header=header)
    with pytest.raises(DataError) as err:
        read_meld_csvs(train, bad, test)
    assert all(s in str(err.value) for s in ("bad_dev.csv", "row 1", "'valid_0'", "'Emotion'", "'sad'"))




# ----------------------------------------------------------------------- one file per split

def split_rows(rows):
    """SMALL_ROWS without their split column, grouped by split as three files would hold them."""
    out = {"train": [], "valid": [], "test": []}
    for split, *rest in rows:
        out["valid" if split == "dev" else split].append(rest)
    return out


def test_one_file_per_split_keeps_unique_ids(tmp_path, small_csv):
    files = {}
    for split, rows in split_rows(SMALL_ROWS).items():
        files[split] = write_csv(tmp_path / f"{split}.csv", rows, header=HEADER[1:])
    t = read_table({"train": files["train"], "dev": files["valid"], "test": files["test"]})
    assert content(t) == content(read_table(small_csv))  # same dialogues as the one-file table
    assert t.sources == [str(files[s]) for s in ("train", "valid", "test")]
    assert set(t.source_sha256) == set(t.sources)
    assert t.name == tmp_path.name  # several files: their folder's name
    assert not any("prefixed" in n for n in t.notes)
    always = read_table(files, split_prefix="always")
    assert always.splits == {"train": ["train_d1", "train_d2"], "valid": ["valid_d3"], "test": ["test_d4"]}
    only_test = read_table({"test": files["test"]})
    assert only_test.splits == {"test": ["d4"]}


def test_one_file_per_split_prefixes_ids_that_repeat(tmp_path):
    # MELD-style numbering: every split starts again at dialogue 0.
    train = write_csv(tmp_path / "tr.csv", [[0, 0, "A", "joy", "a"], [0, 1, "B", "anger", "b"],
                                            [1, 0, "A", "fear", "c"]], header=HEADER[1:])
    dev = write_csv(tmp_path / "dv.csv", [[0, 0, "C", "joy", "d"]], header=HEADER[1:])
    test = write_csv(tmp_path / "te.csv", [[1, 0, "A", "sadness", "e"]], header=HEADER[1:])
    t = read_table({"train": train, "valid": dev, "test": test})
    assert t.splits == {"train": ["train_0", "train_1"], "valid": ["valid_0"], "test": ["test_1"]}
    assert [d.texts for d in t.dialogues] == [["a", "b"], ["c"], ["d"], ["e"]]
    assert any("repeat across the split files" in n and "'0'" in n for n in t.notes)
    message = error_of(read_table, {"train": train, "valid": dev, "test": test}, split_prefix="never")
    assert all(s in message for s in ("dv.csv", "tr.csv", "dialogue '0'", "one split", "--split-prefix"))


def test_split_prefix_in_one_file_and_bad_split_keys(tmp_path):
    rows = [["train", 0, 0, "A", "joy", "a"], ["dev", 0, 0, "A", "fear", "c"]]
    p = write_csv(tmp_path / "m.csv", rows)
    assert "--split-prefix always" in error_of(read_table, p)  # auto keeps one file's ids as written
    assert read_table(p, split_prefix="always").splits == {"train": ["train_0"], "valid": ["valid_0"]}
    assert "'holdout' is not a split" in error_of(read_table, {"holdout": p})
    assert "split 'valid' is given twice" in error_of(read_table, {"dev": p, "valid": p})
    assert "given for 'train' and 'test'" in error_of(read_table, {"train": p, "test": tmp_path / "." / "m.csv"})
    assert "split_prefix='sometimes'" in error_of(read_table, p, split_prefix="sometimes")


def test_real_meld_through_the_generic_reader():
    """Three MELD files as a generic one-file-per-split table equal the dedicated MELD reader."""
    folder = shared_data("meld")
    files = {"train": folder / "train_sent_emo.csv", "dev": folder / "dev_sent_emo.csv",
             "test": folder / "test_sent_emo.csv"}
    generic = read_table(files, "dialogue=Dialogue_ID,order=Utterance_ID,speaker=Speaker,label=Emotion,"
                                "text=Utterance", speaker_mode="dialogue", class_names="meld")
    assert content(generic) == content(read_meld_dir(folder))
    assert any("prefixed" in n for n in generic.notes)


# ------------------------------------------------------------------ composite dialogue ids

FRIENDS_HEADER = ["Season No.", "Episode_ID", "Scene nr", "turn", "Speaker", "Emotion", "Line"]
FRIENDS_ROWS = [
    [3, 12, 7, 1, "Ross", "joy", "Hi."],
    [3, 12, 7, 0, "Rachel", "anger", "Go."],
    [3, 12, 8, 0, "Ross", "joy", "Again."],
    [4, 1, 7, 0, "Joey", "neutral", "Hey."],
]
FRIENDS_COLUMNS = {"dialogue": ["Season No.", "Episode_ID", "Scene nr"], "order": "turn",
                   "speaker": "Speaker", "label": "Emotion", "text": "Line"}


def test_composite_dialogue_ids(tmp_path):
    p = write_csv(tmp_path / "friends.csv", FRIENDS_ROWS, header=FRIENDS_HEADER)
    t = read_table({"train": p}, FRIENDS_COLUMNS)
    assert [d.id for d in t.dialogues] == ["3_12_7", "3_12_8", "4_1_7"]
    assert t.dialogues[0].texts == ["Go.", "Hi."]
    spec = "dialogue=Season No.+Episode_ID+Scene nr,order=turn,speaker=Speaker,label=Emotion,text=Line"
    assert parse_columns(spec)["dialogue"] == ("Season No.", "Episode_ID", "Scene nr")
    assert content(read_table({"train": p}, spec)) == content(t)
    # JSON form, for names holding ',' or '+'.
    odd = write_csv(tmp_path / "odd.csv", [[r[0], r[1], *r[2:]] for r in FRIENDS_ROWS],
                    header=["Season, no.", "Ep+isode", *FRIENDS_HEADER[2:]])
    as_json = json.dumps({**FRIENDS_COLUMNS, "dialogue": ["Season, no.", "Ep+isode", "Scene nr"]})
    assert [d.id for d in read_table({"train": odd}, as_json).dialogues] == ["3_12_7", "3_12_8", "4_1_7"]


def test_composite_ids_that_join_alike_or_are_empty(tmp_path):
    header = ["a", "b", "turn", "speaker", "emotion", "text"]
    clash = write_csv(tmp_path / "clash.csv", [["1_2", "3", 0, "M", "sad", "x"], ["1", "2_3", 0, "M", "sad", "y"]],
                      header=header)
    columns = {"dialogue": ["a", "b"], "order": "turn"}
    message = error_of(read_table, {"train": clash}, columns)
    assert all(s in message for s in ("clash.csv", "row 2", "'1_2_3'", "row 1", "distinct"))
    empty = write_csv(tmp_path / "empty.csv", [["1", "", 0, "M", "sad", "x"]], header=header)
    message = error_of(read_table, {"train": empty}, columns)
    assert all(s in message for s in ("empty.csv", "row 1", "'b'", "part of the dialogue id", "empty"))
    assert "only the dialogue id" in error_of(parse_columns, "text=a+b")


# ------------------------------------------------------------------ list-valued speakers

@pytest.mark.parametrize("cell", ["['Monica Geller']", '["Ross", "Rachel"]', "[\"O'Brien\", 'Dr. \\'X\\'']",
                                  "[ 'a' , 'b', ]", "[]", '["caf\\u00e9"]', "['back\\\\slash']"])
def test_name_list_parser_agrees_with_python(cell):
    # The test may use literal_eval on its own trusted strings; the reader never does.
    assert table_files.parse_name_list(cell) == ast.literal_eval(cell)


@pytest.mark.parametrize("cell", ["Ross", "[Narrator]", "[ laughs ]", "", "Ross [off]"])
def test_name_list_parser_leaves_plain_names(cell):
    assert table_files.parse_name_list(cell) is None


@pytest.mark.parametrize("cell", ["['Ross'", "['Ross' 'Rachel']", "['Ross', Rachel]", "['a'] + ['b']",
                                  "['Monica', __import__('os').system('x')]", "['a\\"])
def test_name_list_parser_refuses_malformed_lists(cell):
    with pytest.raises(ValueError):
        table_files.parse_name_list(cell)


def test_name_list_parser_is_bounded():
    many = "[" + ", ".join(f"'n{i}'" for i in range(table_files.MAX_NAMES + 1)) + "]"
    with pytest.raises(ValueError, match="more than"):
        table_files.parse_name_list(many)
    with pytest.raises(ValueError, match="limit"):
        table_files.parse_name_list("['" + "x" * table_files.MAX_FIELD_CHARS + "']")


def test_list_valued_speaker_cells(tmp_path):
    rows = [["train", "a", 0, "['Monica Geller']", "sad", "x"],
            ["train", "a", 1, '["Ross", "Rachel", "Ross"]', "sad", "y"],
            ["train", "a", 2, "Monica Geller", "sad", "z"],
            ["train", "a", 3, "[Narrator]", "sad", "w"]]
    t = read_table(write_csv(tmp_path / "s.csv", rows))
    d = t.dialogues[0]
    assert d.speaker_labels == ["Monica Geller", "Rachel & Ross", "Monica Geller", "[Narrator]"]
    assert t.speaker_names == ["Monica Geller", "Rachel & Ross", "[Narrator]"]
    assert d.speakers == [0, 1, 0, 2]
    jl = tmp_path / "s.jsonl"
    jl.write_text("\n".join(json.dumps({"split": "train", "dialogue_id": "a", "utterance_index": i,
                                        "speaker": s, "emotion": "sad", "text": f"t{i}"})
                            for i, s in enumerate([["Ross", "Rachel"], ["Joey"], "Joey"])))
    assert read_table(jl).dialogues[0].speaker_labels == ["Rachel & Ross", "Joey", "Joey"]
    bad = write_csv(tmp_path / "bad.csv", [["train", "a", 0, "['Ross', Rachel]", "sad", "x"]])
    message = error_of(read_table, bad)
    assert all(s in message for s in ("bad.csv", "row 1", "'a'", "'speaker'", "malformed"))
    jl.write_text(json.dumps({"split": "train", "dialogue_id": "a", "utterance_index": 0,
                              "speaker": ["Ross", 3], "emotion": "sad", "text": "t"}))
    assert "non-strings" in error_of(read_table, jl)


# ------------------------------------------------------------------ encodings and delimiters

EXCEL_ROWS = [
    ["train", "d1", 0, "M", "sad", "Hello; there, \u201cfriend\u201d | ok"],
    ["train", "d1", 1, "F", "happy", "Zo\u00eb said \"hi\"\tand left\nnext line"],
    ["test", "d2", 0, "F", "sad", "caf\u00e9"],
]


def excel_samples():
    utf16 = lambda enc, bom=b"": csv_bytes(EXCEL_ROWS, delimiter="\t", encoding=enc, bom=bom)  # noqa: E731
    return {
        "excel_eu.csv": csv_bytes(EXCEL_ROWS, delimiter=";", encoding="cp1252"),  # German/French Excel "CSV"
        "excel_unicode_text.txt": utf16("utf-16-le", codecs.BOM_UTF16_LE),  # Excel "Unicode Text"
        "utf16be_bom.txt": utf16("utf-16-be", codecs.BOM_UTF16_BE),
        "utf16le_nobom.txt": utf16("utf-16-le"),
        "utf16be_nobom.txt": utf16("utf-16-be"),
        "pipes.csv": csv_bytes(EXCEL_ROWS, delimiter="|"),
        "semicolon_utf8.csv": csv_bytes(EXCEL_ROWS, delimiter=";"),
        "tabs_in_a.csv": csv_bytes(EXCEL_ROWS, delimiter="\t"),
        "utf32_bom.txt": csv_bytes(EXCEL_ROWS, delimiter="\t", encoding="utf-32"),
    }


@pytest.mark.parametrize("name", sorted(excel_samples()))
def test_encodings_and_delimiters_are_detected(tmp_path, name):
    reference = read_table(write_csv(tmp_path / "ref.csv", EXCEL_ROWS), fix_text=False)
    p = tmp_path / name
    p.write_bytes(excel_samples()[name])
    t = read_table(p, fix_text=False)
    assert content(t) == content(reference)
    assert t.dialogues[0].texts[1] == "Zo\u00eb said \"hi\"\tand left\nnext line"


def test_detection_is_reported_and_can_be_overridden(tmp_path):
    reference = content(read_table(write_csv(tmp_path / "ref.csv", EXCEL_ROWS)))
    for name, data in (("excel_csv_utf8.csv", csv_bytes(EXCEL_ROWS, bom=codecs.BOM_UTF8)),  # Excel "CSV UTF-8"
                       ("tabs.tsv", csv_bytes(EXCEL_ROWS, delimiter="\t"))):
        (tmp_path / name).write_bytes(data)
        t = read_table(tmp_path / name)
        assert content(t) == reference and not t.notes  # the usual cases need no note
    p = tmp_path / "excel_unicode_text.txt"
    p.write_bytes(excel_samples()["excel_unicode_text.txt"])
    assert any("UTF-16 LE" in n and "TAB-delimited" in n for n in read_table(p).notes)
    eu = tmp_path / "eu.csv"
    eu.write_bytes(excel_samples()["excel_eu.csv"])
    reference = content(read_table(eu))
    assert content(read_table(eu, delimiter=";", encoding="cp1252")) == reference
    assert content(read_table(eu, delimiter="semicolon")) == reference
    assert not any("Windows-1252" in n for n in read_table(eu, encoding="cp1252").notes)


def test_wrong_delimiter_or_encoding_is_named(tmp_path):
    eu = tmp_path / "eu.csv"
    eu.write_bytes(excel_samples()["excel_eu.csv"])
    message = error_of(read_table, eu, delimiter=",")
    assert all(s in message for s in ("eu.csv", "missing column", "read as ','-delimited Windows-1252", "looks ';'-delimited",
                                      "--delimiter ';'"))
    text = tmp_path / "unicode.txt"
    text.write_bytes(excel_samples()["excel_unicode_text.txt"])
    message = error_of(read_table, text, encoding="utf-8")
    assert all(s in message for s in ("unicode.txt", "not valid utf-8", "looks like UTF-16 LE", "--encoding utf-16"))
    message = error_of(read_table, text, encoding="latin-1")  # decodes, but every other character is NUL
    assert all(s in message for s in ("unicode.txt", "NUL", "looks like UTF-16 LE"))
    assert "unknown encoding 'klingon'" in error_of(read_table, text, encoding="klingon")
    colons = tmp_path / "colons.csv"
    colons.write_text(":".join(HEADER) + "\ntrain:a:0:M:sad:x\n")
    message = error_of(read_table, colons)
    assert all(s in message for s in ("colons.csv", "one field", "--delimiter"))
    assert len(read_table(colons, delimiter=":").dialogues) == 1
    assert "expected one character" in error_of(read_table, colons, delimiter="::")


def test_ambiguous_delimiter_is_an_error_or_settled_by_the_rows(tmp_path):
    # A header that holds the columns a, b, c, d split at ',' and at ';' alike.
    header_line = "a,b,c,d,x;a;b;c;d;y,a,b,c,d"
    columns = {"dialogue": "a", "order": "b", "speaker": "c", "text": "d"}
    p = tmp_path / "odd.csv"
    p.write_text(header_line + "\n")
    message = error_of(read_table, p, columns, labelled=False)
    assert all(s in message for s in ("odd.csv", "ambiguous", "',' and ';'", "--delimiter"))
    p.write_text(header_line + "\n" + "k,0,M,hi,z,k,0,M,hi\n")  # 9 fields at ',', as the ',' header
    t = read_table(p, columns, labelled=False)
    assert t.dialogues[0].texts == ["hi"]


# ------------------------------------------------------------------ unlabelled tables

def test_unlabelled_tables_for_prediction(tmp_path):
    rows = [["d1", 1, "M", "Okay."], ["d1", 0, "F", "Hi."], ["d2", 0, "F", "Bye."]]
    p = write_csv(tmp_path / "new.csv", rows, header=["dialogue_id", "utterance_index", "speaker", "text"])
    t = read_table(p, labelled=False)
    assert not t.labelled and t.class_names == []
    assert t.splits == {"test": ["d1", "d2"]}  # no split column: everything is test
    assert all(d.labels is None for d in t.dialogues)
    assert t.dialogues[0].texts == ["Hi.", "Okay."] and len(t.dialogues[0]) == 2
    assert list(iter_records(t))[0] == ("d1", 0, "F", None, "Hi.")
    assert "unlabelled" in describe(t)
    assert content(read_table(p, labelled=None)) == content(t)  # auto: no label column
    with_classes = read_table(p, labelled=False, class_names="iemocap")
    assert with_classes.class_names == list(IEMOCAP_CLASSES) and not with_classes.labelled
    message = error_of(read_table, p)  # labelled by default: the label column is needed
    assert "missing column(s) ['split', 'emotion']" in message


def test_unlabelled_auto_and_label_column_ignored(tmp_path, small_csv):
    labelled = read_table(small_csv, labelled=None)
    assert labelled.labelled and content(labelled) == content(read_table(small_csv))
    ignored = read_table(small_csv, labelled=False)
    assert not ignored.labelled and ignored.splits == read_table(small_csv).splits  # split column still read
    assert [d.texts for d in ignored.dialogues] == [d.texts for d in labelled.dialogues]
    no_split = write_csv(tmp_path / "ns.csv", [r[1:] for r in SMALL_ROWS], header=HEADER[1:])
    message = error_of(read_table, no_split)
    assert all(s in message for s in ("ns.csv", "missing column(s) ['split']", "--table test=FILE"))


def test_per_split_files_must_agree_on_labels(tmp_path):
    train = write_csv(tmp_path / "tr.csv", [["a", 0, "M", "sad", "x"]], header=HEADER[1:])
    test = write_csv(tmp_path / "te.csv", [["b", 0, "M", "y"]], header=["dialogue_id", "utterance_index",
                                                                       "speaker", "text"])
    message = error_of(read_table, {"train": train, "test": test}, labelled=None)
    assert all(s in message for s in ("te.csv", "tr.csv", "label column"))


def test_unlabelled_table_is_refused_for_a_corpus(tmp_path, monkeypatch):
    import numpy as np

    from safsd_glnet.features import text as feat

    p = write_csv(tmp_path / "new.csv", [["d1", 0, "F", "Hi."]], header=["dialogue_id", "utterance_index",
                                                                        "speaker", "text"])
    t = read_table(p, labelled=False)
    message = error_of(feat.table_to_corpus, t, np.zeros((1, 4), dtype=np.float32))
    assert all(s in message for s in ("new.csv", "no labels", "label column"))
    monkeypatch.setattr(feat, "load_encoder", lambda *a, **k: pytest.fail("nothing may be encoded"))
    assert "no labels" in error_of(feat.build_text_corpus, t, "fake", cache_dir=None)


# ------------------------------------------------------------------ a fixed speaker vocabulary

def test_speaker_vocabulary_keeps_the_models_indices(tmp_path):
    p = write_csv(tmp_path / "new.csv", [["test", "x", 0, "M", "sad", "Hi."], ["test", "x", 1, "M", "sad", "Yo."]])
    assert read_table(p).dialogues[0].speakers == [0]  * 2  # without a vocabulary M would be 0
    t = read_table(p, speaker_names=["F", "M"])
    assert t.speaker_names == ["F", "M"] and t.dialogues[0].speakers == [1, 1]
    bob = write_csv(tmp_path / "bob.csv", [["test", "x", 0, "M", "sad", "Hi."], ["test", "y", 0, "Bob", "sad", "Yo."]])
    message = error_of(read_table, bob, speaker_names=["F", "M"])
    assert all(s in message for s in ("bob.csv", "row 2 (line 3)", "dialogue 'y'", "'speaker'",
                                      "speaker 'Bob' is unknown to the model; it knows ['F', 'M']"))
    many = [f"name{i}" for i in range(300)]
    assert "(300 names)" in error_of(read_table, bob, speaker_names=many)
    assert "listed twice" in error_of(read_table, p, speaker_names=["M", "M"])


def test_speaker_vocabulary_in_dialogue_mode_bounds_the_slots(small_csv, tmp_path):
    t = read_table(small_csv, speaker_mode="dialogue", speaker_names=["speaker0", "speaker1", "speaker2"])
    assert t.speaker_names == ["speaker0", "speaker1", "speaker2"]
    assert t.dialogues[0].speakers == [0, 1, 0]
    three = write_csv(tmp_path / "three.csv", [["test", "x", i, s, "sad", "t"] for i, s in enumerate("ABC")])
    message = error_of(read_table, three, speaker_mode="dialogue", speaker_names=["speaker0", "speaker1"])
    assert all(s in message for s in ("three.csv", "row 3", "dialogue 'x'", "'speaker'", "'C'", "2 per-dialogue"))


# ------------------------------------------------------------------ hostile tables

GOOD_JSON = {"split": "train", "dialogue_id": "a", "utterance_index": 0, "speaker": "M", "emotion": "sad",
             "text": "x"}


def jsonl_line(**changes) -> str:
    return json.dumps({**GOOD_JSON, **changes})


HOSTILE = {
    # name: (file name, bytes, the pieces the one-line message must hold)
    "order of 5000 digits (CSV)": (
        "big.csv", csv_bytes([["train", "a", "7" * 5000, "M", "sad", "x"]]),
        ["big.csv", "row 1 (line 2)", "'a'", "'utterance_index'", "5000 characters", "integer"]),
    "order of 5000 digits (JSON)": (
        "big.jsonl", jsonl_line(utterance_index=0).replace('"utterance_index": 0', '"utterance_index": ' + "7" * 5000).encode(),
        ["big.jsonl", "row 1 (line 1)", "too many digits"]),
    "array nested 200000 deep": (
        "deep.jsonl", ("\n" + jsonl_line()[:-1] + ', "extra": ' + "[" * 200_000 + "]" * 200_000 + "}\n").encode(),
        ["deep.jsonl", "row 1 (line 2)", "nests", "deep"]),
    "array nested 40 deep": (
        "deep40.jsonl", (jsonl_line()[:-1] + ', "extra": ' + "[" * 40 + "]" * 40 + "}\n").encode(),
        ["deep40.jsonl", "row 1 (line 1)", "more than 32 deep"]),
    "JSON object as a dialogue id": (
        "obj.jsonl", jsonl_line(dialogue_id={"a": 1}).encode(),
        ["obj.jsonl", "row 1 (line 1)", "'dialogue_id'", "JSON object"]),
    "CSV field over csv.field_size_limit": (
        "field.csv", csv_bytes([["train", "a", 0, "M", "sad", "x" * 200_000]]),
        ["field.csv", "row 1 (line 2)", "field larger than field limit", "unclosed quote"]),
    "text cell over MAX_TEXT_CHARS (CSV)": (
        "long.csv", csv_bytes([["train", "a", 0, "M", "sad", "x" * 100_001]]),
        ["long.csv", "row 1 (line 2)", "'a'", "'text'", "100,001 characters", "MAX_TEXT_CHARS"]),
    "text cell over MAX_TEXT_CHARS (JSON)": (
        "long.jsonl", (jsonl_line() + "\n" + jsonl_line(utterance_index=1, text="y" * 300_000)).encode(),
        ["long.jsonl", "row 2 (line 2)", "'text'", "300,000 characters"]),
    "speaker cell over MAX_FIELD_CHARS": (
        "spk.csv", csv_bytes([["train", "a", 0, "M" * 5000, "sad", "x"]]),
        ["spk.csv", "row 1 (line 2)", "'speaker'", "5,000 characters", "MAX_FIELD_CHARS"]),
    "unclosed quote swallowing the rest": (
        "quote.csv", b",".join(h.encode() for h in HEADER) + b'\ntrain,a,0,M,sad,"Well\ntrain,a,1,F,sad,ok\n',
        ["quote.csv", "row 1 (line 2)", "never closed"]),
    "NUL byte in a CSV": (
        "nul.csv", csv_bytes([["train", "a", 0, "M", "sad", "x"], ["train", "a", 1, "M", "sad", "y\x00z"]]),
        ["nul.csv", "line 3", "NUL", "remove it"]),
    "binary file renamed .csv": (
        "photo.csv", bytes(range(256)) * 64,
        ["photo.csv", "NUL", "not a text table"]),
    "binary file without NUL bytes": (
        "noise.csv", bytes(range(1, 32)) * 300,
        ["noise.csv", "control characters", "not a text table"]),
    "an .xlsx workbook renamed .csv": (
        "book.csv", b"PK\x03\x04" + bytes(200),
        ["book.csv", "zip archive", "xlsx", "CSV UTF-8"]),
    "UTF-16 header-only file": (
        "head16.txt", csv_bytes([], delimiter="\t", encoding="utf-16-le", bom=codecs.BOM_UTF16_LE),
        ["head16.txt", "empty"]),
    "truncated UTF-16 file": (
        "cut16.txt", csv_bytes([["train", "a", 0, "M", "sad", "x"]], delimiter="\t", encoding="utf-16-le",
                               bom=codecs.BOM_UTF16_LE)[:-1],
        ["cut16.txt", "looks like UTF-16 LE", "truncated"]),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_tables_get_one_short_line(tmp_path, case):
    name, data, expected = HOSTILE[case]
    p = tmp_path / name
    p.write_bytes(data)
    message = error_of(read_table, p)
    assert len(message) < 400 + len(str(p)), f"{case}: {len(message)} characters"
    for piece in expected:
        assert piece in message, f"{case}: {piece!r} not in {message!r}"


def test_json_recursion_error_is_caught_behind_the_depth_check(tmp_path, monkeypatch):
    monkeypatch.setattr(table_files, "MAX_JSON_DEPTH", 10 ** 9)  # let json.loads meet the nesting itself
    name, data, _ = HOSTILE["array nested 200000 deep"]
    p = tmp_path / name
    p.write_bytes(data)
    message = error_of(read_table, p)
    assert all(s in message for s in ("deep.jsonl", "row 1 (line 2)", "too deep"))


def test_json_lines_split_only_at_newlines(tmp_path):
    # U+2028 and U+0085 are legal raw inside JSON strings; str.splitlines() would split there.
    p = tmp_path / "seps.jsonl"
    p.write_text(json.dumps({**GOOD_JSON, "text": "a\u2028b\x85c\x1cd"}, ensure_ascii=False) + "\n",
                 encoding="utf-8")
    assert read_table(p, fix_text=False).dialogues[0].texts == ["a\u2028b\x85c\x1cd"]


def test_file_and_row_limits(tmp_path, monkeypatch, small_csv):
    monkeypatch.setattr(table_files, "MAX_TABLE_BYTES", 100)
    message = error_of(read_table, small_csv)
    assert all(s in message for s in ("small.csv", "bytes", "more than the limit of 100", "MAX_TABLE_BYTES"))
    monkeypatch.setattr(table_files, "MAX_TABLE_BYTES", 10 ** 6)
    monkeypatch.setattr(table_files, "MAX_TABLE_ROWS", 4)
    assert "more than 4 rows" in error_of(read_table, small_csv)
    files = {}
    for split, rows in split_rows(SMALL_ROWS).items():  # 3 + 2 + 3 rows: each file under the limit
        files[split] = write_csv(tmp_path / f"{split}.csv", rows, header=HEADER[1:])
    files.pop("valid")
    assert "more than 4 rows" in error_of(read_table, files)
    assert "is a folder" in error_of(read_table, tmp_path)


def test_cli_error_for_a_hostile_table_is_one_line(tmp_path, capsys):
    name, data, _ = HOSTILE["array nested 200000 deep"]
    p = tmp_path / name
    p.write_bytes(data)
    args = make_cli().parse_args(["features", "--table", str(p), "--encoder", "fake", "--out", str(tmp_path / "o.npz")])
    assert args.func(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "deep.jsonl" in err and "deep" in err
    assert not (tmp_path / "o.npz").exists()


# ------------------------------------------------------------------ the CLI's table options

def make_cli():
    from safsd_glnet.cli import features as cli_features

    parser = argparse.ArgumentParser(prog="safsd-glnet")
    sub = parser.add_subparsers(dest="command")
    cli_features.add_parser(sub)
    return parser


@pytest.fixture
def fake_table_encoder(monkeypatch):
    import numpy as np

    from safsd_glnet.features import text as feat

    class Model:
        def get_sentence_embedding_dimension(self):
            return 2

        def encode(self, texts, **kw):
            return np.array([[len(t), i] for i, t in enumerate(texts)], dtype=np.float32)

    monkeypatch.setattr(feat, "load_encoder", lambda *a, **k: Model())


def run_cli(argv):
    args = make_cli().parse_args(argv)
    return args.func(args)


def test_cli_tables_per_split_composite_ids_and_detection(tmp_path, fake_table_encoder, capsys):
    kit = pytest.importorskip("safsd_glnet.data.kit_format")
    header = ["Season No.", "Scene nr", "turn", "who", "emo", "line"]
    parts = {"train": [[1, 1, 0, "['Ross', 'Rachel']", "joy", "Hi."], [1, 1, 1, "Joey", "anger", "Go."]],
             "dev": [[1, 1, 0, "Joey", "joy", "Yo."]],
             "test": [[2, 5, 0, "Joey", "joy", "Hey."]]}
    paths = {}
    for split, rows in parts.items():  # a ';'-delimited Windows-1252 export per split
        paths[split] = tmp_path / f"{split}.csv"
        paths[split].write_bytes(csv_bytes(rows, header=header, delimiter=";", encoding="cp1252"))
    out = tmp_path / "out.npz"
    common = ["--columns", "dialogue=Season No.+Scene nr,order=turn,speaker=who,label=emo,text=line",
              "--encoder", "fake", "--no-cache", "--no-progress", "--out", str(out)]
    assert run_cli(["features", *(a for s in ("train", "dev", "test") for a in ("--table", f"{s}={paths[s]}")),
                    *common]) == 0
    corpus = kit.load_corpus(out)
    assert corpus.splits == {"train": ["train_1_1"], "valid": ["valid_1_1"], "test": ["test_2_5"]}
    assert corpus.speaker_names == ["Joey", "Rachel & Ross"]
    assert corpus.dialogues["train_1_1"].texts == ["Hi.", "Go."]
    printed = capsys.readouterr().out
    assert "prefixed" in printed and "';'-delimited" in printed
    assert run_cli(["features", "--table", f"test={paths['test']}", "--split-prefix", "always", *common]) == 0
    assert kit.load_corpus(out).splits == {"test": ["test_2_5"]}
    assert run_cli(["features", "--table", str(paths["train"]), "--delimiter", ",", *common]) == 2
    assert "looks ';'-delimited" in capsys.readouterr().err
    assert run_cli(["features", "--table", f"test={paths['test']}", "--encoding", "utf-16", *common]) == 2
    assert "utf-16" in capsys.readouterr().err


def test_cli_table_values(tmp_path, capsys):
    from safsd_glnet.cli.features import table_sources

    assert table_sources(["a.csv"]) == "a.csv"
    assert table_sources(["my=file.csv"]) == "my=file.csv"  # not a split name: a file
    assert table_sources(["dev=b.csv"]) == {"valid": "b.csv"}
    assert table_sources(["train=a.csv", "TEST=c.csv"]) == {"train": "a.csv", "test": "c.csv"}
    assert "each must be SPLIT=FILE" in error_of(table_sources, ["a.csv", "test=b.csv"])
    assert "given twice" in error_of(table_sources, ["dev=a.csv", "valid=b.csv"])
    assert run_cli(["features", "--meld", str(tmp_path), "--delimiter", ";", "--out", "o.npz"]) == 2
    assert "--delimiter applies to --table" in capsys.readouterr().err


# --------------------------------------------------------------------------- real data

def test_real_meld_csvs():
    t = read_meld_dir(shared_data("meld"))
    assert t.class_names == list(MELD_CLASSES)
    counts = {s: (len(ids), t.num_utterances(s)) for s, ids in t.splits.items()}
    assert counts == {"train": (1038, 9989), "valid": (114, 1109), "test": (280, 2610)}
    ids = [d.id for d in t.dialogues]
    assert len(set(ids)) == len(ids) == 1432
    assert "train_60" not in ids and "valid_0" in ids and "test_279" in ids
    assert t.speaker_mode == "dialogue" and len(t.speaker_names) == 9
    assert not any("\u2019" in s for s in t.texts)  # typographic quotes became ASCII
    assert t.dialogues[0].texts[0].startswith("also I was the point person on my company's")


def test_real_iemocap_table():
    t = read_table(shared_data("iemocap", "iemocap_utterances.csv"))
    assert t.class_names == list(IEMOCAP_CLASSES)
    assert len(t.dialogues) == 151 and t.num_utterances() == 7433
    assert {s: len(ids) for s, ids in t.splits.items()} == {"train": 108, "valid": 12, "test": 31}
    assert t.speaker_names == ["F", "M"]
    assert all(d.id.startswith("Ses05") for d in t.dialogues if d.split == "test")


# ----------------------------------------------------------------------------- plain-text dialogues

def _steps(fn) -> int:
    """Python line events executed by ``fn()`` in the table readers: a count of work done that
    does not depend on the machine or its load (never a time)."""
    import sys

    watched = ("tables.py", "table_files.py")
    count = 0

    def tracer(frame, event, arg):
        nonlocal count
        if not frame.f_code.co_filename.endswith(watched):
            return None
        if event == "line":
            count += 1
        return tracer

    sys.settrace(tracer)
    try:
        fn()
    finally:
        sys.settrace(None)
    return count


def test_reading_plain_text_dialogues_is_linear_in_their_number(tmp_path):
    """Twice the dialogues must cost about twice the steps. The reader used to sum over every
    earlier dialogue for each line and compare each new name with every earlier one: four
    times the steps for twice the dialogues."""
    from safsd_glnet.data.tables import read_dialogue_text

    steps = {}
    for n in (300, 600):
        path = tmp_path / f"d{n}.txt"
        path.write_text("".join(f"Ann: line {k} a\nBob: line {k} b\n\n" for k in range(n)))
        steps[n] = _steps(lambda: read_dialogue_text(path))
        assert len(read_dialogue_text(path).dialogues) == n
    assert steps[600] / steps[300] < 2.3, steps


def test_a_long_line_is_refused_before_it_is_cleaned(tmp_path, monkeypatch):
    """A 'Speaker: sentence' line longer than a speaker and a sentence may be is refused while
    the file is split into lines, before clean_text (whose work on a 50 MB line of non-ASCII
    text peaked at 2 GB) sees it."""
    from safsd_glnet.data import tables
    from safsd_glnet.data.tables import read_dialogue_text

    seen = []
    real_clean = tables.clean_text
    monkeypatch.setattr(tables, "clean_text", lambda text: seen.append(len(text)) or real_clean(text))
    limit = table_files.MAX_TEXT_CHARS + table_files.MAX_FIELD_CHARS + 2
    path = tmp_path / "long.txt"
    path.write_text("Ann: hello\n\nBob: " + "\u00e9\u20ac" * 150_000 + "\nAnn: after\n", encoding="utf-8")
    message = error_of(read_dialogue_text, path)
    assert "long.txt: line 3" in message and "300,005 characters" in message and f"{limit:,}" in message
    assert all(n <= limit for n in seen), seen
    # At the limit the sentence itself is then measured after cleaning, as before.
    path.write_text("Bob: " + "x" * (table_files.MAX_TEXT_CHARS + 1) + "\n")
    assert "MAX_TEXT_CHARS" in error_of(read_dialogue_text, path) or "100,000" in error_of(read_dialogue_text, path)


NUL_SPEAKERS = {
    "list literal in a CSV": ("nul_list.csv", lambda: csv_bytes([["train", "a", 0, "['An\\u0000n']", "sad", "x"]])),
    "JSON array": ("nul_array.jsonl", lambda: jsonl_line(speaker=["An\u0000n"]).encode()),
    "JSON string": ("nul_string.jsonl", lambda: jsonl_line(speaker="An\u0000n").encode()),
    "JSON text": ("nul_text.jsonl", lambda: jsonl_line(text="x\u0000y").encode()),
}


@pytest.mark.parametrize("case", sorted(NUL_SPEAKERS))
def test_nul_characters_in_cells_are_refused(tmp_path, case):
    """NUL bytes are refused in the file; one spelled as an escape inside a cell is refused too."""
    name, data = NUL_SPEAKERS[case]
    p = tmp_path / name
    p.write_bytes(data())
    message = error_of(read_table, p)
    assert name in message and "row 1" in message and "NUL" in message


def test_nul_in_python_dialogue_pairs_is_refused():
    from safsd_glnet.data.tables import table_from_pairs

    assert "NUL" in error_of(table_from_pairs, [[("An\x00n", "hi")]])
    assert "NUL" in error_of(table_from_pairs, [[("Ann", "h\x00i")]])


# ------------------------------------------------------------------ frictions of a new corpus

def test_unseen_speaker_shares_of_both_schemes(tmp_path, capsys):
    """Counted by hand: train d1 has Ann, Bob; valid d2 Ann, Cat; test d3 Dan, Ann, Eve."""
    from safsd_glnet.data.tables import table_unseen_speakers

    rows = [["train", "d1", 0, "Ann", "sad", "a"], ["train", "d1", 1, "Bob", "sad", "b"],
            ["valid", "d2", 0, "Ann", "sad", "c"], ["valid", "d2", 1, "Cat", "sad", "d"],
            ["test", "d3", 0, "Dan", "sad", "e"], ["test", "d3", 1, "Ann", "sad", "f"],
            ["test", "d3", 2, "Eve", "sad", "g"]]
    p = write_csv(tmp_path / "u.csv", rows)
    # by name: Cat is new in valid (1 of 2), Dan and Eve in test (2 of 3)
    by_name = read_table(p, class_names="sad,happy")
    assert table_unseen_speakers(by_name) == pytest.approx({"valid": 1 / 2, "test": 2 / 3})
    # by order in the dialogue: train has slots 0 and 1; test's third speaker is slot 2 (1 of 3)
    by_order = read_table(p, class_names="sad,happy", speaker_mode="dialogue")
    assert table_unseen_speakers(by_order) == pytest.approx({"valid": 0.0, "test": 1 / 3})
    lines = describe(by_name).splitlines()
    assert [x.strip() for x in lines if "unseen speakers" in x] == [
        "unseen speakers: valid 50.0%, test 66.7% of utterances have a speaker never seen in train "
        "(their speaker embedding is untrained; see docs/speakers.md)"]


def test_column_names_match_ignoring_case_and_say_so(tmp_path):
    header = ["Split", "Dialogue_ID", "utterance_index", "Speaker", "EMOTION", "text"]
    rows = [["train", "d1", 0, "Ann", "Sad", "a"], ["valid", "d2", 0, "Ann", "HAPPY", "b"],
            ["test", "d3", 0, "Ann", "sad", "c"]]
    p = write_csv(tmp_path / "Talks.csv", rows, header=header)
    t = read_table(p)
    assert [t.class_names[y] for d in t.dialogues for y in d.labels] == ["sad", "happy", "sad"]
    assert [d.speaker_labels for d in t.dialogues] == [["Ann"]] * 3
    normalised = [x.strip() for x in describe(t).splitlines() if x.strip().startswith("normalised:")]
    assert normalised == ["normalised: column names matched ignoring case ('Split' as 'split', 'Dialogue_ID' as "
                          "'dialogue_id', 'Speaker' as 'speaker', 'EMOTION' as 'emotion'); labels lower-cased "
                          "('Sad' -> 'sad', 'HAPPY' -> 'happy'); corpus name 'Talks' from the file name "
                          "(--name sets another)"]
    # nothing to say when nothing was changed (the name given)
    plain = write_csv(tmp_path / "plain.csv", [[r[0], r[1], r[2], r[3], r[4].lower(), r[5]] for r in rows])
    assert "normalised" not in describe(read_table(plain, name="x"))
    # JSON lines too
    jl = tmp_path / "t.jsonl"
    jl.write_text("\n".join(json.dumps(dict(zip(header, r))) for r in rows) + "\n")
    assert [d.texts for d in read_table(jl).dialogues] == [["a"], ["b"], ["c"]]
    # two columns equal ignoring case and neither exact: an error naming both
    two = write_csv(tmp_path / "two.csv", [r[:4] + r[3:] for r in rows],
                    header=["split", "dialogue_id", "utterance_index", "Speaker", "SPEAKER", "emotion", "text"])
    message = error_of(read_table, two)
    assert "two.csv" in message and "'Speaker' and 'SPEAKER'" in message and "--columns" in message
    # an exact name wins over its case variants
    exact = write_csv(tmp_path / "exact.csv", [r[:4] + ["Zed"] + r[4:] for r in rows],
                      header=["split", "dialogue_id", "utterance_index", "speaker", "SPEAKER", "emotion", "text"])
    assert [d.speaker_labels for d in read_table(exact).dialogues] == [["Ann"]] * 3


def test_unknown_speakers_get_the_closest_names():
    from safsd_glnet.data.tables import closest_names

    known = ["Chandler Bing", "Joey Tribbiani", "Monica Geller", "Mr. Geller", "Rachel Green", "Ross Geller"]
    assert closest_names("Monica", known) == ["Monica Geller"]  # first name
    assert closest_names("monica geller", known) == ["Monica Geller"]  # letter case
    assert closest_names("Rachel Gren", known)[0] == "Rachel Green"  # a typo
    assert closest_names("Gunther", known) == []
    assert closest_names("Ross", ["Ross Geller", "Ross"]) == ["Ross"]  # the same name beats a longer one
    assert closest_names("Ross", ["Ross Geller", "Rossi"]) == ["Ross Geller", "Rossi"]


def test_an_unknown_speaker_message_suggests_and_stays_one_line(tmp_path):
    names = [f"Extra {k}" for k in range(30)] + ["Monica Geller"]
    p = write_csv(tmp_path / "m.csv", [["test", "x", 0, "Monica", "sad", "Hi."]])
    message = error_of(read_table, p, speaker_names=names)
    assert "speaker 'Monica' is unknown to the model; did you mean 'Monica Geller'? (the model knows 31 names)" \
        in message and "\n" not in message and "Extra 0" not in message
