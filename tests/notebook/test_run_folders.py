"""Run folders in notebooks (safsd_glnet.notebook.run_folders) and the SAF comparison's tables (safsd_glnet.notebook.saf_comparison)."""
import numpy as np
import pytest

from safsd_glnet.notebook import saf_comparison as comparison, run_folders as runs
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
    # every model or loss parameter of notebook 4 names the variant (the amended SAF's too)
    assert runs.variant_name({**base, "SAF_EPS": 0.2, "SAF_BETA": 1.0}) == "saf_eps=0.2+saf_beta=1.0"
    # training longer than the notebooks' default is a run of its own, beside the first
    assert runs.NOTEBOOK_EPOCHS == 16
    assert runs.variant_name({**base, "EPOCHS": 30}) == "epochs=30"
    assert str(runs.manual_run_dir({**base, "USE_SAF": False, "EPOCHS": 4})) == \
        "../runs/ablation/use_saf=false+epochs=4-seed2"


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
    # a notebook shows it as its one line, without a traceback (IPython's _render_traceback_)
    assert info.value._render_traceback_() == [f"RunFolderTaken: {info.value}"]
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="already holds a run.*OVERWRITE = True"):
        runs.train_here(cfg, corpus, tmp_path / "run")
    assert (tmp_path / "run" / "metrics.json").read_bytes() == before
    assert runs.train_here(other, corpus, tmp_path / "run", overwrite=True).metrics["epochs_run"] == 2
    # the finished run keeps its data's fingerprint, so that notebook 3 can reuse it
    assert runs.reusable(other, corpus, tmp_path / "run")
    # the same settings on other data: resuming would mix two corpora in one run
    before = (tmp_path / "run" / "metrics.json").read_bytes()
    bigger = make_synthetic("iemocap", feature_sizes={"t": 8, "a": 6, "v": 4}, num_dialogues=12)
    with pytest.raises(runs.RunFolderTaken, match="made on other data.*OVERWRITE = True"):
        runs.train_here(other, bigger, tmp_path / "run", resume=True)
    assert (tmp_path / "run" / "metrics.json").read_bytes() == before
    assert runs.train_here(other, bigger, tmp_path / "run", overwrite=True).metrics["epochs_run"] == 2
    assert runs.reusable(other, bigger, tmp_path / "run") and not runs.reusable(other, corpus, tmp_path / "run")


def test_a_run_is_reused_across_notebooks_whatever_its_progress_display(tmp_path):
    """Notebook 2 trains with its live progress (train.progress true) into runs/02_training;
    notebook 3 asks for the same run without it: the same run, read back. Another setting or
    other data is not."""
    corpus = make_synthetic("iemocap", feature_sizes={"t": 8, "a": 6, "v": 4}, num_dialogues=9)
    cfg = preset("tiny").replace(train={"epochs": 1, "progress": True})
    runs.train_or_reuse(cfg, corpus, tmp_path / "02_training")
    quiet = cfg.replace(train={"progress": False, "save_every_s": 5.0})
    assert runs.reusable(quiet, corpus, tmp_path / "02_training")
    assert runs.find_reusable(quiet, corpus, [tmp_path / "nowhere", tmp_path / "02_training"]) == tmp_path / "02_training"
    assert runs.find_reusable(quiet, corpus, [tmp_path]) == tmp_path / "02_training"  # a folder of run folders
    assert runs.find_reusable(quiet.replace(train={"seed": 1}), corpus, [tmp_path]) is None
    assert runs.find_reusable(quiet.replace(loss={"use_saf": False}), corpus, [tmp_path]) is None
    other = make_synthetic("iemocap", feature_sizes={"t": 8, "a": 6, "v": 4}, num_dialogues=9, seed=5)
    assert runs.find_reusable(quiet, other, [tmp_path]) is None


def test_student_loss_names_say_the_weight_when_it_is_not_one():
    cfg = preset("tiny")
    assert runs.student_loss_name(cfg) == "SAF (penalty lambda 2, vad)"
    assert runs.student_loss_name(cfg.replace(loss={"saf_mode": "soft"})) == "SAF (soft eps 0.1, vad)"
    assert runs.student_loss_name(cfg.replace(loss={"use_saf": False})) == "no SAF (CE students)"
    assert runs.student_loss_name(cfg.replace(loss={"use_saf": False, "student_weight": 0.21347})) == \
        "no SAF (CE students, g2 0.213)"
    assert runs.student_loss_name(cfg.replace(loss={"saf_lambda": 0.5, "similarity": "prior"})) == \
        "SAF (penalty lambda 0.5, prior)"


