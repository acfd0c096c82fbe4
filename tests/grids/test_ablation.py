"""The ablation runner: grids, skip / failure / resume / stale behaviour, collection and tables.

Most runner tests replace the notebook execution by a fake that writes a metrics.json (fast);
one test runs a small stand-in notebook through papermill in two worker processes, and
tests/grids/test_notebooks.py runs the real 04_ablation.ipynb.
"""
import json
import os
from pathlib import Path

import nbformat
import numpy as np
import pytest

from safsd_glnet.grids import ablation as ablate
from safsd_glnet.grids import ablation_report as report
from safsd_glnet.cli import commands as cli
from safsd_glnet.grids import papermill_runner as runner
from safsd_glnet.config import Config, preset
from safsd_glnet.data.atomic_files import read_json, write_json

ROOT = Path(__file__).resolve().parent.parent.parent


def fake_metrics(seed, offset=0.0):
    wf1 = 50.0 + offset + seed
    return {"corpus": "toy", "modalities": "tav", "chosen_epoch": 2,
            "test": {"accuracy": wf1 + 1, "weighted_f1": wf1, "macro_f1": wf1 - 3},
            "reference_protocol": {"weighted_f1": wf1 + 2, "accuracy": wf1 + 3, "epoch": 3}}


def make_notebook(path, body):
    """A stand-in for 04_ablation.ipynb: the same kind of parameters cell, then ``body``."""
    params = nbformat.v4.new_code_cell('DATA: str = "synthetic:iemocap"  # data\nSEED: int = 0  # seed\n'
                                       'USE_GCN: bool = True  # switch\nFAIL: bool = False  # raise on purpose\n'
                                       'RUN_DIR: str = "run"  # folder\nRESUME: bool = True  # resume')
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import json, pathlib"), params,
                                         nbformat.v4.new_code_cell(body)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture
def fake_notebook(tmp_path):
    return make_notebook(tmp_path / "04_ablation.ipynb", "pass")


@pytest.fixture
def calls(monkeypatch):
    """Replace notebook execution: record the parameters, write metrics.json, fail on FAIL."""
    seen = []

    def run_notebook(notebook, output, parameters, **kw):
        seen.append(dict(parameters))
        Path(output).write_text("{}")
        if parameters.get("FAIL"):
            raise runner.NotebookError(Path(notebook).name, Path(output), "RuntimeError", "asked to fail")
        offset = 0.0 if parameters.get("USE_GCN", True) else -5.0
        write_json(Path(parameters["RUN_DIR"]) / "metrics.json", fake_metrics(parameters["SEED"], offset))
        return Path(output)

    monkeypatch.setattr(ablate, "run_notebook", run_notebook)
    return seen


def grid(**changes):
    d = {"name": "toy", "seeds": [0, 1], "base": {"DATA": "synthetic:iemocap"},
         "variants": {"full": {"label": "full model"}, "no_gcn": {"label": "w/o GCN", "USE_GCN": False}}}
    d.update(changes)
    return ablate.Grid.from_dict(d, "toy.yaml")


# --------------------------------------------------------------------------- grids

def test_grid_runs_are_named_variant_seed(tmp_path):
    g = grid()
    runs = g.runs(tmp_path)
    assert [r.name for r in runs] == ["full-seed0", "full-seed1", "no_gcn-seed0", "no_gcn-seed1"]
    r = runs[3]
    assert r.label == "w/o GCN" and r.index == 1 and r.folder == tmp_path.resolve() / "no_gcn-seed1"
    assert r.parameters == {"DATA": "synthetic:iemocap", "USE_GCN": False, "SEED": 1, "RUN_DIR": str(r.folder)}


def test_relative_data_paths_are_taken_from_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    g = grid(base={"DATA": "data/iemocap.pkl"})
    assert g.runs(tmp_path / "out")[0].parameters["DATA"] == str(tmp_path / "data" / "iemocap.pkl")


