"""Training and using a model: train / evaluate / load (train.py), the rule that chooses the
reported epoch (epoch_selection.py), what may be trained into a run folder (run_folder_guard.py),
progress bars that notebooks keep (progress.py), predictions for new dialogues (prediction.py)."""
