"""Downloads (``safsd_glnet.data.download``, ``safsd-glnet data meld``) against a local HTTP server.

The server is ``http.server`` on 127.0.0.1 in a thread, started by each test: it serves byte
strings by name, honours ``Range: bytes=N-`` (or ignores it, when asked), can cut a transfer
short after a given number of body bytes, and records every request. Nothing leaves the
machine. The fixture files are small CSVs with the MELD header, passed with their own sha256;
one test serves the real MELD files from ``../shared/data`` to check the pinned sums.
"""
from __future__ import annotations

import hashlib
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from guards import no_hang

from safsd_glnet.data import download as dl
from safsd_glnet.data.tables import read_meld_dir

SHARED_MELD = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "meld"
MELD_HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"
NAMES = ("train_sent_emo.csv", "dev_sent_emo.csv", "test_sent_emo.csv")


def meld_csv(n: int, emotion: str) -> bytes:
    rows = "".join(f'{i + 1},"Line {i}, said twice",Ross,{emotion},neutral,{i // 3},{i % 3},1,1,'
                   f'"00:00:01,000","00:00:02,000"\n' for i in range(n))
    return (MELD_HEADER + rows).encode("utf-8")


FILES = {"train_sent_emo.csv": meld_csv(400, "joy"), "dev_sent_emo.csv": meld_csv(7, "anger"),
         "test_sent_emo.csv": meld_csv(9, "fear")}
SUMS = {k: hashlib.sha256(v).hexdigest() for k, v in FILES.items()}


class FileServer:
    """A tiny HTTP server for the tests (see the module notes)."""

    def __init__(self, files: dict[str, bytes]):
        self.files = dict(files)
        self.requests: list[tuple[str, str | None]] = []  # (name, Range header)
        self.cuts: dict[str, list[int]] = {}  # name -> body bytes sent by its next responses
        self.ignore_range = False
        self.headers: dict[str, dict[str, str]] = {}  # name -> header values sent instead of the true ones
        self.redirects: dict[str, str] = {}  # name -> URL it redirects to (302)
        self.dribble: dict[str, float] = {}  # name -> seconds between single body bytes, until hung up
        self.stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                server.requests.append((name, self.headers.get("Range")))
                if name in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[name])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = server.files.get(name)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                start = 0
                ranged = self.headers.get("Range")
                if ranged and not server.ignore_range:
                    start = int(ranged.removeprefix("bytes=").rstrip("-"))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", server.headers.get(name, {}).get(
                        "Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}"))
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", server.headers.get(name, {}).get("Content-Length", str(len(body))))
                self.end_headers()
                if name in server.dribble:  # one byte at a time, never done: only a deadline ends it
                    try:
                        for k in range(len(body) * 1000):
                            if server.stop.wait(server.dribble[name]):
                                break
                            self.wfile.write(body[k % len(body):k % len(body) + 1])
                            self.wfile.flush()
                    except OSError:  # the client hung up
                        pass
                    self.close_connection = True
                    return
                cuts = server.cuts.get(name)
                if cuts:
                    body = body[:cuts.pop(0)]  # promise the whole body, send part, hang up
                    self.close_connection = True
                self.wfile.write(body)
                self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)

    def asked(self, name: str) -> list[str | None]:
        return [r for n, r in self.requests if n == name]


@pytest.fixture
def server():
    s = FileServer(FILES)
    yield s
    s.close()


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def no_part_files(folder: Path) -> bool:
    return not list(folder.glob(".*.part"))


# ---------------------------------------------------------------------------------- tests

def test_good_download_is_what_features_meld_reads(server, tmp_path):
    out = tmp_path / "meld"
    done = dl.download_meld(out, base_url=server.url, sha256=SUMS, progress=False)
    assert done == {k: True for k in NAMES}
    for name, data in FILES.items():
        assert (out / name).read_bytes() == data
    assert no_part_files(out)
    assert [n for n, _ in server.requests] == list(NAMES) and all(r is None for _, r in server.requests)
    table = read_meld_dir(out)  # what `safsd-glnet features --meld DIR` reads
    assert table.num_utterances() == 416 and table.splits["valid"] == ["valid_0", "valid_1", "valid_2"]


