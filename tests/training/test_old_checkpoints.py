"""Checkpoints and run folders of 0.x versions keep loading after the compatibility shims went.

A checkpoint written by the kit before this layout (main at 611ed97) differs from today's in three
ways, each rebuilt here from a checkpoint written now, so that no binary file is committed:

* each speaker table (``speaker.weight``, ``gcn.speaker.weight``) has one row more, a padding index
  that no lookup reached (``(num_speakers + 1, H)``);
* its config holds ``model.gcn_impl = "dense"``;
* its config holds ``train.amp = true`` (the old default).

Loading it must give the same predictions as the model it was made from: the extra rows are
dropped, never read. Checked once by hand with a checkpoint written by main itself (the tiny
preset, one epoch on ``synthetic:iemocap``): it loads and predicts.
"""
import torch

from safsd_glnet.config import preset
from safsd_glnet.data.atomic_files import load_torch, save_torch
from safsd_glnet.data.synthetic import make_synthetic
from safsd_glnet.training.train import load_model, predict, train

SIZES = {"t": 16, "a": 12, "v": 8}


def old_checkpoint(new: dict, num_speakers: int) -> dict:
    """``new`` in the layout of 0.x versions (see the module docstring)."""
    old = dict(new)
    old["model"] = dict(new["model"])
    for key in ("speaker.weight", "gcn.speaker.weight"):
        table = new["model"][key]
        assert table.shape[0] == num_speakers  # today's tables hold exactly the speakers
        padding = torch.full((1, table.shape[1]), 7.0)  # a row no lookup may reach
        old["model"][key] = torch.cat([table, padding])
    old["config"] = {section: dict(values) for section, values in new["config"].items()}
    old["config"]["model"]["gcn_impl"] = "dense"
    old["config"]["train"]["amp"] = True
    return old


def test_a_checkpoint_of_the_old_shape_loads_and_predicts_as_the_model_it_came_from(tmp_path):
    corpus = make_synthetic("iemocap", seed=0, feature_sizes=SIZES, num_dialogues=12)
    config = preset("tiny").replace(train={"epochs": 1, "device": "cpu"})
    train(config, corpus, tmp_path / "run")
    new_path = tmp_path / "run" / "checkpoint_best.pt"
    new = load_torch(new_path)
    old_path = tmp_path / "old.pt"
    save_torch(old_path, old_checkpoint(new, corpus.num_speakers))

    model_new, _ = load_model(new_path)
    model_old, info = load_model(old_path)
    assert model_old.speaker.weight.shape[0] == corpus.num_speakers
    assert info["config"].train.amp == "auto" and not hasattr(info["config"].model, "gcn_impl")
    dialogues = corpus.split("test")
    p_new, p_old = predict(model_new, dialogues), predict(model_old, dialogues)
    torch.testing.assert_close(torch.as_tensor(p_old.probs), torch.as_tensor(p_new.probs))


def test_a_speaker_table_of_another_shape_is_still_refused(tmp_path):
    """Only the one padding row is dropped; a table of any other size is a file that does not
    describe its model, refused by the checkpoint checks with the field's name."""
    import pytest

    corpus = make_synthetic("iemocap", seed=0, feature_sizes=SIZES, num_dialogues=12)
    train(preset("tiny").replace(train={"epochs": 1, "device": "cpu"}), corpus, tmp_path / "run")
    ckpt = load_torch(tmp_path / "run" / "checkpoint_best.pt")
    table = ckpt["model"]["speaker.weight"]
    ckpt["model"]["speaker.weight"] = torch.cat([table, table])  # 2 n rows
    save_torch(tmp_path / "bad.pt", ckpt)
    with pytest.raises(ValueError, match=r"field 'model.speaker.weight' is \(4, 16\)"):
        load_model(tmp_path / "bad.pt")


def test_an_old_resume_point_resumes_as_the_uninterrupted_run(tmp_path):
    """A 0.x resume point (``checkpoint_last.pt``) also holds Adam's moments of the padding rows:
    resuming from it must cut them with the tables and finish as the uninterrupted run does."""
    import pytest

    from safsd_glnet.model.network import SPEAKER_TABLES
    from safsd_glnet.training.train import build_model

    corpus = make_synthetic("iemocap", seed=0, feature_sizes=SIZES, num_dialogues=12)
    config = preset("tiny").replace(train={"epochs": 3, "device": "cpu", "save_every_s": 0.0})
    full = train(config, corpus, tmp_path / "full").metrics

    def stop(epoch, record):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, corpus, tmp_path / "cut", callback=stop)
    names = [name for name, _ in build_model(config, corpus).named_parameters()]
    for file in ("checkpoint_last.pt", "checkpoint_best.pt"):
        path = tmp_path / "cut" / file
        new = load_torch(path)
        old = old_checkpoint(new, corpus.num_speakers)
        if "optimizer" in new:
            state = {index: dict(values) for index, values in new["optimizer"]["state"].items()}
            for key in SPEAKER_TABLES:
                moments = state[names.index(key)]
                for name, value in moments.items():
                    if isinstance(value, torch.Tensor) and value.dim() == 2:
                        moments[name] = torch.cat([value, torch.full((1, value.shape[1]), 3.0)])
            old["optimizer"] = {**new["optimizer"], "state": state}
        save_torch(path, old)

    resumed = train(config, corpus, tmp_path / "cut", resume=True).metrics
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(resumed["history"]) == strip(full["history"])
    assert resumed["test"] == full["test"]
    # the moments were cut with the tables (the fused CPU step reads only a parameter's own rows,
    # so the scores alone would not show uncut moments; the saved state does)
    last = load_torch(tmp_path / "cut" / "checkpoint_last.pt")
    for key in SPEAKER_TABLES:
        rows = last["model"][key].shape[0]
        assert rows == corpus.num_speakers
        for value in last["optimizer"]["state"][names.index(key)].values():
            if isinstance(value, torch.Tensor) and value.dim() == 2:
                assert value.shape[0] == rows, (key, value.shape)
