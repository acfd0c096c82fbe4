"""SAFSD-GLNet research kit: multimodal emotion recognition in conversations."""
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
# gives 2.96 GiB at the same speed (32: 2.70 GiB; 0, no cache: 2.62 GiB and three times slower);
# benchmarks/bf16_memory.py, benchmarks/results/bf16_memory.json. Read by oneDNN when it first builds a
# primitive, so setting it here, before torch loads, is in time; a value the user set is kept.
_os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "128")