@pytest.mark.parametrize("changes, message", [
    ({"variants": {}}, "variants must be a non-empty mapping"),
    ({"seeds": []}, "seeds must be a non-empty list"),
    ({"seeds": [0, 0]}, "seed listed twice"),
    ({"seeds": ["a"]}, "seeds must be a non-empty list of integers"),
    ({"base": {"SEED": 3}}, "SEED comes from the grid"),
    ({"base": {"RUN_DIR": "x"}}, "base sets RUN_DIR"),
    ({"variants": {"a/b": {}}}, "names a folder"),
    ({"variant": {}}, "unknown grid keys"),
])
def test_bad_grids_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        grid(**changes)


def test_unknown_parameters_are_refused_before_running(tmp_path, fake_notebook, calls):
    g = grid(variants={"typo": {"USE_GNC": False}})
    with pytest.raises(ValueError, match=r"variant 'typo' sets \['USE_GNC'\]"):
        ablate.run_grid(g, tmp_path / "out", notebook=fake_notebook, progress=False, log=None)
    assert calls == []


@pytest.mark.parametrize("name", ["paper.yaml", "quick.yaml"])
def test_shipped_grids_match_the_ablation_notebook(name):
    g = ablate.Grid.load(ROOT / "ablations" / name)
    g.check_parameters(runner.notebook_parameters(runner.notebook_path("04_ablation.ipynb")))
    for v in g.variants:  # every variant is a valid configuration
        ablate.config_from_parameters({**g.base, **v.parameters, "SEED": 0})


def test_paper_grid_has_the_papers_ablation_set():
    g = ablate.Grid.load(ROOT / "ablations" / "paper.yaml")
    configs = {v.name: ablate.config_from_parameters({**g.base, **v.parameters}) for v in g.variants}
    full = configs["full"]
    assert full.model.use_transformer and full.model.use_gcn and full.model.use_mask and full.loss.use_saf
    assert full.loss.use_distillation and full.loss.saf_mode == "penalty" and full.loss.similarity == "vad"
    assert full.model.modalities == ("t", "a", "v")
    wanted = {
        "no_transformer": ("model", "use_transformer", False), "no_gcn": ("model", "use_gcn", False),
        "no_mask": ("model", "use_mask", False), "no_saf": ("loss", "use_saf", False),
        "saf_identity": ("loss", "similarity", "identity"), "saf_prior": ("loss", "similarity", "prior"),
        "saf_prototype": ("loss", "similarity", "prototype"), "saf_soft": ("loss", "saf_mode", "soft"),
        "no_distillation": ("loss", "use_distillation", False),
    }
    two_changes = {"no_saf_scaled": {"use_saf": False, "student_weight": 0.9},
                   "saf_reference": {"saf_mode": "reference", "similarity": "prior"}}
    for name, (section, field, value) in wanted.items():
        d, f = configs[name].to_dict(), full.to_dict()
        assert d[section][field] == value, name
        d[section][field] = f[section][field]
        assert d == f, f"{name} changes more than {section}.{field}"
    for name, changes in two_changes.items():
        assert configs[name] == full.replace(loss=changes), name
    subsets = {configs[v.name].model.modalities for v in g.variants if v.name not in {**wanted, **two_changes}}
    assert subsets == {("t",), ("a",), ("v",), ("t", "a"), ("t", "v"), ("a", "v"), ("t", "a", "v")}


def test_config_from_parameters():
    for name, dotted in ablate.PARAMETER_FIELDS.items():  # every parameter names a real field
        section, key = dotted.split(".")
        assert key in Config().to_dict()[section], name
    cfg = ablate.config_from_parameters({"PRESET": "tiny", "USE_GCN": False, "SIMILARITY": "prior",
                                         "EPOCHS": 0, "MODALITIES": "ta", "SET": ["model.gcn_layers=3"]})
    assert cfg.model.use_gcn is False and cfg.loss.similarity == "prior" and cfg.model.modalities == ("t", "a")
    assert cfg.train.epochs == preset("tiny").train.epochs and cfg.model.gcn_layers == 3
    assert ablate.config_from_parameters({"PRESET": "tiny", "EPOCHS": 7}).train.epochs == 7


