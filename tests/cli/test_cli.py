"""The command line end to end, in-process (``main(argv)``) and through the installed script."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from safsd_glnet.cli.commands import build_parser, main
from safsd_glnet.data import load_corpus
from sdt_fixtures import write_sdt_pickle

SIZES = "t=24,a=16,v=8"


def test_every_command_has_help(capsys):
    commands = ["train", "evaluate", "predict", "convert", "synth", "demo", "features"]
    for command in commands:
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        assert "usage: safsd-glnet " + command in capsys.readouterr().out
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(commands) <= set(sub.choices)


def test_synth_train_evaluate_predict(tmp_path, capsys):
    data = tmp_path / "synth.npz"
    assert main(["synth", "--profile", "meld", "--sizes", SIZES, "--dialogues", "40", "--out", str(data)]) == 0
    corpus = load_corpus(data)
    assert corpus.feature_sizes == {"t": 24, "a": 16, "v": 8} and len(corpus.dialogues) == 40

    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--preset", "tiny", "--epochs", "2", "--no-progress",
                 "--set", "loss.similarity=identity", "--out", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and metrics["class_names"][0] == "neutral"
    assert metrics["validation"] == {"kind": "synthetic", "seed": 0, "dialogues": len(corpus.splits["valid"])}
    assert json.loads((run / "config.json").read_text())["loss"]["similarity"] == "identity"
    assert (run / "confusion.png").exists() and (run / "confusion.pdf").exists()

    capsys.readouterr()
    out_json = tmp_path / "eval.json"
    assert main(["evaluate", "--checkpoint", str(run / "checkpoint_best.pt"), "--data", str(data),
                 "--out", str(out_json)]) == 0
    assert "weighted F1" in capsys.readouterr().out
    evaluated = json.loads(out_json.read_text())
    assert evaluated["weighted_f1"] == pytest.approx(metrics["test"]["weighted_f1"])

    preds = tmp_path / "preds.csv"
    assert main(["predict", "--checkpoint", str(run / "checkpoint_best.pt"), "--data", str(data),
                 "--split", "valid", "--out", str(preds)]) == 0
    rows = list(csv.DictReader(open(preds)))
    assert len(rows) == corpus.num_utterances("valid")
    assert set(r["prediction"] for r in rows) <= set(corpus.class_names)


def test_train_with_seeds_writes_a_summary(tmp_path, capsys):
    out = tmp_path / "seeds"
    assert main(["train", "--data", "synthetic:iemocap:num_dialogues=20", "--sizes", SIZES, "--preset", "tiny",
                 "--epochs", "1", "--seeds", "0", "1", "--no-progress", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    values = summary["test"]["weighted_f1"]["values"]
    per_seed = [json.loads((out / f"seed{k}" / "metrics.json").read_text())["test"]["weighted_f1"] for k in (0, 1)]
    assert values == pytest.approx(per_seed)
    assert summary["test"]["weighted_f1"]["mean"] == pytest.approx(sum(per_seed) / 2)
    assert summary["validation"] == {"kind": "synthetic", "seed": 0, "dialogues": 2}
    lines = capsys.readouterr().out.splitlines()
    assert lines.count("validation: the validation dialogues of synthetic data seed 0 (2 dialogues)") == 3, lines


def test_convert_a_standard_pickle(tmp_path):
    pkl = tmp_path / "iemocap_multimodal_features.pkl"
    write_sdt_pickle(pkl, "iemocap", num_dialogues=12, sizes={"t": 8, "a": 6, "v": 4})
    out = tmp_path / "iemocap.npz"
    assert main(["convert", "--pickle", str(pkl), "--out", str(out)]) == 0
    corpus = load_corpus(out)
    assert corpus.class_names[:2] == ["happy", "sad"] and corpus.splits["valid"]


@pytest.mark.parametrize("kind", ["iemocap", "meld"])
def test_paper_setting_command_trains_on_a_standard_pickle(tmp_path, kind):
    """The README's `train --data <kind>_multimodal_features.pkl --preset paper`, narrowed to a
    small width so that it runs in seconds; the pickle's layout decides IEMOCAP or MELD."""
    pkl = tmp_path / f"{kind}_multimodal_features.pkl"
    write_sdt_pickle(pkl, kind, num_dialogues=14, sizes={"t": 8, "a": 6, "v": 4})
    out = tmp_path / "run"
    assert main(["train", "--data", str(pkl), "--preset", "paper", "--set", "model.hidden=16", "--set", "model.heads=2",
                 "--epochs", "1", "--no-progress", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["gcn_layers"] == 4 and config["model"]["modalities"] == "tav"
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["test"]["per_class_f1"]) == (6 if kind == "iemocap" else 7)


def test_errors_are_clear_and_exit_2(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "missing.npz"), "--preset", "tiny"]) == 2
    assert "missing.npz" in capsys.readouterr().err
    data = tmp_path / "s.npz"
    main(["synth", "--sizes", SIZES, "--dialogues", "20", "--out", str(data)])
    other = tmp_path / "other.npz"
    main(["synth", "--sizes", "t=10,a=16,v=8", "--dialogues", "20", "--out", str(other)])
    run = tmp_path / "run"
    main(["train", "--data", str(data), "--preset", "tiny", "--epochs", "1", "--no-progress", "--out", str(run)])
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(run / "checkpoint_best.pt"), "--data", str(other)]) == 2
    err = capsys.readouterr().err
    assert "size 10" in err and "expects 24" in err
    assert main(["train", "--data", str(data), "--set", "model.hidden=oops"]) == 2