def test_checksum_mismatch_deletes_the_download(server, tmp_path):
    out = tmp_path / "meld"
    wrong = {**SUMS, "dev_sent_emo.csv": "0" * 64}
    with pytest.raises(dl.DownloadError) as err:
        dl.download_meld(out, base_url=server.url, sha256=wrong, progress=False)
    message = str(err.value)
    assert "\n" not in message
    assert f"{server.url}dev_sent_emo.csv: checksum mismatch (sha256 {SUMS['dev_sent_emo.csv']}, " \
           f"expected {'0' * 64})" in message
    assert (out / "train_sent_emo.csv").read_bytes() == FILES["train_sent_emo.csv"]  # checked before
    assert not (out / "dev_sent_emo.csv").exists() and no_part_files(out)
    assert not (out / "test_sent_emo.csv").exists()


def test_interrupted_transfer_resumes_with_a_range_request(server, tmp_path):
    name = "train_sent_emo.csv"
    data = FILES[name]
    dest = tmp_path / name
    server.cuts[name] = [1000]
    with pytest.raises(dl.DownloadError, match=rf"stopped after 1000 of {len(data)} bytes; the part is kept in "
                                               rf".*\.train_sent_emo\.csv\.part: run the command again"):
        dl.download_file(server.url + name, dest, SUMS[name], retries=0, progress=False)
    part = dl.part_path(dest)
    assert part.name == ".train_sent_emo.csv.part" and part.read_bytes() == data[:1000]
    assert not dest.exists()
    assert dl.download_file(server.url + name, dest, SUMS[name], retries=0, progress=False) is True
    assert dest.read_bytes() == data and not part.exists()
    assert server.asked(name) == [None, "bytes=1000-"]

    # Within one call: two cuts, each retry continues where the last one stopped.
    dest.unlink()
    server.requests.clear()
    server.cuts[name] = [500, 700]
    assert dl.download_file(server.url + name, dest, SUMS[name], retries=2, progress=False) is True
    assert dest.read_bytes() == data
    assert server.asked(name) == [None, "bytes=500-", "bytes=1200-"]


def test_server_that_ignores_ranges_and_a_part_already_whole(server, tmp_path):
    name = "dev_sent_emo.csv"
    dest = tmp_path / name
    part = dl.part_path(dest)
    part.write_bytes(b"garbage that is not the start of the file")
    server.ignore_range = True  # answers 200 with the whole file: the part is replaced
    assert dl.download_file(server.url + name, dest, SUMS[name], progress=False)
    assert dest.read_bytes() == FILES[name] and not part.exists()
    dest.unlink()
    server.ignore_range = False
    part.write_bytes(FILES[name])  # the whole file, only the rename was missed: 416, then checked
    assert dl.download_file(server.url + name, dest, SUMS[name], progress=False)
    assert dest.read_bytes() == FILES[name] and server.asked(name)[-1] == f"bytes={len(FILES[name])}-"


def test_complete_folder_downloads_nothing(server, tmp_path):
    out = tmp_path / "meld"
    dl.download_meld(out, base_url=server.url, sha256=SUMS, progress=False)
    server.requests.clear()
    assert dl.download_meld(out, base_url=server.url, sha256=SUMS, progress=False) == {k: False for k in NAMES}
    assert server.requests == []
    (out / "test_sent_emo.csv").write_bytes(b"my own edit")
    with pytest.raises(dl.DownloadError, match=r"test_sent_emo.csv exists with sha256 [0-9a-f]{64}, not the "
                                               r"expected .*; move it away"):
        dl.download_meld(out, base_url=server.url, sha256=SUMS, progress=False)
    assert (out / "test_sent_emo.csv").read_bytes() == b"my own edit" and server.requests == []


def test_unreachable_server_gives_one_clear_line(tmp_path):
    port = closed_port()
    base = f"http://127.0.0.1:{port}/"
    with pytest.raises(dl.DownloadError) as err:
        dl.download_meld(tmp_path / "meld", base_url=base, sha256=SUMS, progress=False, retries=0, timeout=5)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"could not reach {base}train_sent_emo.csv: ")
    assert "refused" in message.lower()
    assert message.endswith(f"by hand from {base} into {tmp_path / 'meld'}")
    assert not (tmp_path / "meld" / "train_sent_emo.csv").exists()