# --------------------------------------------------------------------------- running

def test_grid_runs_skips_complete_runs_and_resumes(tmp_path, fake_notebook, calls):
    out = tmp_path / "out"
    result = ablate.run_grid(grid(), out, notebook=fake_notebook, progress=False, log=None)
    assert sorted(result.done) == ["full-seed0", "full-seed1", "no_gcn-seed0", "no_gcn-seed1"]
    assert all(c["RESUME"] is True for c in calls)
    rec = read_json(out / "no_gcn-seed1" / "run.json")
    assert rec["status"] == "done" and rec["variant"] == "no_gcn" and rec["parameters"]["USE_GCN"] is False
    assert read_json(out / "grid.json")["variants"][1]["label"] == "w/o GCN"

    calls.clear()
    again = ablate.run_grid(grid(), out, notebook=fake_notebook, progress=False, log=None)
    assert calls == [] and len(again.skipped) == 4

    # a grid killed in the middle of a run: run.json still says "running", metrics.json missing
    write_json(out / "full-seed1" / "run.json", {**read_json(out / "full-seed1" / "run.json"), "status": "running"})
    (out / "full-seed1" / "metrics.json").unlink()
    (out / "no_gcn-seed0" / "run.json").unlink()  # killed before its record was written
    states = {r.name: r.state() for r in grid().runs(out)}
    assert states == {"full-seed0": "done", "full-seed1": "unfinished", "no_gcn-seed0": "unfinished",
                      "no_gcn-seed1": "done"}
    resumed = ablate.run_grid(grid(), out, notebook=fake_notebook, progress=False, log=None)
    assert sorted(c["RUN_DIR"].rsplit("/", 1)[-1] for c in calls) == ["full-seed1", "no_gcn-seed0"]
    assert len(resumed.done) == 4 and len(resumed.skipped) == 2


def test_a_failing_run_is_recorded_and_the_rest_go_on(tmp_path, fake_notebook, calls):
    g = grid(variants={"bad": {"FAIL": True}, "full": {}})
    out = tmp_path / "out"
    result = ablate.run_grid(g, out, notebook=fake_notebook, progress=False, log=None)
    assert sorted(result.failed) == ["bad-seed0", "bad-seed1"] and sorted(result.done) == ["full-seed0", "full-seed1"]
    rec = read_json(out / "bad-seed0" / "run.json")
    assert rec["status"] == "failed" and rec["error"] == "RuntimeError: asked to fail"
    summary = ablate.format_summary(result)
    assert "2 failed" in summary and "FAILED bad-seed0: RuntimeError: asked to fail" in summary
    assert [r["variant"] for r in report.collect_runs(out)] == ["full", "full"]  # failures stay out of the table

    calls.clear()  # failed runs are retried on the next invocation ...
    ablate.run_grid(g, out, notebook=fake_notebook, progress=False, log=None)
    assert len(calls) == 2
    calls.clear()  # ... unless told not to
    again = ablate.run_grid(g, out, notebook=fake_notebook, skip_failed=True, progress=False, log=None)
    assert calls == [] and len(again.failed) == 2


def test_a_run_made_with_other_parameters_is_left_alone_unless_forced(tmp_path, fake_notebook, calls):
    out = tmp_path / "out"
    ablate.run_grid(grid(), out, notebook=fake_notebook, progress=False, log=None)
    calls.clear()
    changed = grid(base={"DATA": "synthetic:meld"})
    messages = []
    result = ablate.run_grid(changed, out, notebook=fake_notebook, progress=False, log=messages.append)
    assert calls == [] and len(result.stale) == 4 and "other parameters" in messages[0]
    result = ablate.run_grid(changed, out, notebook=fake_notebook, force=True, progress=False, log=None)
    assert len(calls) == 4 and len(result.done) == 4 and not result.stale


