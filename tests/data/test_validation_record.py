"""Every corpus says which validation split it carries (safsd_glnet.data.validation), and the
MELD pickles use the official dev dialogues by default."""
from __future__ import annotations

import json

import numpy as np
import pytest

from safsd_glnet.features.audio import add_audio_modality
from safsd_glnet.data import load_data
from safsd_glnet.data.corpus import Corpus, DataError, Dialogue
from safsd_glnet.data.kit_format import load_corpus, save_corpus
from safsd_glnet.data.sdt_pickle import load_sdt_pickle
from safsd_glnet.data.synthetic import make_synthetic
from safsd_glnet.data.tables import read_meld_csvs, read_table
from safsd_glnet.data.validation import check, describe, for_run, of_table_splits, record, shared
from safsd_glnet.dataset_facts import COSMIC_IEMOCAP_VALID_IDS
from sdt_fixtures import write_sdt_pickle
from table_fixtures import MELD_HEADER, SMALL_ROWS, write_csv

SIZES = {"t": 4, "a": 3, "v": 2}
TRAIN_IDS = list(range(20))  # MELD's numbering: train 0..1038, dev 1039..1152, test 1153..
DEV_IDS = list(range(1039, 1153))
TEST_IDS = list(range(1153, 1161))


def _meld_pickle(path, ids):
    """A small MELD-layout pickle whose dialogues carry ``ids``; the last 8 are testVid."""
    return write_sdt_pickle(path, "meld", sizes=SIZES, seed=1, ids=ids, num_test=len(TEST_IDS), lengths=(1, 3))


# ------------------------------------------------------------------------------ MELD pickles


def test_meld_pickle_with_every_dev_id_validates_on_them_by_default(tmp_path):
    path = tmp_path / "meld.pkl"
    _meld_pickle(path, TRAIN_IDS + DEV_IDS + TEST_IDS)
    corpus = load_sdt_pickle(path)
    assert corpus.splits["valid"] == [str(i) for i in DEV_IDS]
    assert corpus.splits["train"] == [str(i) for i in TRAIN_IDS]
    assert corpus.validation == {"kind": "official-dev"}
    assert describe(for_run(corpus)) == "official dev (114 dialogues)"
    # the same through load_data and --valid-ids meld-dev
    assert load_data(str(path)).splits == corpus.splits
    named = load_sdt_pickle(path, valid_ids="meld-dev")
    assert named.splits == corpus.splits and named.validation == {"kind": "official-dev"}


def test_meld_pickle_seeded_draw_only_when_asked(tmp_path):
    path = tmp_path / "meld.pkl"
    _meld_pickle(path, TRAIN_IDS + DEV_IDS + TEST_IDS)
    corpus = load_sdt_pickle(path, valid_fraction=0.1, seed=3)
    train_ids = sorted(TRAIN_IDS + DEV_IDS)  # the 134 ids of trainVid, in the loader's order
    chosen = np.random.default_rng(3).permutation(len(train_ids))[:13]  # round(0.1 * 134)
    assert set(corpus.splits["valid"]) == {str(train_ids[i]) for i in chosen}
    assert corpus.validation == {"kind": "seeded-fraction", "fraction": 0.1, "seed": 3}
    assert describe(for_run(corpus)) == "10% of training dialogues drawn with seed 3 (13 dialogues)"
    assert load_data(str(path), valid_fraction=0.1, seed=3).splits == corpus.splits


def test_meld_pickle_without_the_dev_block_falls_back_to_the_seeded_draw(tmp_path):
    path = tmp_path / "meld.pkl"
    missing = [i for i in DEV_IDS if i != 1100]  # one dev dialogue absent: the block is not MELD's dev
    _meld_pickle(path, TRAIN_IDS + missing + TEST_IDS)
    corpus = load_sdt_pickle(path)
    train_ids = sorted(TRAIN_IDS + missing)
    chosen = np.random.default_rng(0).permutation(len(train_ids))[:13]
    assert set(corpus.splits["valid"]) == {str(train_ids[i]) for i in chosen}
    assert corpus.validation == {"kind": "seeded-fraction", "fraction": 0.1, "seed": 0}
    assert load_sdt_pickle(path, seed=4).validation["seed"] == 4