def test_run_folder_listing_leaves_out_hidden_files(tmp_path):
    (tmp_path / "metrics.json").write_text("{}" * 600)
    (tmp_path / ".lock").write_text("")
    (tmp_path / "sub").mkdir()
    assert runs.folder_files(tmp_path) == [{"file": "metrics.json", "KiB": pytest.approx(1200 / 1024)}]


class FakeRun:
    def __init__(self, valid, test, valid_confusion=None):
        self.metrics = {"valid": {"weighted_f1": valid, "confusion": valid_confusion},
                        "test": {"weighted_f1": test}}


def test_seed_table_and_its_text():
    study = comparison.Comparison(None, [0, 1, 2])
    study.runs = {"SAF": {0: FakeRun(50, 40), 1: FakeRun(52, 41), 2: FakeRun(54, 45)},
                  "control": {0: FakeRun(51, 44), 1: FakeRun(55, 43), 2: FakeRun(54, 46)}}
    study.roles = {"saf": "SAF", "ce_scaled": "control"}
    saf, ce = comparison.seed_table(study)
    assert saf["valid_mean"] == pytest.approx(52.0) and saf["valid_std"] == pytest.approx(2.0)
    diff = np.array([50 - 51, 52 - 55, 54 - 54.0])  # SAF minus the control, seed by seed
    assert ce["valid_diff"] == pytest.approx(diff.mean())
    assert ce["valid_diff_se"] == pytest.approx(diff.std(ddof=1) / np.sqrt(3))
    assert "valid_diff" not in saf and ce["role"] == "ce_scaled"
    text = comparison.format_seed_table([saf, ce])
    assert text[0]["valid w-F1"] == "52.00 ± 2.00"
    assert text[1]["valid: SAF minus this"] == f"-1.33 ± {ce['valid_diff_se']:.2f}"
    assert text[1]["role"].startswith("scale-matched control")
    one = comparison.Comparison(None, [0])
    one.runs = {"SAF": {0: FakeRun(50, 40)}, "no SAF": {0: FakeRun(51, 44)}}
    row = comparison.format_seed_table(comparison.seed_table(one))
    assert row[0]["valid w-F1"] == "50.00" and row[1]["test: SAF minus this"] == "-4.00"  # one seed: no spread


def history_of(students, epoch=1):
    return {"history": [{"epoch": epoch, "loss": {"teacher_ce": 9.0, "total": 99.0, "kl_t": 5.0,
                                                   **{f"student_{m}": v for m, v in students.items()}}}]}


def test_scale_ratio_of_the_control_by_hand():
    """r = mean over seeds of the SAF runs' first-epoch student term (itself the mean over the
    student modalities) / the same mean of the CE runs."""
    saf = [history_of({"t": 0.2, "a": 0.4}), history_of({"t": 0.3, "a": 0.3})]  # 0.3, 0.3
    ce = [history_of({"t": 1.0, "a": 2.0}), history_of({"t": 1.5, "a": 1.5})]  # 1.5, 1.5
    assert comparison.first_epoch_student_term(saf[0]) == pytest.approx(0.3)
    scale = comparison.scale_ratio(saf, ce)
    assert scale == pytest.approx({"saf_term": 0.3, "ce_term": 1.5, "r": 0.2})
    with pytest.raises(ValueError, match="epoch 2"):
        comparison.first_epoch_student_term(history_of({"t": 1.0}, epoch=2))


