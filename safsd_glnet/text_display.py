"""Text that a terminal shows and a saved notebook keeps: whether this is a notebook, the kernel's
"busy" marker, text progress bars and clocks, one display line replaced in place, Markdown tables.

Plain helpers with no dependency inside the kit (IPython is imported only inside a notebook), so
every layer can show progress: :mod:`safsd_glnet.training.progress` (epochs),
:mod:`safsd_glnet.features.text` (encoding), the notebook helpers (the busy marker, tables)."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Sequence

BAR_WIDTH = 20  # characters of the bar between the pipes
_PARTIAL = " ▏▎▍▌▋▊▉"  # eighths of a character cell


def in_notebook() -> bool:
    """True inside an IPython kernel (JupyterLab, Notebook, VS Code, papermill), where
    ``display`` reaches a front end; False in a terminal or plain Python."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _kernel():
    """The running IPython kernel, or None (a terminal, plain Python)."""
    if not in_notebook():
        return None
    from IPython import get_ipython

    return get_ipython().kernel


@contextmanager
def kernel_busy(every: float = 0.5) -> Iterator[None]:
    """Keep the kernel's state "busy" in the front end while the block runs, by saying so again
    every ``every`` seconds on the kernel's IOPub channel (nothing happens outside a notebook).

    A cell that runs for a while can show "Idle" in JupyterLab's status bar: the kernel answers
    requests on its control channel (the debugger's, the front end's) in a thread of its own
    while the cell runs, and reports "idle" after each of them on the same channel that reports
    the cell's state (jupyterlab/jupyterlab#10701, ipython/ipykernel#799). The front end shows
    the latest report. Within the block, the latest report is at most ``every`` seconds old and
    says "busy", which is true; the kernel's own "idle" at the end of the cell comes after the
    block's last report."""
    kernel = _kernel()
    publish = getattr(kernel, "_publish_status", None)
    if publish is None:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            try:
                publish("busy", "shell")
            except Exception:  # a display aid must never break the work it accompanies
                return

    thread = threading.Thread(target=beat, name="safsd-glnet-busy", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def text_bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """``|█████▌    |``: ``done / total`` of ``width`` cells, to an eighth of a cell."""
    frac = min(max(done / total, 0.0), 1.0) if total > 0 else 1.0
    eighths = round(frac * width * 8)
    full, part = divmod(eighths, 8)
    cells = "█" * full + (_PARTIAL[part] if part else "")
    return "|" + cells.ljust(width) + "|"


def clock(seconds: float) -> str:
    """``0:07``, ``12:34``, ``1:02:03``."""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class TextLine:
    """One ``text/plain`` display in a notebook, replaced in place through its display id: the
    saved notebook keeps its last version as text. ``show(line)`` is throttled to one update per
    ``interval`` seconds unless ``force``; outside a notebook nothing is shown."""

    def __init__(self, interval: float = 0.25, enabled: bool | None = None):
        self.interval = interval
        self.enabled = in_notebook() if enabled is None else enabled
        self.last: str | None = None
        self._handle = None
        self._shown = 0.0

    def show(self, line: str, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.time()
        if not force and now - self._shown < self.interval:
            return
        self._shown, self.last = now, line
        from IPython.display import display

        bundle = {"text/plain": line}
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
                   floatfmt: str = ".2f") -> str:
    """A GitHub Markdown table of ``rows`` (dicts); floats formatted with ``floatfmt``."""
    if not rows:
        return ""
    columns = list(columns or rows[0].keys())

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return format(v, floatfmt)
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join("---:" if isinstance(rows[0].get(c), (int, float)) else "---" for c in columns) + "|"]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