def test_iemocap_pickle_and_explicit_choices_record_themselves(tmp_path):
    path = tmp_path / "iemocap.pkl"
    fields = write_sdt_pickle(path, "iemocap", num_dialogues=12, sizes=SIZES, seed=2, num_test=2)
    assert load_sdt_pickle(path).validation == {"kind": "seeded-fraction", "fraction": 0.1, "seed": 0}
    assert load_sdt_pickle(path, valid_fraction=0.0).validation == {"kind": "none"}
    chosen = fields["trainVid"][:2]
    by_file = load_sdt_pickle(path, valid_ids=chosen, valid_ids_file="mine.txt")
    assert by_file.splits["valid"] == sorted(chosen)
    assert by_file.validation == {"kind": "ids", "file": "mine.txt"}
    assert describe(for_run(by_file)) == "ids from mine.txt (2 dialogues)"
    assert load_sdt_pickle(path, valid_ids=chosen).validation == {"kind": "ids", "file": None}
    with pytest.raises(ValueError, match="exclude each other"):
        load_sdt_pickle(path, valid_ids=chosen, valid_fraction=0.2)


# ------------------------------------------------------------------------ other loaders


def test_synthetic_corpus_records_its_seed():
    corpus = make_synthetic("iemocap", seed=5, num_dialogues=20, feature_sizes={"t": 4})
    assert corpus.validation == {"kind": "synthetic", "seed": 5}
    assert load_data("synthetic:meld:seed=2:num_dialogues=20").validation == {"kind": "synthetic", "seed": 2}


def test_kit_format_round_trips_the_record(tmp_path):
    path = tmp_path / "meld.pkl"
    _meld_pickle(path, TRAIN_IDS + DEV_IDS + TEST_IDS)
    for corpus in (load_sdt_pickle(path), load_sdt_pickle(path, valid_fraction=0.25, seed=7),
                   make_synthetic("meld", seed=3, num_dialogues=30, feature_sizes={"t": 4})):
        save_corpus(corpus, tmp_path / "c.npz")
        assert load_corpus(tmp_path / "c.npz").validation == corpus.validation


def _rewrite_meta(path, change):
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["meta"].tobytes().decode("utf-8"))
    change(meta)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_older_kit_files_without_the_record_still_load(tmp_path):
    path = tmp_path / "old.npz"
    corpus = make_synthetic("iemocap", seed=1, num_dialogues=20, feature_sizes={"t": 4})
    save_corpus(corpus, path)
    _rewrite_meta(path, lambda meta: meta.pop("validation"))
    old = load_corpus(path)
    assert old.validation == {"kind": "unknown"} and old.splits == corpus.splits
    assert describe(for_run(old)) == f"not recorded ({len(corpus.splits['valid'])} dialogues)"

    def no_valid(meta):
        meta.pop("validation")
        meta["splits"]["train"] += meta["splits"].pop("valid")

    save_corpus(corpus, path)
    _rewrite_meta(path, no_valid)
    assert load_corpus(path).validation == {"kind": "none"}


@pytest.mark.parametrize("bad, words", [
    ("official", ["JSON object", "str"]),
    ({"kind": "dev"}, ["'dev'", "official-dev"]),
    ({"kind": "seeded-fraction", "fraction": 0.1}, ["needs the fields", "seed"]),
    ({"kind": "seeded-fraction", "fraction": 2.0, "seed": 0}, ["fraction", "(0, 1)"]),
    ({"kind": "seeded-fraction", "fraction": 0.1, "seed": True}, ["'seed'", "bool"]),
    ({"kind": "ids", "file": 3}, ["'file'", "str or null"]),
    ({"kind": "none", "extra": 1}, ["needs the fields", "extra"]),
])
def test_a_bad_record_in_a_kit_file_is_named(tmp_path, bad, words):
    path = tmp_path / "c.npz"
    save_corpus(make_synthetic("iemocap", seed=1, num_dialogues=20, feature_sizes={"t": 4}), path)
    _rewrite_meta(path, lambda meta: meta.update(validation=bad))
    with pytest.raises(DataError) as err:
        load_corpus(path)
    message = str(err.value)
    assert all(w in message for w in [str(path), "meta.validation", *words]), message