def test_cli_ablate(tmp_path, fake_notebook, calls, monkeypatch, capsys):
    monkeypatch.setattr(ablate, "notebook_path", lambda name: fake_notebook)
    path = tmp_path / "g.yaml"
    path.write_text("seeds: [0]\nbase: {DATA: 'synthetic:iemocap'}\nvariants:\n  full: {}\n  bad: {FAIL: true}\n")
    code = cli.main(["ablate", "--grid", str(path), "--out", str(tmp_path / "out"), "--seeds", "0", "1",
                     "--base", "USE_GCN=false"])
    assert code == 1  # a run failed
    out = capsys.readouterr().out
    assert "2 runs complete" in out and "FAILED bad-seed0" in out and "| full | 2 |" in out
    assert all(c["USE_GCN"] is False for c in calls)
    code = cli.main(["ablate", "--grid", str(path), "--out", str(tmp_path / "out"), "--variants", "full",
                     "--base", "USE_GCN=false"])
    assert code == 0 and "1 of them skipped" in capsys.readouterr().out


@pytest.mark.integration  # papermill, a kernel per run
def test_papermill_runs_in_worker_processes(tmp_path):
    """The real execution path: papermill, one kernel per run, two at once, a failure captured.

    Each kernel also records how it was connected: over private Unix sockets on POSIX, so that
    kernels starting at once cannot be handed the same TCP port (``papermill_runner._kernel_connection``).
    """
    nb = make_notebook(tmp_path / "04_ablation.ipynb", (
        "if FAIL:\n    raise RuntimeError('asked to fail')\n"
        "import ipykernel.connect\n"
        "connection_file = ipykernel.connect.get_connection_file()\n"
        "connection = {'file': connection_file, 'transport': json.load(open(connection_file))['transport']}\n"
        "m = " + json.dumps(fake_metrics(0)) + "\n"
        "m['test']['weighted_f1'] += SEED\n"
        "pathlib.Path(RUN_DIR).mkdir(parents=True, exist_ok=True)\n"
        "pathlib.Path(RUN_DIR, 'connection.json').write_text(json.dumps(connection))\n"
        "pathlib.Path(RUN_DIR, 'metrics.json').write_text(json.dumps(m))\n"))
    g = grid(seeds=[0, 2], variants={"full": {}, "bad": {"FAIL": True}})
    result = ablate.run_grid(g, tmp_path / "out", notebook=nb, workers=2, progress=False, log=None)
    assert sorted(result.done) == ["full-seed0", "full-seed2"]
    assert read_json(tmp_path / "out" / "bad-seed0" / "run.json")["error"] == "RuntimeError: asked to fail"
    assert (tmp_path / "out" / "full-seed2" / "04_ablation.ipynb").exists()  # the executed notebook, beside its JSON
    assert [r["weighted_f1"] for r in report.collect_runs(tmp_path / "out")] == [50.0, 52.0]
    connections = [read_json(tmp_path / "out" / f"full-seed{s}" / "connection.json") for s in (0, 2)]
    if os.name == "posix":
        assert [c["transport"] for c in connections] == ["ipc", "ipc"]
        folders = {Path(c["file"]).parent for c in connections}
        assert len(folders) == 2 and not any(f.exists() for f in folders)  # one private folder per run, removed


# --------------------------------------------------------------------------- collecting and tables

def write_runs(out, values):
    """values: {(variant, seed): weighted F1}; run folders as the runner leaves them."""
    for (variant, seed), wf1 in values.items():
        folder = out / f"{variant}-seed{seed}"
        m = fake_metrics(0)
        m["test"].update(weighted_f1=wf1, accuracy=wf1 + 1, macro_f1=wf1 - 2)
        m["reference_protocol"].update(weighted_f1=wf1 + 2, accuracy=wf1 + 3)
        write_json(folder / "metrics.json", m)


