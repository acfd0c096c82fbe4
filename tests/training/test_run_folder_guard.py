"""Run folders are never lost: overwrite rules, locks, permissions, leftovers, resume checks."""
import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from safsd_glnet.data import atomic_files as files
from safsd_glnet.training import run_folder_guard as run_folder
from safsd_glnet.config import preset
from safsd_glnet.data import make_synthetic
from safsd_glnet.data.corpus import DataError
from safsd_glnet.training.train import train

SIZES = {"t": 16, "a": 12, "v": 8}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def corpus():
    return make_synthetic("iemocap", seed=0, feature_sizes=SIZES, num_dialogues=16)


def tiny(epochs=1, **train_fields):
    return preset("tiny").replace(train={"epochs": epochs, **train_fields})


def test_a_finished_run_is_never_replaced_silently(tmp_path, corpus):
    out = tmp_path / "run"
    train(tiny(), corpus, out)
    before = (out / "metrics.json").read_bytes()
    with pytest.raises(DataError, match="already holds a finished run.*--resume.*--overwrite"):
        train(tiny(lr=0.1), corpus, out)
    assert (out / "metrics.json").read_bytes() == before  # nothing was touched
    assert json.loads((out / "config.json").read_text())["train"]["lr"] == tiny().train.lr


def test_overwrite_removes_the_completion_marker_first(tmp_path, corpus):
    out = tmp_path / "run"
    train(tiny(), corpus, out)

    def stop(epoch, record):  # a kill during the replacing run
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny(lr=0.1), corpus, out, overwrite=True, callback=stop)
    # The folder now holds an unfinished run with the new config, never the old metrics.json
    # beside the new config.json.
    assert not (out / "metrics.json").exists()
    assert json.loads((out / "config.json").read_text())["train"]["lr"] == 0.1
    with pytest.raises(DataError, match="unfinished run"):
        train(tiny(lr=0.1), corpus, out)
    run = train(tiny(lr=0.1), corpus, out, resume=True)
    assert run.metrics["epochs_run"] == 1


def test_folders_the_kit_did_not_write_are_refused(tmp_path, corpus):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    for flags in ({}, {"overwrite": True}, {"resume": True}):
        with pytest.raises(DataError, match="not a run folder.*notes.txt"):
            train(tiny(), corpus, tmp_path / "mine", **flags)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="is a file"):
        train(tiny(), corpus, tmp_path / "file")
    with pytest.raises(ValueError, match="exclude each other"):
        run_folder.prepare(tmp_path / "new", resume=True, overwrite=True)


@pytest.mark.skipif(not Path("/sys").is_dir(), reason="needs Linux's read-only /sys")
def test_unwritable_output_fails_before_any_work(tmp_path):
    from safsd_glnet.cli.commands import main

    target = Path("/sys/safsd-glnet-test")
    with pytest.raises(DataError, match="cannot write"):
        run_folder.check_writable(target)
    for argv in (["synth", "--out", str(target / "x.npz")],
                 ["train", "--preset", "tiny", "--out", str(target / "run")]):
        assert main(argv) == 2


def test_unwritable_folder_as_a_user_would_meet_it(tmp_path, monkeypatch):
    """chmod cannot stop root (CI runs as root), so the refusal is simulated where it starts."""
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(run_folder.tempfile, "mkstemp", refuse)
    with pytest.raises(DataError, match=r"cannot write to the run folder \(Permission denied\)"):
        run_folder.check_writable(tmp_path / "ro", "run folder")


