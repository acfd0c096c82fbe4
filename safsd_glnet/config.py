"""Configuration dataclasses and presets.

A run is described by one :class:`Config` (model, loss, training). Every ablation switch of
SPEC.md is a field here, so an ablation is a config change and nothing else. Presets:

* ``paper``: the authors' reference hyperparameters for IEMOCAP (H = 1024, 8 heads, dropout
  0.5, Adam 1e-4, batch 16, 80 epochs, GCN K = 4, mask p = 0.5, gamma 2, T = 1).
* ``paper-meld``: the same model with MELD's reference settings (SPEC.md): Adam 5e-6, batch 8,
  90 epochs, and T = 8 as in SDT.
* ``paper-reference``: ``paper`` with SAF as the reference code computes it (``saf_mode="reference"``,
  the prior similarity; IEMOCAP only), for users who want the authors' intent.
* ``small``: the same model at H = 128, fast enough to train on a laptop CPU in minutes.
* ``tiny``: H = 16 and a handful of epochs, for tests.

``Config.to_dict`` / ``Config.from_dict`` round-trip through JSON (run folders and
checkpoints store it), and ``Config.override("model.hidden=64")`` applies dotted overrides
from the command line and papermill.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from .dataset_facts import MODALITIES, MODALITY_NAMES  # noqa: F401  (re-exported: configs name modalities)


def normalise_modalities(value: Any) -> tuple[str, ...]:
    """Turn ``"tav"``, ``"t+a"``, ``["t", "v"]`` or ``"text,audio"`` into ``("t", "a", ...)``.

    The result keeps the canonical order t, a, v so configs compare equal however written.
    """
    if isinstance(value, str):
        parts = [p for p in value.replace("+", ",").replace(" ", ",").split(",") if p]
        if len(parts) == 1 and parts[0] not in MODALITY_NAMES.values():
            parts = list(parts[0])  # "tav"
    else:
        parts = list(value)
    long_to_short = {v: k for k, v in MODALITY_NAMES.items()}
    short = []
    for p in parts:
        p = long_to_short.get(p, p)
        if p not in MODALITIES:
            raise ValueError(f"unknown modality {p!r}: expected a subset of t, a, v")
        short.append(p)
    if not short:
        raise ValueError("at least one modality is required")
    if len(set(short)) != len(short):
        raise ValueError(f"modality listed twice in {value!r}")
    return tuple(m for m in MODALITIES if m in short)


_SIMPLE_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def check_field_types(obj: Any) -> None:
    """Raise a ValueError naming the class, field and value when a field has the wrong type
    (configs arrive from JSON, the command line and papermill, where ``"64"`` or ``"oops"``
    can slip in). Annotations are strings here (``from __future__ import annotations``)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        options = [t.strip() for t in str(f.type).split("|")]
        if "None" in options and value is None:
            continue
        allowed = tuple(t for name in options for t in _SIMPLE_TYPES.get(name, ()))
        if not allowed:
            continue  # structured fields (modalities) are checked by their own normaliser
        # bool is an int subclass: True must not pass for hidden=1.
        if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
            raise ValueError(f"{type(obj).__name__}: {f.name}={value!r} should be {f.type}")


def _at_least(obj: Any, name: str, low: int, why: str = "") -> None:
    value = getattr(obj, name)
    if value < low:
        raise ValueError(f"{type(obj).__name__}: {name}={value} must be >= {low}{why}")


def _finite_at_least(obj: Any, name: str, low: float) -> None:
    value = getattr(obj, name)
    if not (math.isfinite(value) and value >= low):
        raise ValueError(f"{type(obj).__name__}: {name}={value} must be a finite number >= {low:g}")


def _finite_positive(obj: Any, name: str) -> None:
    value = getattr(obj, name)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{type(obj).__name__}: {name}={value} must be a finite number > 0")


_DEVICE_NAME = re.compile(r"^(auto|cpu|mps|meta|(cuda|xpu)(:\d+)?)$")


def check_device_name(name: str, what: str = "device") -> None:
    """Refuse device strings torch cannot parse (``gpu``, ``cuda0``) with a message that lists
    the forms it can; whether the device exists is checked when a run starts
    (:func:`safsd_glnet.training.train.select_device`)."""
    if not isinstance(name, str) or not _DEVICE_NAME.match(name):
        raise ValueError(f"{what}={name!r} is not a device: expected auto, cpu, cuda, cuda:N or mps")