def test_summarise_equals_numpy(tmp_path):
    values = {("full", 0): 60.0, ("full", 1): 62.5, ("full", 2): 61.0, ("no_gcn", 0): 55.0, ("no_gcn", 1): 58.0}
    write_runs(tmp_path, values)
    write_json(tmp_path / "grid.json", {"variants": [{"name": "no_gcn", "label": "w/o GCN"},
                                                     {"name": "full", "label": "full model"}]})
    (tmp_path / "stray").mkdir()  # folders without metrics.json are not runs
    records = report.collect_runs(tmp_path)
    assert [(r["variant"], r["seed"]) for r in records] == [("no_gcn", 0), ("no_gcn", 1), ("full", 0), ("full", 1),
                                                            ("full", 2)]
    rows = report.summarise(records)
    assert [r["label"] for r in rows] == ["w/o GCN", "full model"]
    full = np.array([60.0, 62.5, 61.0])
    assert rows[1]["n"] == 3 and rows[1]["seeds"] == [0, 1, 2]
    assert rows[1]["weighted_f1_mean"] == pytest.approx(full.mean())
    assert rows[1]["weighted_f1_std"] == pytest.approx(full.std(ddof=1))
    assert rows[1]["macro_f1_mean"] == pytest.approx((full - 2).mean())
    assert rows[1]["reference_weighted_f1_mean"] == pytest.approx((full + 2).mean())
    assert rows[0]["accuracy_std"] == pytest.approx(np.std([56.0, 59.0], ddof=1))


def test_tables(tmp_path):
    write_runs(tmp_path, {("full", 0): 60.0, ("full", 1): 62.0, ("no_saf", 0): 50.0, ("no_saf", 1): 51.0})
    rows = report.summarise(report.collect_runs(tmp_path))
    md = report.ablation_markdown(rows)
    lines = md.splitlines()
    assert lines[0] == "| variant | seeds | Acc | w-F1 | macro F1 | w-F1, reference protocol |"
    assert lines[2] == "| full | 2 | **62.00 ± 1.41** | **61.00 ± 1.41** | **59.00 ± 1.41** | 63.00 ± 1.41 |"
    assert "reference protocol" in md and "optimistic" in md
    tex = report.ablation_latex([{**rows[0], "label": "w/o SAF_x & 50%"}] + rows[1:])
    assert r"w/o SAF\_x \& 50\%" in tex and r"\textbf{61.00 $\pm$ 1.41}" in tex and r"\bottomrule" in tex
    paths = report.write_tables(rows, tmp_path / "tables")
    assert [p.name for p in paths] == ["ablation_table.md", "ablation_table.tex", "ablation_table.json"]
    assert read_json(paths[2])[1]["variant"] == "no_saf"


def test_tables_say_which_validation_split_chose_the_epochs(tmp_path):
    """The record each run's metrics.json holds reaches the report: one phrase when the variants
    share it, one per variant otherwise, "not recorded" for runs from before the record."""
    official = {"kind": "official-dev", "dialogues": 114}
    seeded = {"kind": "seeded-fraction", "fraction": 0.1, "seed": 0, "dialogues": 115}
    for name, record in (("full-seed0", official), ("full-seed1", official), ("no_saf-seed0", official)):
        write_json(tmp_path / "same" / name / "metrics.json", {**fake_metrics(0), "validation": record})
    rows = report.summarise(report.collect_runs(tmp_path / "same"))
    assert [r["validation"] for r in rows] == [official, official]
    assert report.ablation_markdown(rows).rstrip().endswith("Validation: official dev (114 dialogues).")
    assert "Validation: official dev (114 dialogues)." in report.ablation_latex(rows)

    write_json(tmp_path / "mixed" / "full-seed0" / "metrics.json", {**fake_metrics(0), "validation": seeded})
    write_json(tmp_path / "mixed" / "old-seed0" / "metrics.json", fake_metrics(0))  # before the record
    rows = report.summarise(report.collect_runs(tmp_path / "mixed"))
    note = "Validation: full: 10% of training dialogues drawn with seed 0 (115 dialogues); old: not recorded."
    assert report.ablation_markdown(rows).rstrip().endswith(note)
    assert note.replace("%", r"\%") in report.ablation_latex(rows)


