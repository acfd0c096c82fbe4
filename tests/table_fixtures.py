"""Small utterance tables shared by ``test_tables.py`` and ``test_features.py``."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
HEADER = ["split", "dialogue_id", "utterance_index", "speaker", "emotion", "text"]
MELD_HEADER = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID",
               "Season", "Episode", "StartTime", "EndTime"]

# Three small IEMOCAP-style dialogues; rows deliberately out of order inside dialogue d1.
SMALL_ROWS = [
    ["train", "d1", 1, "F", "sad", "Okay."],
    ["train", "d1", 0, "M", "neutral", "How you doing?"],
    ["train", "d1", 2, "M", "happy", "We\u2019re all going to miss him."],
    ["train", "d2", 0, "F", "angry", "Leave me alone."],
    ["train", "d2", 1, "F", "frustrated", "I said leave."],
    ["dev", "d3", 0, "M", "excited", "We won!"],
    ["dev", "d3", 1, "F", "excited", "No way!"],
    ["test", "d4", 0, "F", "neutral", "Fine."],
    ["test", "d4", 1, "M", "sad", "It is over."],
    ["test", "d4", 2, "F", "happy", "Good."],
]


def write_csv(path: Path, rows, header=HEADER, encoding="utf-8") -> Path:
    with open(path, "w", newline="", encoding=encoding) as f:
        w = csv.writer(f)
        if header is not None:
            w.writerow(header)
        w.writerows(rows)
    return path


def csv_bytes(rows, header=HEADER, delimiter=",", encoding="utf-8", bom=b"") -> bytes:
    """A table as Excel writes it: CRLF line ends, fields quoted only where needed."""
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\r\n")
    if header is not None:
        w.writerow(header)
    w.writerows(rows)
    return bom + buf.getvalue().encode(encoding)


def shared_data(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"../shared/data not found: {path} is absent (the real MELD / IEMOCAP tables)")
    return path


@pytest.fixture
def small_csv(tmp_path) -> Path:
    return write_csv(tmp_path / "small.csv", SMALL_ROWS)
