"""A tiny text world for the fine-tuning and prediction tests: a random 2-layer BERT with a
word-level tokenizer (no network, one word is one token) and small labelled tables whose words
hint at the label."""
from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

WORDS = ("hello there good morning hi how are you fine thanks a lot i am so happy sad angry no yes what "
         "great day bad leave me alone").split()
CLASSES = ("happy", "sad", "angry")
CUES = {"happy": "i am so happy great day", "sad": "i am sad no bad day", "angry": "what no angry leave me alone"}
HEADER = ["split", "dialogue_id", "utterance_index", "speaker", "emotion", "text"]


# ------------------------------------------------------------------------------------ fixtures

def make_tiny_bert(folder: Path) -> Path:
    """A random 2-layer BERT and a word-level tokenizer, saved like any Hugging Face model."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ":", "m", "f", *WORDS]
    BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder)
    return folder


def write_table(path: Path, seed: int = 0, test_labels=None) -> Path:
    """8 train, 3 valid and 3 test dialogues of 3-5 utterances whose words hint at the label."""
    rng = random.Random(seed)
    rows = []
    for split, count in (("train", 8), ("valid", 3), ("test", 3)):
        for d in range(count):
            for u in range(rng.randint(3, 5)):
                label = rng.choice(CLASSES)
                text = " ".join(rng.sample(CUES[label].split(), 3) + [rng.choice(["hello there", "fine thanks"])])
                rows.append([split, f"{split}{d}", u, rng.choice("MF"), label, text])
    if test_labels is not None:  # replace the test labels (never read for a choice)
        tests = [r for r in rows if r[0] == "test"]
        for r, y in zip(tests, test_labels(len(tests))):
            r[4] = y
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))
