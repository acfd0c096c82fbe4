"""Utterance features: frozen sentence encoders (text.py), fine-tuned context-aware encoders
(finetune.py, with its transformer inputs in utterance_inputs.py), openSMILE audio (audio.py)."""
