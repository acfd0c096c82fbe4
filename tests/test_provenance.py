"""safsd_glnet/provenance.py: the commit and uncommitted changes a benchmark or study records."""
import shutil
import subprocess
import pytest

from safsd_glnet import provenance

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@needs_git
def test_code_version_names_the_commit_and_changed_files(tmp_path, monkeypatch):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "safsd_glnet").mkdir()
    (tmp_path / "safsd_glnet" / "a.py").write_text("x = 1\n")
    (tmp_path / "bench.py").write_text("y = 1\n")
    (tmp_path / "other.py").write_text("z = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    monkeypatch.setattr(provenance, "REPO", tmp_path)
    assert provenance.code_version("bench.py") == {"git_commit": head, "uncommitted_changes": []}
    (tmp_path / "safsd_glnet" / "a.py").write_text("x = 2\n")
    (tmp_path / "other.py").write_text("z = 2\n")  # not asked about: not listed
    assert provenance.code_version("bench.py")["uncommitted_changes"] == [" M safsd_glnet/a.py"]


def test_code_version_outside_a_checkout_is_none(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "REPO", tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # do not find an enclosing repo
    assert provenance.code_version() == {"git_commit": None, "uncommitted_changes": None}
