"""Run folders in notebooks (safsd_glnet.runs) and the SAF comparison's tables (safsd_glnet.comparison)."""
import numpy as np
import pytest

from safsd_glnet import comparison, runs
from safsd_glnet.config import preset
from safsd_glnet.data import make_synthetic
from safsd_glnet.data.corpus import DataError


def test_result_rows_read_the_reference_epochs_macro_f1():
    history = [{"epoch": e, "test": {"macro_f1": 40.0 + e}} for e in (1, 2, 3)]
    metrics = {"chosen_epoch": 3, "test": {"accuracy": 50.0, "weighted_f1": 49.0, "macro_f1": 43.0},
               "reference_protocol": {"epoch": 2, "accuracy": 52.0, "weighted_f1": 51.0}, "history": history}
    honest, reference = runs.result_rows(metrics)
    assert honest["macro F1"] == 43.0 and honest["protocol"].startswith("honest: epoch 3")
    assert reference["macro F1"] == 42.0 and reference["weighted F1"] == 51.0 and "epoch 2" in reference["protocol"]
    assert runs.result_rows({**metrics, "history": []})[1]["macro F1"] == "n/a"


def test_variant_names_and_folders_of_runs_made_by_hand():
    base = {"USE_SAF": None, "GAMMA": None, "EPOCHS": 16, "SEED": 2, "SET": [], "DATA": "synthetic:iemocap"}
    assert runs.variant_name(base) == "full"
    assert runs.variant_name({**base, "USE_SAF": False}) == "use_saf=false"
    assert runs.variant_name({**base, "GAMMA": 0.0, "SET": ["model.window_past=4"]}) == "gamma=0.0+model.window_past=4"
    assert str(runs.manual_run_dir({**base, "USE_SAF": False})) == "../runs/ablation/use_saf=false-seed2"


def test_for_corpus_keeps_the_modalities_the_data_has():
    corpus = make_synthetic("iemocap", feature_sizes={"t": 8}, num_dialogues=6)
    said = []
    cfg = runs.for_corpus(preset("tiny"), corpus, said.append)
    assert cfg.model.modalities == ("t",) and "text features only" in said[0]
    assert runs.for_corpus(cfg, corpus, said.append) == cfg and len(said) == 1  # nothing to change, nothing said


def test_train_here_refuses_a_folder_of_another_run_in_the_notebooks_terms(tmp_path):
    corpus = make_synthetic("iemocap", feature_sizes={"t": 8, "a": 6, "v": 4}, num_dialogues=9)
    cfg = preset("tiny").replace(train={"epochs": 1})
    runs.train_here(cfg, corpus, tmp_path / "run")
    before = (tmp_path / "run" / "metrics.json").read_bytes()
    other = cfg.replace(train={"epochs": 2})
    with pytest.raises(DataError, match="other settings.*OVERWRITE = True.*RUN_DIR") as info:
        runs.train_here(other, corpus, tmp_path / "run", resume=True)
    assert "--" not in str(info.value)
    with pytest.raises(DataError, match="already holds a run.*OVERWRITE = True"):
        runs.train_here(cfg, corpus, tmp_path / "run")
    assert (tmp_path / "run" / "metrics.json").read_bytes() == before
    assert runs.train_here(other, corpus, tmp_path / "run", overwrite=True).metrics["epochs_run"] == 2


class FakeRun:
    def __init__(self, valid, test):
        self.metrics = {"valid": {"weighted_f1": valid}, "test": {"weighted_f1": test}}


def test_seed_table_and_its_text():
    study = comparison.Comparison(None, [0, 1, 2])
    study.runs = {"SAF": {0: FakeRun(50, 40), 1: FakeRun(52, 41), 2: FakeRun(54, 45)},
                  "no SAF": {0: FakeRun(51, 44), 1: FakeRun(55, 43), 2: FakeRun(54, 46)}}
    saf, ce = comparison.seed_table(study)
    assert saf["valid_mean"] == pytest.approx(52.0) and saf["valid_std"] == pytest.approx(2.0)
    diff = np.array([1.0, 3.0, 0.0])
    assert ce["valid_diff"] == pytest.approx(diff.mean())
    assert ce["valid_diff_se"] == pytest.approx(diff.std(ddof=1) / np.sqrt(3))
    assert "valid_diff" not in saf
    text = comparison.format_seed_table([saf, ce])
    assert text[0]["valid w-F1"] == "52.00 ± 2.00" and text[1]["valid: minus SAF"] == f"+1.33 ± {ce['valid_diff_se']:.2f}"
    one = comparison.Comparison(None, [0])
    one.runs = {"SAF": {0: FakeRun(50, 40)}, "no SAF": {0: FakeRun(51, 44)}}
    row = comparison.format_seed_table(comparison.seed_table(one))
    assert row[0]["valid w-F1"] == "50.00" and row[1]["test: minus SAF"] == "+4.00"  # one seed: no spread


def test_sample_is_fixed_and_sorted():
    a = comparison.sample(100, 10)
    assert len(a) == 10 and list(a) == sorted(a) and np.array_equal(a, comparison.sample(100, 10))
    assert np.array_equal(comparison.sample(5, 10), np.arange(5)) and len(comparison.sample(7, 0)) == 7


def test_demo_and_figures_on_meld_refuse_a_missing_folder_in_one_line(tmp_path, capsys):
    from safsd_glnet import cli, sequence

    assert cli.main(["figures", "--meld", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no such folder" in err and "safsd-glnet data meld" in err
    (tmp_path / "empty").mkdir()
    assert cli.main(["demo", "--meld", str(tmp_path / "empty")]) == 2
    assert "not the MELD text release" in capsys.readouterr().err
    from test_explore import meld_folder

    settings = sequence.real_meld_settings(meld_folder(tmp_path / "meld"))
    assert settings["DATA"] == str((tmp_path / "meld").resolve()) and settings["BROWSE"] == []
    assert "loss.class_weights=none" in settings["SET"] and settings["PRESET"] == "small"