def test_run_states(tmp_path):
    write_runs(tmp_path, {("full", 0): 60.0})
    write_json(tmp_path / "bad-seed0" / "run.json", {"status": "failed", "error": "ValueError: x", "seconds": 3})
    write_json(tmp_path / "cut-seed0" / "run.json", {"status": "running"})
    write_runs(tmp_path, {("hand", 0): 58.0})
    write_json(tmp_path / "hand-seed0" / "parameters.json", {"SEED": 0})  # notebook 4 run by hand
    states = {s["run"]: s["status"] for s in report.run_states(tmp_path)}
    assert states == {"bad-seed0": "failed", "cut-seed0": "unfinished", "full-seed0": "done (trained outside the runner)",
                      "hand-seed0": "done (notebook 4 by hand)"}


def test_a_single_seed_has_no_spread_in_the_tables(tmp_path):
    write_runs(tmp_path, {("full", 0): 60.0, ("no_saf", 0): 50.0, ("no_saf", 1): 52.0})
    rows = report.summarise(report.collect_runs(tmp_path))
    lines = report.ablation_markdown(rows).splitlines()
    assert lines[2] == "| full | 1 | **61.00** | **60.00** | **58.00** | 62.00 |"
    assert lines[3].startswith("| no_saf | 2 | 52.00 ± 1.41 |")
    tex = report.ablation_latex(rows)
    assert r"\textbf{60.00} &" in tex and r"51.00 $\pm$ 1.41" in tex


# --------------------------------------------------------------------------- safety

def test_parameter_values_are_checked_before_any_kernel(tmp_path, fake_notebook, calls):
    for variants, message in (({"full": {"USE_GCN": "yes"}}, "USE_GCN='yes' should be bool"),
                              ({"full": {"DATA": str(tmp_path / "missing.pkl")}}, "DATA: .*missing.pkl: file not found"),
                              ({"full": {"DATA": "synthetic:imocap"}}, "unknown synthetic profile")):
        with pytest.raises(ValueError, match=message):
            ablate.run_grid(grid(variants=variants), tmp_path / "out", notebook=fake_notebook, progress=False, log=None)
    assert calls == []
    assert not (tmp_path / "out" / "full-seed0").exists()
    # The real notebook's declarations and the configuration's own checks apply too.
    known = runner.notebook_parameters(runner.notebook_path("04_ablation.ipynb"))
    for base, message in (({"EPOCHS": "ten"}, "EPOCHS='ten' should be int"), ({"EPOCHS": -3}, "epochs=-3"),
                          ({"MASK_PROB": 2.0}, "mask_prob")):
        with pytest.raises(ValueError, match=message):
            grid(base={"DATA": "synthetic:iemocap", **base}).check_parameters(known)


def test_unset_notebook_parameters_keep_the_preset(tmp_path):
    """04's loss and model parameters default to None, so PRESET=paper-meld runs the preset's values."""
    known = runner.notebook_parameters(runner.notebook_path("04_ablation.ipynb"))
    defaults = {name: eval(p["default"]) for name, p in known.items()}  # literals of the parameters cell
    for name in ablate.PARAMETER_FIELDS:
        if name not in ("EPOCHS", "SEED", "DEVICE"):
            assert defaults[name] is None, name
    cfg = ablate.config_from_parameters({**defaults, "PRESET": "paper-meld", "EPOCHS": 0})
    assert cfg == preset("paper-meld")


def test_a_folder_run_by_another_invocation_is_left_alone(tmp_path, fake_notebook, calls):
    from safsd_glnet.training.run_folder_guard import RunLock

    out = tmp_path / "out"
    busy = out / "full-seed1"
    busy.mkdir(parents=True)
    with RunLock(busy, ablate.RUNNER_LOCK):  # as another ablate process holds it while it runs
        result = ablate.run_grid(grid(), out, notebook=fake_notebook, progress=False, log=None)
    assert result.busy == ["full-seed1"]
    assert sorted(result.done) == ["full-seed0", "no_gcn-seed0", "no_gcn-seed1"]
    assert [c["SEED"] for c in calls if c["RUN_DIR"] == str(busy.resolve())] == []
    assert not (busy / "run.json").exists()  # nothing written over the other process's record


