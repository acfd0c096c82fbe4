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
