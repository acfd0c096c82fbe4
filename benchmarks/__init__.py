"""Benchmark scripts of the kit; each also runs on its own (``python benchmarks/<name>.py``).
A package so that scripts and tests import each other's helpers (``from experiments import real_text``)."""
