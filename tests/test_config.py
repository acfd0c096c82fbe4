"""Config dataclasses: presets, JSON round trip, overrides, validation."""
import json

import pytest

from safsd_glnet.config import PRESETS, Config, LossConfig, normalise_modalities, preset


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


@pytest.mark.parametrize("assignment, message", [
    ("model.hidden=-16", "hidden=-16 must be >= 1"),
    ("model.heads=0", "heads=0 must be >= 1"),
    ("model.transformer_layers=0", "transformer_layers"),
    ("model.gcn_layers=0", "gcn_layers=0 must be >= 1 while use_gcn"),
    ("train.patience=0", "patience=0 must be >= 1"),
    ("train.patience=-2", "patience"),
    ("train.lr=0", "lr=0 must be a finite number > 0"),
    ("train.lr=NaN", "lr=nan"),
    ("train.weight_decay=-1", "weight_decay"),
    ("train.device=gpu", "device='gpu' is not a device"),
    ("train.device=cuda0", "not a device"),
    ("loss.temperature=0", "temperature"),
    ("loss.vad_sigma=-1", "vad_sigma"),
    ("loss.saf_lambda=-1", "saf_lambda"),
    ("loss.saf_eps=0.5", r"saf_eps=0.5 must lie in \[0, 0.5\)"),
    ("loss.saf_eps=-0.1", "saf_eps"),
    ("loss.saf_beta=-1", "saf_beta=-1"),
    ("loss.saf_mode=focal", "saf_mode"),
    ("loss.distill_weight=-0.5", "distill_weight"),
])
def test_impossible_values_are_refused_with_the_field(assignment, message):
    with pytest.raises(ValueError, match=message):
        preset("small").override(assignment)


def test_gcn_layers_may_be_zero_only_without_the_gcn():
    cfg = preset("small").override("model.use_gcn=false", "model.gcn_layers=0")
    assert cfg.model.gcn_layers == 0


@pytest.mark.parametrize("name", PRESETS)
def test_every_config_value_round_trips_through_set(name):
    """Whatever config.json holds is accepted back by --set, written as JSON or as plain text."""
    cfg = preset(name)
    for section, fields in json.loads(cfg.to_json()).items():
        for field, value in fields.items():
            forms = [json.dumps(value)]
            if isinstance(value, str):
                forms.append(value)  # --set loss.class_weights=none, unquoted
            elif isinstance(value, bool):
                forms.append(str(value))  # True / False as Python prints them
            elif value is None:
                forms += ["none", "None"]
            for text in forms:
                again = cfg.override(f"{section}.{field}={text}")
                assert again == cfg, (section, field, text)


def test_none_means_none_only_where_a_field_allows_it():
    cfg = preset("small").override("loss.class_weights=none", "train.patience=none", "model.ff_width=null")
    assert cfg.loss.class_weights == "none" and cfg.train.patience is None and cfg.model.ff_width is None
    with pytest.raises(ValueError, match="hidden"):
        preset("small").override("model.hidden=none")


def test_meld_has_its_own_paper_preset():
    meld, iemocap = preset("paper-meld"), preset("paper")
    assert (meld.train.lr, meld.train.batch_size, meld.train.epochs, meld.loss.temperature) == (5e-6, 8, 90, 8.0)
    assert meld.model == iemocap.model  # the same model, other training settings
    with pytest.raises(ValueError, match="paper-meld"):
        preset("meld")


@pytest.mark.parametrize("d, message", [
    ([1, 2], "expected an object"),
    ({"model": [1, 2]}, "section 'model' must be an object"),
    ({"train": {"nonsense": 1}}, "unknown train fields"),
])
def test_malformed_config_files_are_refused(d, message):
    with pytest.raises(ValueError, match=message):
        Config.from_dict(d)


def test_a_config_from_before_the_amended_saf_loads():
    """config.json and checkpoints written before SPEC.md's amended SAF hold loss.alpha: they load
    (for evaluation and prediction) with the amended loss's fields at their defaults."""
    old = preset("small").to_dict()
    for key in ("saf_eps", "saf_beta"):
        del old["loss"][key]
    old["loss"]["alpha"] = "inverse"
    cfg = Config.from_dict(old)
    assert cfg.loss.saf_eps == LossConfig().saf_eps and cfg.loss.saf_beta == LossConfig().saf_beta
    assert cfg.model == preset("small").model


def test_paper_reference_preset_is_the_paper_preset_with_the_reference_saf():
    ref, paper = preset("paper-reference"), preset("paper")
    assert ref.loss.saf_mode == "reference" and ref.loss.similarity == "prior"
    assert ref.model == paper.model and ref.train == paper.train
    assert ref.replace(loss={"saf_mode": paper.loss.saf_mode, "similarity": paper.loss.similarity}) == paper
