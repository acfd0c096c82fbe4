"""Checkpoints from elsewhere: archive checks before torch.load, shape checks before allocation.

Every hostile checkpoint is refused before torch.load (archive, data.pkl scan) or before the
real model is built (config bounds, meta-device shapes), so loading them here is safe.
"""
from __future__ import annotations

import pytest
import torch

import hostile_fixtures as hf
from safsd_glnet.data.safe.checkpoint import LIMITS
from safsd_glnet.data.atomic_files import load_torch
from safsd_glnet.training.train import load_model


def _build(tmp_path, name):
    hostile = next(h for h in hf.HOSTILE_CHECKPOINTS if h.filename == name)
    return hf.build_all(tmp_path, [hostile])[name]


def test_a_kit_checkpoint_loads_with_its_weights(tmp_path):
    ckpt = hf._checkpoint()
    path = tmp_path / "good.pt"
    torch.save(ckpt, path)
    model, info = load_model(path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, ckpt["model"][key])
    assert info["epoch"] == 1 and not model.training


@pytest.mark.parametrize("name, words", [
    ("big_hidden.pt", "field 'config.model.hidden' is 65536; expected an integer from 1 to 16384"),
    ("expanded_weights.pt", "its weights claim \\d+ bytes but the file has"),
    ("huge_feature_size.pt", "field 'data.feature_sizes.t' is 1000000000"),
    ("wrong_shapes.pt", "field 'model.speaker.weight' is \\(2, 15\\) torch.float32, the config describes \\(2, 16\\)"),
    ("missing_weight.pt", "field 'model' lacks 'speaker.weight'"),
    ("config_is_list.pt", "field 'config' must be a dict"),
    ("sizes_are_text.pt", "field 'data.feature_sizes' must map"),
    ("deep_checkpoint.pt", "data.pkl: refused to load: objects nest more than 100 deep"),
    ("checkpoint_memo_bomb.pt", "shared references"),
    ("checkpoint_runs_code.pt", "refused to load: the checkpoint holds something other than tensors"),
    ("compressed_storage.pt", "member 'archive/data/0' is compressed"),
    ("legacy_pickle_checkpoint.pt", "is a pickle, not a safsd-glnet checkpoint"),
    ("text_as_checkpoint.pt", "is a text file, not a safsd-glnet checkpoint"),
    ("empty_checkpoint.pt", "is an empty file, not a safsd-glnet checkpoint"),
])
def test_hostile_checkpoints_are_refused_by_field(tmp_path, name, words):
    path = _build(tmp_path, name)
    with pytest.raises(ValueError, match=words) as info:
        load_model(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    assert "weights_only" not in message and "allow_pickle" not in message


def test_config_bounds_are_exact(tmp_path):
    # At the limit the config passes its bounds and fails on the shapes the file really has;
    # one above, it is refused before any model is built.
    for hidden, words in ((LIMITS["hidden"], "field 'model.speaker.weight'"),
                          (LIMITS["hidden"] + 2, "config.model.hidden")):
        ckpt = hf._checkpoint()
        ckpt["config"]["model"].update(hidden=hidden, heads=2)
        path = tmp_path / f"h{hidden}.pt"
        torch.save(ckpt, path)
        with pytest.raises(ValueError, match=words):
            load_model(path)


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "good.pt"
    torch.save(hf._checkpoint(), path)
    data = path.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.pt: not a readable safsd-glnet checkpoint"):
        load_torch(cut)