def test_pair_rates_over_the_seeds_by_hand():
    names = ["happy", "sad", "neutral", "angry", "excited", "frustrated"]
    corpus = make_synthetic("iemocap", feature_sizes={"t": 4}, num_dialogues=6)
    assert list(corpus.class_names) == names
    k = np.eye(6, dtype=int) * 10
    k2 = k.copy()
    k[0, 4] = 10  # seed 0: half of happy taken for excited (50%), excited never for happy
    k2[4, 0] = 5  # seed 1: a third of excited taken for happy
    study = comparison.Comparison(corpus, [0, 1])
    study.runs = {"SAF": {0: FakeRun(0, 0, k.tolist()), 1: FakeRun(0, 0, k2.tolist())}}
    row = comparison.pair_rate_table(study, "valid")[0]
    # happy/excited: seed 0 (50 + 0) / 2 = 25, seed 1 (0 + 100 / 3) / 2; their mean
    assert row["happy/excited"] == pytest.approx((25 + 50 / 3) / 2)
    assert row["angry/frustrated"] == 0.0
    pairs = [key for key in row if "/" in key]
    assert row["all pairs"] == pytest.approx(np.mean([row[key] for key in pairs]))


def test_compare_saf_trains_saf_ce_and_the_scale_matched_control(tmp_path):
    """Per seed: SAF, CE at SAF's weight, then CE at g2 = r (r from the first epochs of all
    seeds); the two CE runs differ from SAF only in the student loss and its weight. A finished
    run elsewhere (notebook 2's) is read back, and running again trains nothing."""
    corpus = make_synthetic("iemocap", feature_sizes={"t": 8, "a": 6, "v": 4}, num_dialogues=9)
    cfg = preset("tiny").replace(train={"epochs": 1})
    runs.train_or_reuse(cfg.replace(train={"progress": True}), corpus, tmp_path / "02_training")  # seed 0, SAF
    said, titles = [], []
    study = comparison.compare_saf(cfg, corpus, tmp_path / "work", [0, 1], reuse_from=[tmp_path / "02_training"],
                                   callback_factory=lambda title, epochs: titles.append((title, epochs)),
                                   log=said.append)
    saf, control, ce = (study.roles[r] for r in ("saf", "ce_scaled", "ce"))
    assert study.labels == [saf, control, ce] and saf == "SAF (penalty lambda 2, vad)" and ce == "no SAF (CE students)"
    assert study.run(saf, 0).folder == tmp_path / "02_training", "notebook 2's run is reused for seed 0"
    assert not (tmp_path / "work" / "saf-seed0").exists()
    expected = comparison.scale_ratio([study.run(saf, s).metrics for s in (0, 1)],
                                      [study.run(ce, s).metrics for s in (0, 1)])
    assert study.scale == pytest.approx(expected) and 0 < study.scale["r"]
    for seed in (0, 1):
        a, b, c = (study.run(label, seed).config for label in (saf, control, ce))
        assert b.loss.student_weight == pytest.approx(expected["r"]) and not b.loss.use_saf and not c.loss.use_saf
        assert c.loss.student_weight == 1.0 and a.loss.use_saf
        assert a.replace(loss={"use_saf": False}) == c and c.replace(loss={"student_weight": expected["r"]}) == b
        assert study.run(control, seed).folder == tmp_path / "work" / f"ce_scaled-seed{seed}"
    assert control == f"no SAF (CE students, g2 {expected['r']:.3g})"
    assert len(titles) == 5 and titles[0] == ("seed 0, no SAF (CE students)", 1)  # seed 0's SAF run was reused
    assert any(f"r = {expected['r']:.4f}" in line for line in said)
    # again: every run is read back
    titles.clear()
    again = comparison.compare_saf(cfg, corpus, tmp_path / "work", [0, 1], reuse_from=[tmp_path / "02_training"],
                                   callback_factory=lambda title, epochs: titles.append(title), log=None)
    assert titles == [] and again.scale == study.scale
    rows = comparison.seed_table(again)
    assert [r["role"] for r in rows] == ["saf", "ce_scaled", "ce"]


def test_sample_is_fixed_and_sorted():
    a = comparison.sample(100, 10)
    assert len(a) == 10 and list(a) == sorted(a) and np.array_equal(a, comparison.sample(100, 10))
    assert np.array_equal(comparison.sample(5, 10), np.arange(5)) and len(comparison.sample(7, 0)) == 7


def test_demo_and_figures_on_meld_refuse_a_missing_folder_in_one_line(tmp_path, capsys):
    from safsd_glnet.cli import commands as cli
    from safsd_glnet.grids import demo as sequence

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
