"""Config dataclasses: presets, JSON round trip, overrides, validation."""
import json

import pytest

from safsd_glnet.config import PRESETS, Config, normalise_modalities, preset


@pytest.mark.parametrize("name", PRESETS)
def test_presets_round_trip_through_json(name):
    cfg = preset(name)
    again = Config.from_dict(json.loads(cfg.to_json()))
    assert again == cfg


def test_paper_preset_has_the_reference_hyperparameters():
    cfg = preset("paper")
    assert (cfg.model.hidden, cfg.model.heads, cfg.model.dropout, cfg.model.gcn_layers, cfg.model.mask_prob) == \
        (1024, 8, 0.5, 4, 0.5)
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.train.batch_size, cfg.train.epochs) == (1e-4, 1e-5, 16, 80)
    assert (cfg.loss.gamma, cfg.loss.temperature, cfg.loss.detach_teacher) == (2.0, 1.0, False)


def test_overrides_parse_values():
    cfg = preset("small").override("model.use_gcn=false", "model.window_past=null", "train.lr=0.01",
                                   "loss.similarity=prior", "model.modalities=t+a")
    assert cfg.model.use_gcn is False and cfg.model.window_past is None
    assert cfg.train.lr == 0.01 and cfg.loss.similarity == "prior" and cfg.model.modalities == ("t", "a")


@pytest.mark.parametrize("assignment, message", [
    ("model.hidden=oops", "hidden"),
    ("model.hidden=true", "hidden"),
    ("train.progress=3", "progress"),
    ("loss.similarity=cosine", "similarity"),
    ("loss.saf_mode=hard", "saf_mode"),
    ("model.mask_prob=1.0", "mask_prob"),
    ("model.heads=5", "divisible"),
    ("model.nonsense=1", "unknown"),
    ("hidden=3", "section.field"),
    ("model.modalities=tx", "modality"),
])
def test_bad_overrides_name_the_field(assignment, message):
    with pytest.raises(ValueError, match=message):
        preset("small").override(assignment)


def test_modalities_normalise_to_canonical_order():
    assert normalise_modalities("vt") == ("t", "v")
    assert normalise_modalities(["audio", "text"]) == ("t", "a")
    with pytest.raises(ValueError, match="twice"):
        normalise_modalities("tt")