@pytest.mark.integration  # a grid in a child process, with kernels
@pytest.mark.skipif(not os.sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_killing_a_grid_takes_its_workers_and_kernels_along(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    nb = make_notebook(tmp_path / "04_ablation.ipynb", (
        "import os, time\n"
        "pathlib.Path(RUN_DIR).mkdir(parents=True, exist_ok=True)\n"
        "pathlib.Path(RUN_DIR, 'pids.json').write_text(json.dumps([os.getpid(), os.getppid()]))\n"
        "time.sleep(600)\n"))  # until the grid's kill takes it along
    driver = (f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
              "from safsd_glnet.grids import ablation as ablate\n"
              f"g = ablate.Grid.from_dict({{'seeds': [0, 1], 'base': {{'DATA': 'synthetic:iemocap'}}, "
              f"'variants': {{'full': {{}}}}}}, 'g.yaml')\n"
              f"ablate.run_grid(g, {str(tmp_path / 'out')!r}, notebook={str(nb)!r}, workers=2, progress=False, log=None)\n")
    proc = subprocess.Popen([sys.executable, "-c", driver], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid_files = [tmp_path / "out" / f"full-seed{s}" / "pids.json" for s in (0, 1)]
    try:
        deadline = time.time() + 480  # a hang guard only: kernels start slowly on a loaded machine
        while not all(p.exists() and p.read_text() for p in pid_files):
            assert time.time() < deadline, "the runs never started"
            assert proc.poll() is None, "the grid ended early"
            time.sleep(0.5)
        pids = [pid for p in pid_files for pid in json.loads(p.read_text())]  # kernels and workers
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def alive(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()

    deadline = time.time() + 120  # a hang guard: the loop ends as soon as they are gone
    while any(alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.5)
    survivors = [p for p in pids if alive(p)]
    for p in survivors:  # never leave them running, even when the test fails
        os.kill(p, signal.SIGKILL)
    assert survivors == []


@pytest.mark.integration  # a grid in a child process, with kernels
def test_ctrl_c_on_ablate_prints_one_hint_and_no_traceback(tmp_path):
    """SIGINT, as Ctrl-C sends it, while a kernel runs a cell: the runner stops with its resume
    hint (exit 130) and the kernel does not print a ZMQ traceback over it."""
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "nbs"
    folder.mkdir()
    for name in runner.NOTEBOOKS:  # the runner finds its notebooks through this folder
        make_notebook(folder / name, "pass")
    make_notebook(folder / "04_ablation.ipynb", (
        "import time\npathlib.Path(RUN_DIR).mkdir(parents=True, exist_ok=True)\n"
        "pathlib.Path(RUN_DIR, 'started').write_text('yes')\ntime.sleep(60)\n"))
    (tmp_path / "g.yaml").write_text("seeds: [0]\nbase: {DATA: 'synthetic:iemocap'}\nvariants: {full: {}}\n")
    env = {**os.environ, "SAFSD_GLNET_NOTEBOOKS": str(folder), "PYTHONPATH": str(ROOT)}
    # SIGINT as a foreground terminal has it: a test run started in the background (`cmd &`,
    # `nohup`) ignores SIGINT, the runner inherits that and Ctrl-C would never reach it.
    proc = subprocess.Popen([sys.executable, "-m", "safsd_glnet.cli", "ablate", "--grid", str(tmp_path / "g.yaml"),
                             "--out", str(tmp_path / "out")], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 480  # a hang guard only, as above
        while not (tmp_path / "out" / "full-seed0" / "started").exists():
            assert time.time() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() else "no start"
            time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err and "ZMQError" not in err, err
    assert "run the same command again to resume" in err