@dataclass
class ModelConfig:
    modalities: tuple[str, ...] = MODALITIES  # which of t/a/v the model reads
    standardise: bool = True  # z-score each input dimension with the training split's mean and std (kept in the model)
    hidden: int = 1024  # H, width of every modality stream
    heads: int = 8  # attention heads per block
    transformer_layers: int = 1  # Transformer encoder layers per attention block
    ff_width: int | None = None  # position-wise feed-forward width; None = H (reference)
    dropout: float = 0.5  # dropout in encoders, attention blocks and student heads
    use_transformer: bool = True  # ablation: False skips the modality-hybrid attention stage
    use_gcn: bool = True  # ablation: False skips the masked GCN (teacher reads F'_m)
    gcn_layers: int = 4  # K, gated high-frequency graph layers
    use_mask: bool = True  # ablation: False turns the Bernoulli feature mask off
    mask_prob: float = 0.5  # p of dropping a node feature in training (rescaled by 1/(1-p))
    window_past: int | None = None  # intra-modal edges to the p previous utterances; None = all
    window_future: int | None = None  # intra-modal edges to the f next utterances; None = all

    def __post_init__(self) -> None:
        check_field_types(self)
        self.modalities = normalise_modalities(self.modalities)
        _at_least(self, "hidden", 1)
        _at_least(self, "heads", 1)
        _at_least(self, "transformer_layers", 1)
        if self.ff_width is not None:
            _at_least(self, "ff_width", 1)
        # K = 0 with the GCN on would be a graph stage that does nothing: say "use_gcn=false".
        _at_least(self, "gcn_layers", 1 if self.use_gcn else 0,
                  " while use_gcn is true (set model.use_gcn=false to drop the GCN)")
        if self.hidden % self.heads:
            raise ValueError(f"ModelConfig: hidden={self.hidden} is not divisible by heads={self.heads}")
        if not 0.0 <= self.mask_prob < 1.0:
            raise ValueError(f"ModelConfig: mask_prob={self.mask_prob} must lie in [0, 1)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig: dropout={self.dropout} must lie in [0, 1)")
        for name in ("window_past", "window_future"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ValueError(f"ModelConfig: {name}={v} must be >= 0 or None")

    @property
    def effective_mask_prob(self) -> float:
        return self.mask_prob if self.use_mask else 0.0


@dataclass
class LossConfig:
    teacher_weight: float = 1.0  # g1, class-weighted CE on the teacher
    student_weight: float = 1.0  # g2, SAF (or CE) on each student
    distill_weight: float = 1.0  # g3, KL self-distillation teacher -> students
    class_weights: str = "inverse"  # CE weights: "inverse" (1/frequency, reference) or "none"
    use_saf: bool = True  # ablation: False trains students with plain CE
    # SAF (SPEC.md, amended; safsd_glnet.model.losses): "soft" (target smoothed towards the similar classes),
    # "penalty" (focal loss times 1 + lambda * mass on the similar classes), or "reference" (the
    # reference code's formula with its IEMOCAP alpha, for comparison; IEMOCAP classes only).
    # The defaults (penalty, lambda 2, beta 0, vad) are the pre-registered study's decision
    # (docs/saf_study_results.md); by its rule SAF did not beat scale-matched CE students, and
    # this variant, the best, does not lose to them.
    saf_mode: str = "penalty"
    similarity: str = "vad"  # S: "prior", "vad", "prototype" or "identity"
    gamma: float = 2.0  # focal exponent
    saf_eps: float = 0.1  # soft mode: target mass moved from the true class to its similar classes, in [0, 0.5)
    saf_lambda: float = 2.0  # penalty mode: weight of the probability on the similar classes
    saf_beta: float = 0.0  # class weights abar_c ~ f_c^-beta at the true class (0 uniform, 1 inverse frequency)
    vad_sigma: float = 0.5  # bandwidth of S = exp(-||vad_i - vad_j||^2 / sigma^2)
    use_distillation: bool = True  # ablation: False drops the KL term
    temperature: float = 1.0  # T of the softened distributions
    detach_teacher: bool = False  # True stops KL gradients from reaching the teacher

    def __post_init__(self) -> None:
        check_field_types(self)
        checks = {
            "class_weights": ("inverse", "none"),
            "saf_mode": ("soft", "penalty", "reference"),
            "similarity": ("prior", "vad", "prototype", "identity"),
        }
        for name, allowed in checks.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"LossConfig: {name}={getattr(self, name)!r}, expected one of {allowed}")
        for name in ("teacher_weight", "student_weight", "distill_weight", "gamma", "saf_lambda", "saf_beta"):
            _finite_at_least(self, name, 0.0)
        if not (math.isfinite(self.saf_eps) and 0.0 <= self.saf_eps < 0.5):
            # At eps >= 0.5 the soft target could favour a similar class over the true one.
            raise ValueError(f"LossConfig: saf_eps={self.saf_eps} must lie in [0, 0.5)")
        for name in ("temperature", "vad_sigma"):
            _finite_positive(self, name)