@pytest.mark.integration  # the installed script in a child process
def test_console_script_runs(tmp_path):
    exe = Path(sys.executable).parent / "safsd-glnet"
    if not exe.exists():
        pytest.skip(f"no safsd-glnet script beside {sys.executable}: the kit is not pip-installed here")
    result = subprocess.run([str(exe), "synth", "--sizes", SIZES, "--dialogues", "10", "--out", str(tmp_path / "x.npz")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "x.npz" in result.stdout


def test_figures_writes_the_architecture_diagram_and_meld_does_not(tmp_path, monkeypatch, capsys):
    from safsd_glnet.cli import commands as cli

    ran = []
    monkeypatch.setattr(cli, "_run_sequence", lambda args, what, notebooks=None: ran.append(args.figures) or 0)
    assert cli.main(["figures", "--figures", str(tmp_path / "fig"), "--out", str(tmp_path / "runs")]) == 0
    assert sorted(p.name for p in (tmp_path / "fig").iterdir()) == ["architecture.pdf", "architecture.png"]
    assert (tmp_path / "fig" / "architecture.png").read_bytes()[:4] == b"\x89PNG"
    assert "architecture diagram:" in capsys.readouterr().out and ran == [str(tmp_path / "fig")]
    assert cli.main(["figures", "--figures", str(tmp_path / "m"), "--out", str(tmp_path / "runs"),
                     "--meld", str(tmp_path)]) == 0
    assert not (tmp_path / "m").exists(), "the diagram depends on no data: only the synthetic run draws it"


def test_sequence_summary_lists_only_the_figures_it_wrote(tmp_path, capsys):
    import os
    import time

    from safsd_glnet.cli.commands import _print_sequence_result

    old, new = tmp_path / "speed_plot.png", tmp_path / "02_confusion.png"
    old.write_bytes(b"old")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    started = time.time() - 60
    new.write_bytes(b"new")
    _print_sequence_result({"seconds": {"02_training": 3.0}, "out_dir": tmp_path, "figures_dir": tmp_path},
                           started, "demo")
    out = capsys.readouterr().out
    assert "figures written (1 PNG" in out and "02_confusion.png" in out and "speed_plot.png" not in out


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_ignored_flags_are_refused(tmp_path, capsys):
    data = tmp_path / "s.npz"
    assert main(["synth", "--sizes", SIZES, "--dialogues", "20", "--out", str(data)]) == 0
    capsys.readouterr()
    for argv, message in (
        (["train", "--preset", "tiny", "--seed", "1", "--seeds", "1", "2"], "--seed and --seeds exclude each other"),
        (["train", "--preset", "tiny", "--data", str(data), "--valid-fraction", "0.2"], "--valid-fraction applies only"),
        (["train", "--preset", "tiny", "--data", str(data), "--sizes", SIZES], "--sizes applies only to synthetic"),
        (["train", "--preset", "tiny", "--data", str(data), "--valid-ids", "meld-dev"], "--valid-ids applies only"),
        (["train", "--preset", "tiny", "--sizes", "t=abc"], "--sizes 't=abc'"),
        (["train", "--preset", "tiny", "--sizes", "t=64,t=32"], "given twice"),
        (["train", "--preset", "tiny", "--device", "cuda:7"], "cuda"),
        (["train", "--preset", "tiny", "--set", "train.device=gpu"], "device='gpu'"),
        (["train", "--preset", "tiny", "--resume", "--overwrite"], "exclude each other"),
    ):
        before = set(tmp_path.iterdir())
        assert main(argv + ["--out", str(tmp_path / "never")]) == 2, argv
        assert message in one_error_line(capsys), argv
        assert set(tmp_path.iterdir()) == before, argv  # nothing was written


def test_predict_names_a_missing_split(tmp_path, capsys):
    from safsd_glnet.data import make_synthetic, save_corpus

    data = tmp_path / "s.npz"
    assert main(["synth", "--sizes", SIZES, "--dialogues", "20", "--out", str(data)]) == 0
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--preset", "tiny", "--epochs", "1", "--no-progress",
                 "--out", str(run)]) == 0
    corpus = make_synthetic("iemocap", feature_sizes={"t": 24, "a": 16, "v": 8}, num_dialogues=20)
    corpus.splits.pop("valid")
    save_corpus(corpus, tmp_path / "novalid.npz")
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(run / "checkpoint_best.pt"), "--data", str(tmp_path / "novalid.npz"),
                 "--split", "valid", "--out", str(tmp_path / "p.csv")]) == 2
    line = one_error_line(capsys)
    assert "no 'valid' split" in line and "train, test" in line
    assert not (tmp_path / "p.csv").exists()