def test_meld_csvs_are_the_official_dev_split(tmp_path):
    def csv(name, dialogue):
        return write_csv(tmp_path / name, [[1, "Hi", "Ross", "joy", "neutral", dialogue, 0, 1, 1, "", ""]],
                         header=MELD_HEADER)

    table = read_meld_csvs(csv("tr.csv", 0), csv("dv.csv", 0), csv("te.csv", 0))
    assert table.validation == {"kind": "official-dev"}


def test_tables_name_cosmic_given_or_none(tmp_path):
    cosmic = [["valid", did, 0, "M", "sad", "Hi."] for did in COSMIC_IEMOCAP_VALID_IDS]
    rows = [["train", "Ses01F_impro01", 0, "F", "happy", "Yes."], ["test", "Ses05F_impro01", 0, "M", "sad", "No."]]
    assert read_table(write_csv(tmp_path / "a.csv", rows + cosmic)).validation == {"kind": "cosmic-12"}
    assert read_table(write_csv(tmp_path / "b.csv", rows + cosmic[:11])).validation == {"kind": "given"}
    assert read_table(write_csv(tmp_path / "c.csv", SMALL_ROWS)).validation == {"kind": "given"}
    assert read_table(write_csv(tmp_path / "d.csv", rows)).validation == {"kind": "none"}
    # one file per split: the valid file states the split
    header = ["dialogue_id", "utterance_index", "speaker", "emotion", "text"]
    per_split = {"train": write_csv(tmp_path / "tr.csv", [r[1:] for r in rows[:1]], header=header),
                 "dev": write_csv(tmp_path / "dv.csv", [r[1:] for r in cosmic], header=header)}
    assert read_table(per_split).validation == {"kind": "cosmic-12"}
    assert of_table_splits(list(COSMIC_IEMOCAP_VALID_IDS) + ["x"]) == {"kind": "given"}


def _corpus(validation):
    dialogues = {k: Dialogue(k, np.zeros(2, dtype=np.int64), np.array([0, 1]), {"t": np.ones((2, 3), np.float32)})
                 for k in ("a", "b", "c")}
    return Corpus("c", ["x", "y"], ["s"], {"t": 3}, dialogues, {"train": ["a"], "valid": ["b"], "test": ["c"]},
                  validation=validation).validate()


def test_derived_corpora_keep_the_record():
    corpus = _corpus(record("official-dev"))
    assert corpus.with_modalities(("t",)).validation == {"kind": "official-dev"}
    audio = {k: np.zeros((2, 5), np.float32) for k in corpus.dialogues}
    assert add_audio_modality(corpus, audio).validation == {"kind": "official-dev"}
    assert Corpus("c", ["x"], ["s"], {"t": 1}, {}).validation == {"kind": "unknown"}  # built in code


def test_records_are_checked_described_and_shared():
    assert check({"kind": "seeded-fraction", "fraction": 0.2, "seed": 1}, "w") == \
        {"kind": "seeded-fraction", "fraction": 0.2, "seed": 1}
    with pytest.raises(DataError, match="^here: validation kind int"):
        check({"kind": 1}, "here")
    with pytest.raises(DataError, match="fraction"):
        record("seeded-fraction", fraction=0.0, seed=0)
    assert describe(None) == "not recorded"
    assert describe({"kind": "cosmic-12", "dialogues": 12}) == "COSMIC's validation dialogues (12 dialogues)"
    assert describe({"kind": "none", "dialogues": 0}) == "none"
    assert describe({"kind": "synthetic", "seed": 4, "dialogues": 1}) == \
        "the validation dialogues of synthetic data seed 4 (1 dialogue)"
    a, b = {"kind": "official-dev", "dialogues": 114}, {"kind": "none", "dialogues": 0}
    assert shared([a, dict(a)]) == a
    assert shared([a, b, a, None]) == [a, b, None]