@dataclass
class TrainConfig:
    optimizer: str = "adam"  # "adam" or "adamw"
    lr: float = 1e-4
    weight_decay: float = 1e-5
    batch_size: int = 16  # dialogues per batch
    epochs: int = 80
    patience: int | None = None  # early stopping on validation weighted F1; None = off
    seed: int = 0
    device: str = "auto"  # "auto" (cuda > mps > cpu), or an explicit torch device
    # Mixed precision (safsd_glnet.model.precision.train_precision): "auto" = bf16 where the hardware has bf16 units
    # and it pays; "bf16"; false = fp32. true (the default written by versions before "auto") reads as "auto".
    amp: bool | str = "auto"
    grad_clip: float | None = None  # max gradient norm; None = no clipping
    # torch.compile of the attention layers' row-wise regions (safsd_glnet.model.compiled): "auto" = only where
    # it was measured to pay and the run is long enough to earn the compile time back; true; false. The
    # numbers equal eager's up to rounding (the same dropout masks), so it is runtime only, like the device.
    compile: bool | str = "auto"
    progress: bool = True  # a progress bar per epoch
    # checkpoint_last.pt (the resume point: weights, optimiser, random states; 0.9 GB at the paper size,
    # 1.3-2.7 s to write on a 2-core CPU) is written at most every this many seconds, after the last
    # epoch, and when early stopping ends the run; 0 = after every epoch. An interrupted run loses at
    # most this much work. Runtime only: changing it does not make another run.
    save_every_s: float = 60.0

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"TrainConfig: optimizer={self.optimizer!r}, expected 'adam' or 'adamw'")
        _at_least(self, "batch_size", 1)
        _at_least(self, "epochs", 1)
        if self.patience is not None:
            # patience 0 would stop before the first epoch (and then "nothing to train").
            _at_least(self, "patience", 1, " (None turns early stopping off)")
        _finite_positive(self, "lr")
        _finite_at_least(self, "weight_decay", 0.0)
        if self.grad_clip is not None:
            _finite_positive(self, "grad_clip")
        _finite_at_least(self, "save_every_s", 0.0)
        check_device_name(self.device, "TrainConfig: device")
        # --set reads text for a field that may hold a string; true / false mean the booleans.
        if isinstance(self.amp, str) and self.amp.lower() in ("true", "false"):
            self.amp = self.amp.lower() == "true"
        if self.amp is True:  # configs and checkpoints of 0.x versions: "autocast where it pays" is what it asked
            self.amp = "auto"
        if self.amp not in ("auto", "bf16", True, False):  # (check_field_types has refused numbers)
            raise ValueError(f"TrainConfig: amp={self.amp!r}, expected 'auto', 'bf16', true or false")
        if isinstance(self.compile, str) and self.compile.lower() in ("true", "false", "auto"):
            self.compile = {"true": True, "false": False, "auto": "auto"}[self.compile.lower()]
        if self.compile not in ("auto", True, False):
            raise ValueError(f"TrainConfig: compile={self.compile!r}, expected 'auto', true or false")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model"]["modalities"] = "".join(self.model.modalities)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        if not isinstance(d, dict):
            raise ValueError(f"Config: expected an object with sections model, loss, train; got {type(d).__name__}")
        parts = {}
        for name, kind in (("model", ModelConfig), ("loss", LossConfig), ("train", TrainConfig)):
            sub = d.get(name, {})
            if not isinstance(sub, dict):
                raise ValueError(f"Config: section {name!r} must be an object, got {type(sub).__name__}")
            sub = dict(sub)
            if name == "model":
                _drop_implementation_fields(sub)
                # Configurations written before the field existed trained on raw features.
                sub.setdefault("standardise", False)
            if name == "loss":
                _drop_first_saf_fields(sub)
            known = {f.name for f in dataclasses.fields(kind)}
            unknown = set(sub) - known
            if unknown:
                raise ValueError(f"Config: unknown {name} fields {sorted(unknown)}")
            parts[name] = kind(**sub)
        return cls(**parts)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def replace(self, **sections: dict[str, Any]) -> "Config":
        """A copy with fields changed, e.g. ``cfg.replace(model={"use_gcn": False})``."""
        d = self.to_dict()
        for name, changes in sections.items():
            if name not in d:
                raise ValueError(f"Config: no section {name!r}")
            d[name].update(changes)
        return Config.from_dict(d)

    def override(self, *assignments: str) -> "Config":
        """Apply ``section.field=value`` strings (the command line's ``--set``, papermill's ``SET``).

        Values are read for the field's type (:func:`parse_value`), so whatever ``config.json``
        holds can be given back: ``loss.class_weights=none`` stays the string "none", while
        ``train.patience=none`` (or ``null``) turns early stopping off."""
        changes: dict[str, dict[str, Any]] = {}
        sections = {"model": ModelConfig, "loss": LossConfig, "train": TrainConfig}
        for a in assignments:
            if "=" not in a or "." not in a.split("=", 1)[0]:
                raise ValueError(f"override {a!r}: expected section.field=value, e.g. model.hidden=64")
            key, raw = a.split("=", 1)
            section, name = key.split(".", 1)
            kind = sections.get(section)
            types = {f.name: str(f.type) for f in dataclasses.fields(kind)} if kind else {}
            changes.setdefault(section, {})[name] = parse_value(raw, types.get(name))
        return self.replace(**changes)