def test_validation_ids_from_a_file(tmp_path, capsys):
    pkl = tmp_path / "meld_multimodal_features.pkl"
    write_sdt_pickle(pkl, "meld", num_dialogues=14, sizes={"t": 8, "a": 6, "v": 4})
    from safsd_glnet.data import load_sdt_pickle

    train_ids = load_sdt_pickle(pkl, valid_fraction=0.0).splits["train"]
    chosen = train_ids[:3]
    ids = tmp_path / "dev.txt"
    ids.write_text("# the dev dialogues\n" + "\n".join(chosen) + "\n")
    out = tmp_path / "c.npz"
    assert main(["convert", "--pickle", str(pkl), "--valid-ids", str(ids), "--out", str(out)]) == 0
    corpus = load_corpus(out)
    assert corpus.splits["valid"] == chosen
    assert set(corpus.splits["train"]) == set(train_ids) - set(chosen)
    assert corpus.validation == {"kind": "ids", "file": str(ids)}
    assert f"validation: ids from {ids} (3 dialogues)" in capsys.readouterr().out
    run = tmp_path / "run"
    assert main(["train", "--data", str(pkl), "--valid-ids", str(ids), "--preset", "tiny", "--epochs", "1",
                 "--no-progress", "--out", str(run)]) == 0
    assert json.loads((run / "metrics.json").read_text())["validation"] == {"kind": "ids", "file": str(ids),
                                                                           "dialogues": 3}
    capsys.readouterr()
    ids.write_text("no-such-dialogue\n")
    assert main(["convert", "--pickle", str(pkl), "--valid-ids", str(ids), "--out", str(out)]) == 2
    assert "no-such-dialogue" in one_error_line(capsys)
    # The official MELD dev block exists only in a full-size file: the small one says so.
    assert main(["convert", "--pickle", str(pkl), "--valid-ids", "meld-dev", "--out", str(out)]) == 2
    assert "1039" in one_error_line(capsys)


def test_the_paper_preset_of_the_other_corpus_is_pointed_out(tmp_path, capsys):
    pkl = tmp_path / "meld_multimodal_features.pkl"
    write_sdt_pickle(pkl, "meld", num_dialogues=14, sizes={"t": 8, "a": 6, "v": 4})
    assert main(["train", "--data", str(pkl), "--preset", "paper", "--set", "model.hidden=16", "--set",
                 "model.heads=2", "--epochs", "1", "--no-progress", "--out", str(tmp_path / "r")]) == 0
    assert "--preset paper-meld" in capsys.readouterr().err


def test_convert_and_synth_into_a_missing_folder_create_it(tmp_path):
    out = tmp_path / "new" / "folder" / "x.npz"
    assert main(["synth", "--sizes", SIZES, "--dialogues", "10", "--out", str(out)]) == 0
    assert load_corpus(out).feature_sizes["t"] == 24


@pytest.mark.skipif(not Path("/sys").is_dir(), reason="needs Linux's read-only /sys")
def test_features_checks_its_output_before_encoding(tmp_path, capsys, monkeypatch):
    from safsd_glnet.features import text as features

    def no_encoding(*args, **kwargs):
        raise AssertionError("the encoder was loaded although the output cannot be written")

    monkeypatch.setattr(features, "load_encoder", no_encoding)
    table = tmp_path / "t.csv"
    table.write_text("split,dialogue_id,utterance_index,speaker,emotion,text\ntrain,d1,0,A,happy,hi\n")
    assert main(["features", "--table", str(table), "--out", "/sys/safsd-x/t.npz", "--no-cache"]) == 2
    assert "cannot write" in one_error_line(capsys)