def test_atomic_writes_respect_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        files.write_json(tmp_path / "a.json", {"x": 1})
        files.save_torch(tmp_path / "b.pt", {"x": 1})
    finally:
        os.umask(old)
    for name in ("a.json", "b.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640, name
    (tmp_path / "c.txt").write_text("x")
    os.chmod(tmp_path / "c.txt", 0o604)
    files.write_text(tmp_path / "c.txt", "y")  # an existing file keeps its mode
    assert stat.S_IMODE((tmp_path / "c.txt").stat().st_mode) == 0o604


def test_stale_temporaries_are_removed_when_a_run_starts(tmp_path, corpus):
    out = tmp_path / "run"
    out.mkdir()
    stale = out / ".checkpoint_last.pt.k3j_x9qa.tmp"  # what a kill during a checkpoint write leaves
    stale.write_bytes(b"\0" * 1024)
    train(tiny(), corpus, out)
    assert not stale.exists()
    assert not list(out.glob(".*.tmp"))


@pytest.mark.integration  # a child process holds the lock
def test_one_folder_is_never_trained_by_two_processes(tmp_path, corpus):
    out = tmp_path / "run"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from safsd_glnet.training.run_folder_guard import RunLock
        with RunLock({str(out)!r}):
            print("locked", flush=True)
            time.sleep(60)
    """)
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(DataError, match=f"being trained by another process \\(pid {holder.pid}\\)"):
            train(tiny(), corpus, out)
        assert not (out / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()
    # The operating system released the lock with the killed process.
    train(tiny(), corpus, out)
    assert (out / "metrics.json").exists()


def test_resume_checks_the_best_checkpoint_first(tmp_path, corpus, monkeypatch):
    out = tmp_path / "run"

    def stop(epoch, record):
        if epoch == 2:
            raise KeyboardInterrupt

    cfg = tiny(epochs=4, save_every_s=0.0)  # a resume point after every epoch
    with pytest.raises(KeyboardInterrupt):
        train(cfg, corpus, out, callback=stop)
    (out / "checkpoint_best.pt").unlink()
    epochs = []
    with pytest.raises(DataError, match="checkpoint_best.pt .*missing.*--overwrite"):
        train(cfg, corpus, out, resume=True, callback=lambda e, r: epochs.append(e))
    assert epochs == []  # refused before any epoch ran


def test_resume_ignores_runtime_only_fields(tmp_path, corpus):
    out = tmp_path / "run"

    def stop(epoch, record):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny(epochs=2), corpus, out, callback=stop)
    # Another progress setting or device name is how the run executes, not what it computes.
    run = train(tiny(epochs=2, progress=True, device="cpu"), corpus, out, resume=True)
    assert run.metrics["epochs_run"] == 2
    with pytest.raises(ValueError, match="another configuration"):
        train(tiny(epochs=2, lr=0.5), corpus, out, resume=True)


def test_seed_runs_need_their_own_folder(tmp_path, corpus):
    from safsd_glnet.training.train import train_seeds

    train(tiny(), corpus, tmp_path / "single")
    with pytest.raises(DataError, match="holds a single run"):
        train_seeds(tiny(), corpus, [0, 1], tmp_path / "single")


def test_a_killed_process_leaves_no_kernel_folder_for_long(tmp_path):
    from safsd_glnet.grids.papermill_runner import KERNEL_FOLDER_PREFIX, remove_stale_kernel_folders

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"{KERNEL_FOLDER_PREFIX}{dead.pid}-abc123"
    stale.mkdir()
    (stale / "kernel.json").write_text("{}")
    alive = tmp_path / f"{KERNEL_FOLDER_PREFIX}{os.getpid()}-def456"
    alive.mkdir()
    removed = remove_stale_kernel_folders(tmp_path)
    assert removed == [stale.name]
    assert not stale.exists() and alive.exists()


def test_run_lock_survives_quick_reuse(tmp_path):
    """Entering and leaving the lock repeatedly in one process works (the descriptor is closed)."""
    for _ in range(3):
        with run_folder.RunLock(tmp_path / "r"):
            with pytest.raises(DataError, match="another process"):
                with run_folder.RunLock(tmp_path / "r"):
                    pass
    assert (tmp_path / "r" / ".lock").read_text().strip() == str(os.getpid())


@pytest.mark.parametrize("name", [run_folder.LOCK_NAME, run_folder.RUNNER_LOCK_NAME, run_folder.QUEUE_LOCK_NAME])
def test_a_lock_never_writes_through_a_link(tmp_path, name):
    """A lock file planted as a symbolic or hard link to another file must not truncate it or
    write the pid into it: the lock is refused with one line, the other file keeps its bytes."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    for kind in ("symlink", "hardlink"):
        folder = tmp_path / kind
        folder.mkdir()
        (folder / name).symlink_to(Path("..") / "victim.txt") if kind == "symlink" else \
            os.link(victim, folder / name)
        with pytest.raises(DataError) as err:
            with run_folder.RunLock(folder, name):
                pass
        message = str(err.value)
        assert "\n" not in message and str(folder / name) in message
        assert victim.read_text() == "precious\n", kind


def test_a_lock_refuses_what_the_kit_did_not_write(tmp_path):
    """A folder, a pipe or a file with other content where the lock belongs: refused, untouched."""
    (tmp_path / "a" / ".lock").mkdir(parents=True)
    with pytest.raises(DataError, match=r"a/\.lock: .*not a regular file|a/\.lock: is a folder"):
        with run_folder.RunLock(tmp_path / "a"):
            pass
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / ".lock").write_text("my notes, not a pid\n")
    with pytest.raises(DataError, match=r"b/\.lock: .*not a lock file"):
        with run_folder.RunLock(tmp_path / "b"):
            pass
    assert (tmp_path / "b" / ".lock").read_text() == "my notes, not a pid\n"
    (tmp_path / "c").mkdir()
    os.mkfifo(tmp_path / "c" / ".lock")
    with pytest.raises(DataError, match=r"c/\.lock: is a named pipe"):
        with run_folder.RunLock(tmp_path / "c"):
            pass
    # A lock file a killed run left behind (its pid) is the kit's own: taken over.
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / ".lock").write_text("123456\n")
    with run_folder.RunLock(tmp_path / "d"):
        assert (tmp_path / "d" / ".lock").read_text().strip() == str(os.getpid())


def test_train_into_a_folder_with_a_planted_lock_link_keeps_the_target(tmp_path, corpus):
    """The attack of the issue: ``ln -s ../../victim.txt runs/x/.lock`` then ``train --out runs/x``."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "runs" / "x"
    out.mkdir(parents=True)
    (out / ".lock").symlink_to(Path("..") / ".." / "victim.txt")
    with pytest.raises(DataError, match="symbolic link"):
        train(tiny(), corpus, out)
    assert victim.read_text() == "precious\n"


def test_an_executed_notebook_is_never_written_through_a_link(tmp_path):
    """papermill writes the executed notebook in place (it opens the output for writing): a link
    planted where the ablation runner puts ``04_ablation.ipynb`` is refused before any kernel
    starts, and its target keeps its bytes."""
    from safsd_glnet.grids.papermill_runner import run_notebook

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / "04_ablation.ipynb").symlink_to(victim)
    os.link(victim, run / "hard.ipynb")
    for name in ("04_ablation.ipynb", "hard.ipynb"):
        with pytest.raises(DataError) as err:
            run_notebook("04_ablation.ipynb", run / name, {})
        assert str(run / name) in str(err.value) and "\n" not in str(err.value)
    assert victim.read_text() == "precious\n"