def _drop_implementation_fields(model: dict[str, Any]) -> None:
    """Configurations of 0.x versions hold ``model.gcn_impl``, which chose between two
    implementations of the same GCN (how the maths runs, not what the model is; the kit picks the
    fast path itself, :mod:`safsd_glnet.model.kernels`). The field is dropped, so that their
    checkpoints and run folders still load."""
    model.pop("gcn_impl", None)


def _drop_first_saf_fields(loss: dict[str, Any]) -> None:
    """Configurations written before SPEC.md's amended SAF loss hold ``loss.alpha`` (the first
    SPEC's weights inside soft SAF's sum). That loss exists now only as ``saf_mode="reference"``;
    the field is dropped so that their checkpoints and run folders still load for evaluation and
    prediction (the model's weights do not depend on it). Their ``saf_eps`` and ``saf_beta`` take
    today's defaults, so such a run, trained again, is a run of the amended loss."""
    loss.pop("alpha", None)


def parse_value(raw: str, field_type: str | None = None) -> Any:
    """Read one override value: ``"64"`` -> 64, ``"false"`` -> False, ``"null"`` -> None,
    ``"tav"`` -> ``"tav"``.

    ``field_type`` is the field's annotation as written (``"int | None"``, ``"str"``): a field
    that holds strings keeps the text as it is (``"none"`` is a valid ``class_weights``), and
    ``none`` means None only for a field that may be None. Values are otherwise read as JSON,
    so every value of a ``config.json`` round-trips, quoted strings included."""
    text = raw.strip()
    options = [t.strip() for t in field_type.split("|")] if field_type else []
    if "str" in options and not (text.startswith('"') and text.endswith('"') and len(text) >= 2):
        # A string field: "none" / "null" mean None only where None is allowed and no string
        # of that spelling is meaningful; every string field of the kit names choices.
        if text.lower() in ("null", "none") and "None" in options:
            return None
        return raw.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if text.lower() in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError):
        return raw


def preset(name: str) -> Config:
    """The named preset (see the module docstring and :data:`PRESETS`)."""
    if name == "paper":
        return Config()
    if name == "paper-meld":
        # SPEC.md, "Reference hyperparameters": the authors' MELD scripts use lr 5e-6, batch 8
        # and 90 epochs; T = 8 is SDT's MELD temperature (the SAFSD-GLNet code's default is 1).
        return Config(loss=LossConfig(temperature=8.0), train=TrainConfig(lr=5e-6, batch_size=8, epochs=90))
    if name == "small":
        # Same architecture, narrower streams and a faster learning rate so that a CPU run of a
        # few minutes converges; dropout lowered because the model is 60x smaller.
        return Config(
            model=ModelConfig(hidden=128, heads=4, dropout=0.3),
            train=TrainConfig(lr=1e-3, epochs=30, patience=10),
        )
    if name == "paper-reference":
        # The authors' intent for IEMOCAP: the paper preset with the reference code's SAF (its alpha
        # inside the sum, the hand-set prior S). Kept for comparison: SPEC.md's amended loss is the default.
        return Config(loss=LossConfig(saf_mode="reference", similarity="prior"))
    if name == "tiny":
        return Config(
            model=ModelConfig(hidden=16, heads=2, dropout=0.1, gcn_layers=2),
            train=TrainConfig(lr=3e-3, epochs=3, batch_size=8, progress=False),
        )
    raise ValueError(f"unknown preset {name!r}: expected one of {', '.join(PRESETS)}")


PRESETS = ("paper", "paper-meld", "paper-reference", "small", "tiny")
PAPER_PRESET_FOR = {"iemocap": "paper", "meld": "paper-meld"}  # the reference settings of each corpus