def test_http_errors_and_size_limit(server, tmp_path):
    with pytest.raises(dl.DownloadError, match=r"could not download .*/nothing.csv: HTTP 404"):
        dl.download_file(server.url + "nothing.csv", tmp_path / "nothing.csv", "0" * 64, progress=False)
    name = "train_sent_emo.csv"
    with pytest.raises(dl.DownloadError, match=rf"is {len(FILES[name])} bytes, more than the 100 allowed"):
        dl.download_file(server.url + name, tmp_path / name, SUMS[name], max_bytes=100, progress=False)
    assert no_part_files(tmp_path) and not (tmp_path / name).exists()


def test_cli_data_meld(server, tmp_path, capsys):
    from safsd_glnet.cli.commands import main

    out = tmp_path / "meld"
    # The fixture files are not the official ones: the pinned sums refuse them.
    assert main(["data", "meld", "--out", str(out), "--base-url", server.url, "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("safsd-glnet data: error: ") and "checksum mismatch" in err
    assert not out.joinpath("train_sent_emo.csv").exists() and no_part_files(out)
    port = closed_port()
    assert main(["data", "meld", "--out", str(out), "--base-url", f"http://127.0.0.1:{port}",
                 "--retries", "0", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"could not reach http://127.0.0.1:{port}/train_sent_emo.csv" in err
    assert "by hand" in err


@pytest.mark.integration  # the real MELD files in ../shared/data
def test_pinned_sums_fetch_the_real_meld_files(tmp_path, capsys):
    if not SHARED_MELD.is_dir():
        pytest.skip(f"../shared/data not found: {SHARED_MELD} is absent (the real MELD CSVs)")
    from safsd_glnet.cli.commands import main

    s = FileServer({name: (SHARED_MELD / name).read_bytes() for name in NAMES})
    try:
        out = tmp_path / "meld"
        assert main(["data", "meld", "--out", str(out), "--base-url", s.url, "--no-progress"]) == 0
        assert "next: safsd-glnet features --meld" in capsys.readouterr().out
    finally:
        s.close()
    # The md5 sums that ../shared/data/README.md lists for the official release.
    official_md5 = {"train_sent_emo.csv": "3a33b022655c68961c440a83c93497ec",
                    "dev_sent_emo.csv": "0ff1dda801c068b6e69bf8dd83218ac2",
                    "test_sent_emo.csv": "46c92f610268c703cb1a0472c76925e5"}
    for name in NAMES:
        assert hashlib.md5((out / name).read_bytes()).hexdigest() == official_md5[name]
    table = read_meld_dir(out)
    assert {k: table.num_utterances(k) for k in table.splits} == {"train": 9989, "valid": 1109, "test": 2610}


def test_a_part_file_planted_as_a_link_is_never_written_through(server, tmp_path):
    """``.<name>.part`` as a symbolic or hard link to another file: the download refuses it with
    one line (exit 1 from the command line) and the other file keeps its bytes."""
    name = "dev_sent_emo.csv"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    for kind in ("symlink", "hardlink"):
        out = tmp_path / kind
        out.mkdir()
        part = dl.part_path(out / name)
        part.symlink_to(victim) if kind == "symlink" else os.link(victim, part)
        with pytest.raises(dl.DownloadError) as err:
            dl.download_file(server.url + name, out / name, SUMS[name], progress=False)
        message = str(err.value)
        assert "\n" not in message and str(part) in message
        assert victim.read_text() == "precious\n", kind
        assert not (out / name).exists()


class FakeClock:
    """``download._clock`` for the tests: every reading is ``step`` seconds after the last, so a
    deadline or a rate is met after a known number of reads, whatever the machine's speed."""

    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_a_server_that_never_finishes_meets_the_deadline(server, tmp_path, monkeypatch):
    name = "train_sent_emo.csv"
    server.dribble[name] = 0.005
    monkeypatch.setattr(dl, "_clock", FakeClock(1.0))
    with no_hang(), pytest.raises(dl.DownloadError) as err:
        dl.download_file(server.url + name, tmp_path / name, SUMS[name], progress=False, timeout=5,
                         deadline=20, min_rate=0)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{server.url}{name}: not finished after 20 s (--deadline)")
    assert "run the command again to resume" in message and not (tmp_path / name).exists()


def test_a_trickling_server_is_dropped_below_the_minimum_rate(server, tmp_path, monkeypatch):
    name = "train_sent_emo.csv"
    server.dribble[name] = 0.005
    monkeypatch.setattr(dl, "_clock", FakeClock(1.0))  # one byte per "second"
    with no_hang(), pytest.raises(dl.DownloadError) as err:
        dl.download_file(server.url + name, tmp_path / name, SUMS[name], progress=False, timeout=5,
                         deadline=10_000, min_rate=100)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{server.url}{name}: ")
    assert "bytes/s" in message and "below the minimum of 100 bytes/s (--min-rate)" in message


@pytest.mark.parametrize("header, value", [("Content-Length", "\u00b2"), ("Content-Length", "9" * 5000),
                                           ("Content-Length", "-5"), ("Content-Range", "bytes 10-99/\u00b2"),
                                           ("Content-Range", "bytes 10-99/" + "9" * 5000)])
def test_malformed_sizes_name_the_url_and_exit_1(server, tmp_path, capsys, header, value):
    from safsd_glnet.cli.commands import main

    name = "train_sent_emo.csv"
    out = tmp_path / "meld"
    out.mkdir()
    if header == "Content-Range":  # sent with a 206, the answer to a resumed transfer
        dl.part_path(out / name).write_bytes(FILES[name][:10])
    server.headers[name] = {header: value}
    assert main(["data", "meld", "--out", str(out), "--base-url", server.url, "--no-progress", "--retries", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"safsd-glnet data: error: {server.url}{name}: ")
    assert header in err and "Traceback" not in err and len(err) < 400


def test_a_folder_or_a_pipe_where_a_file_belongs_is_one_line(server, tmp_path, capsys):
    from safsd_glnet.cli.commands import main

    out = tmp_path / "meld"
    out.mkdir()
    (out / "train_sent_emo.csv").mkdir()
    assert main(["data", "meld", "--out", str(out), "--base-url", server.url, "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{out / 'train_sent_emo.csv'}: is a folder" in err
    (out / "train_sent_emo.csv").rmdir()
    dl.part_path(out / "train_sent_emo.csv").mkdir()
    assert main(["data", "meld", "--out", str(out), "--base-url", server.url, "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and ".train_sent_emo.csv.part: is a folder" in err
    dl.part_path(out / "train_sent_emo.csv").rmdir()
    os.mkfifo(out / "train_sent_emo.csv")
    with no_hang():
        assert main(["data", "meld", "--out", str(out), "--base-url", server.url, "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "named pipe" in err


def test_a_redirect_to_another_host_is_refused_unless_allowed(server, tmp_path):
    name = "dev_sent_emo.csv"
    elsewhere = server.url.replace("127.0.0.1", "localhost") + name  # another host name, the same server
    server.redirects["moved.csv"] = elsewhere
    with pytest.raises(dl.DownloadError) as err:
        dl.download_file(server.url + "moved.csv", tmp_path / name, SUMS[name], progress=False)
    message = str(err.value)
    assert "\n" not in message and f"{server.url}moved.csv: the server redirects to {elsewhere}" in message
    assert "another host" in message and "--allow-redirects" in message
    assert not (tmp_path / name).exists() and no_part_files(tmp_path)
    assert dl.download_file(server.url + "moved.csv", tmp_path / name, SUMS[name], progress=False,
                            allow_redirects=True)
    assert (tmp_path / name).read_bytes() == FILES[name]
    # A redirect within the same host is followed without asking.
    server.redirects["same.csv"] = server.url + name
    (tmp_path / name).unlink()
    assert dl.download_file(server.url + "same.csv", tmp_path / name, SUMS[name], progress=False)


def test_help_states_the_deadline_and_the_minimum_rate(capsys):
    from safsd_glnet.cli.commands import main

    with pytest.raises(SystemExit):
        main(["data", "meld", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--deadline" in text and "--min-rate" in text and "--allow-redirects" in text
    assert "exit" in text.lower()
