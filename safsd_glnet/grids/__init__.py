"""Many runs: notebooks run headless (papermill_runner.py), ablation grids (ablation.py) and their
report (ablation_report.py), where runs execute (executors.py), seeds on a cluster (seed_runs.py), the
five notebooks in order (demo.py)."""