def test_an_out_file_never_replaces_a_runs_own_files(tmp_path, capsys):
    """``evaluate --out RUN/metrics.json`` or ``predict --out RUN/checkpoint_last.pt``: refused with
    one line (exit 2), the run's file unchanged. Only the command's own kind of file
    (``predict --out RUN/test_predictions.csv``) may be replaced, and only with ``--overwrite``."""
    data = tmp_path / "synth.npz"
    assert main(["synth", "--profile", "meld", "--sizes", SIZES, "--dialogues", "24", "--out", str(data)]) == 0
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--preset", "tiny", "--epochs", "1", "--no-progress",
                 "--out", str(run)]) == 0
    ckpt = str(run / "checkpoint_best.pt")
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    capsys.readouterr()
    attempts = [
        ["evaluate", "--checkpoint", ckpt, "--data", str(data), "--out", str(run / "metrics.json")],
        ["evaluate", "--checkpoint", ckpt, "--data", str(data), "--out", str(run / "config.json")],
        ["predict", "--checkpoint", ckpt, "--data", str(data), "--out", str(run / "checkpoint_last.pt")],
        ["predict", "--checkpoint", ckpt, "--data", str(data), "--out", str(run / "checkpoint_best.pt"),
         "--overwrite"],
        ["predict", "--checkpoint", ckpt, "--data", str(data), "--out", str(run / "test_predictions.csv")],
        ["synth", "--sizes", SIZES, "--dialogues", "8", "--out", str(run / "checkpoint_last.pt")],
        ["convert", "--pickle", str(tmp_path / "x.pkl"), "--out", str(run / "metrics.json")],
    ]
    for argv in attempts:
        assert main(argv) == 2, argv
        line = one_error_line(capsys)
        name = Path(argv[argv.index("--out") + 1]).name
        assert str(run / name) in line and "belongs to the run" in line, line
        if name == "test_predictions.csv":
            assert "--overwrite" in line
        assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before, argv
    # The command's own output kind, said explicitly: replaced.
    assert main(["predict", "--checkpoint", ckpt, "--data", str(data), "--out", str(run / "test_predictions.csv"),
                 "--overwrite"]) == 0
    rows = list(csv.DictReader(open(run / "test_predictions.csv")))
    assert len(rows) == load_corpus(data).num_utterances("test")


def test_threads_for_train_evaluate_and_predict(tmp_path, capsys):
    """--threads sets torch's CPU threads (as finetune's does); below 1 is one line and exit 2."""
    import torch

    before = torch.get_num_threads()
    data = tmp_path / "synth.npz"
    assert main(["synth", "--profile", "meld", "--sizes", SIZES, "--dialogues", "20", "--out", str(data)]) == 0
    try:
        torch.set_num_threads(2)
        assert main(["train", "--data", str(data), "--preset", "tiny", "--epochs", "1", "--no-progress",
                     "--threads", "1", "--out", str(tmp_path / "run")]) == 0
        assert torch.get_num_threads() == 1
        ckpt = str(tmp_path / "run" / "checkpoint_best.pt")
        for command in (["evaluate", "--checkpoint", ckpt, "--data", str(data)],
                        ["predict", "--checkpoint", ckpt, "--data", str(data), "--out", str(tmp_path / "p.csv")]):
            torch.set_num_threads(2)
            assert main([*command, "--threads", "1"]) == 0 and torch.get_num_threads() == 1, command
        capsys.readouterr()
        for command in ("train", "evaluate", "predict"):
            assert main([command, "--checkpoint", ckpt, "--data", str(data), "--threads", "0"]
                        if command != "train" else ["train", "--data", str(data), "--threads", "0"]) == 2
            err = capsys.readouterr().err
            assert err == f"safsd-glnet {command}: error: --threads 0: must be >= 1\n", err
    finally:
        torch.set_num_threads(before)


@pytest.mark.integration  # starts a fresh Python per module
@pytest.mark.parametrize("module", ["safsd_glnet.cli", "safsd_glnet"])
def test_python_dash_m_exits_with_the_commands_status(tmp_path, module):
    """``python -m safsd_glnet.cli`` and ``python -m safsd_glnet`` run the command line and exit with
    the status ``main`` returns (2 for a missing input file), not 0."""
    import subprocess
    import sys

    argv = ["convert", "--pickle", str(tmp_path / "missing.pkl"), "--out", str(tmp_path / "x.npz")]
    assert main(argv) == 2  # in-process, the same command
    proc = subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert "missing.pkl: pickle file not found" in proc.stderr
