"""SAFSD-GLNet research kit: multimodal emotion recognition in conversations.

The names a notebook or a script needs, imported on first use (``import safsd_glnet`` loads neither
torch nor numpy)::

    from safsd_glnet import Config, preset, load_data, train, load_model, Predictor

    corpus = load_data("synthetic:iemocap")          # or a .pkl / .npz path, or a MELD folder
    run = train(preset("small"), corpus, "runs/demo")
    model, signature = load_model("runs/demo/checkpoint_best.pt")
    Predictor("runs/demo/checkpoint_best.pt")         # emotions for new, unlabelled dialogues

The package, from the maths up to the user; each layer imports only from the layers below it
(``tests/test_structure.py`` checks it):

* ``config.py``, ``dataset_facts.py``, ``provenance.py``, ``text_display.py``: configuration
  dataclasses and presets; the data sets' constants; which commit made a number; text that a
  terminal shows and a saved notebook keeps (progress lines, Markdown tables).
* ``model/``: the readable network and its faster kernels, the dialogue graph, the losses, class
  similarity and class weights, mixed precision, long dialogues, the metrics.
* ``data/``: the corpus contract, batching, synthetic data, the kit's ``.npz`` format, the SDT
  pickles, utterance tables, downloads, atomic file writes, windows of long training dialogues; ``data/safe/``: the hardened readers of
  files from elsewhere (pickle scan, restricted unpickler, npz, checkpoint and JSON checks).
* ``features/``: text features (frozen and fine-tuned encoders, utterance inputs) and audio.
* ``training/``: train, evaluate and load, the epoch rule, run folder guards, progress, prediction.
* ``grids/``: many runs: notebooks under papermill, ablation grids, executors, seeds, the demo.
* ``notebook/``: what the notebooks call: figures, the live training plot, exploration, the SAF
  comparison, run folders, JupyterLab settings.
* ``cli/``: the ``safsd-glnet`` command line, one module per command group.
"""
import os as _os

__version__ = "0.1.0"

# torch's OpenMP runtime (GNU libgomp in the CPU wheels) lets an idle thread spin for a while after
# each parallel region unless OMP_WAIT_POLICY says otherwise. The kit's models run thousands of short
# regions per epoch, so the threads spin most of the time: a notebook 03 run by hand in JupyterLab
# used 13 times the CPU that the same run used headless (whose kernels get PASSIVE from
# papermill_runner), and on a shared machine the spinning threads took the cores from the one with
# work (benchmarks/notebook_threads.py). libgomp reads the variable once, when torch loads it, so it is
# set here, before any module of the kit imports torch; a process that imported torch first, or that
# sets the variable itself, keeps its own choice.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# On a CPU with bf16 matrix units every bf16 product runs as a oneDNN primitive compiled for its exact
# shapes, and oneDNN keeps up to 1,024 of them with their scratch buffers. Dialogue lengths change the
# shapes from batch to batch, so the cache filled with primitives that were rarely reused: bf16 epochs
# on MELD-shaped batches (paper preset) peaked at 3.99 GiB against 2.34 GiB in fp32. A capacity of 128
# gives 2.96 GiB (32: 2.70 GiB; 0, no cache: 2.62 GiB and three times slower); its epoch took 128 s
# against 111 s on a loaded machine (speed not yet re-measured on an idle one)
# (benchmarks/bf16_memory.py, benchmarks/results/bf16_memory.json). Set here, before torch loads, as
# OMP_WAIT_POLICY above; a value the user set is kept.
_os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "128")
# A second cache of the same kind sits in front of it: torch's oneDNN bindings (ideep) keep up to
# LRU_CACHE_CAPACITY (default 1,024) of their own per-shape matmul objects. On MELD-shaped batches it
# held about 0.25 GiB (bf16 peak RSS 2.73 GiB at 1,024, 2.49 at 128, 2.46 at 16;
# benchmarks/bf16_memory_profile.py), so it gets the same bound. (Not 0: the MELD bf16 profile run
# died with SIGSEGV at 0.)
_os.environ.setdefault("LRU_CACHE_CAPACITY", "128")


def _compact_heap_if_asked() -> None:
    """With SAFSD_GLNET_MALLOC=compact, have glibc's malloc serve every block of 1 MiB or more from
    its own mapping, given back on free: less memory, much slower on the CPU.

    By default glibc raises this threshold to the size of the largest block freed so far (up to 32
    MiB), so after the first batches the activations of later ones come from the heap, whose freed
    holes of one batch's sizes rarely fit the next's (dialogue lengths change the sizes with every
    batch): the resident memory grows with holes. A fixed 1 MiB threshold removes them (MELD-shaped
    batches, paper preset, 1 thread: peak RSS bf16 2.96 -> 2.35 GiB, fp32 2.34 -> 1.93 GiB;
    benchmarks/bf16_memory.py) but maps and zero-fills fresh pages for every activation: IEMOCAP-shaped
    epochs took 29.2 s instead of 19.1 s in fp32 and 17.0 s instead of 12.6 s in bf16 (2 threads, the
    same session; docs/speed.md), so it is not the default. Nothing happens where the user set
    MALLOC_MMAP_THRESHOLD_ or the C library has no mallopt (not glibc)."""
    if _os.environ.get("SAFSD_GLNET_MALLOC") != "compact" or "MALLOC_MMAP_THRESHOLD_" in _os.environ:
        return
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    m_mmap_threshold = -3  # glibc's malloc.h
    mallopt(m_mmap_threshold, 1 << 20)


_compact_heap_if_asked()

# public name -> the module that defines it; loaded on first access (PEP 562), so that importing the
# package (as every ``python -m safsd_glnet...`` does) stays cheap and sets OMP_WAIT_POLICY first
_EXPORTS = {
    "Config": "config",
    "preset": "config",
    "PRESETS": "config",
    "load_data": "data",
    "load_corpus": "data.kit_format",
    "train": "training.train",
    "train_seeds": "training.train",
    "evaluate": "training.train",
    "load_model": "training.train",
    "Predictor": "training.prediction",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'safsd_glnet' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
