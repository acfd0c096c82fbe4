"""Configuration dataclasses and presets.

A run is described by one :class:`Config` (model, loss, training). Every ablation switch of
SPEC.md is a field here, so an ablation is a config change and nothing else. Presets:

* ``paper``: the authors' reference hyperparameters (H = 1024, 8 heads, dropout 0.5, Adam
  1e-4, batch 16, 80 epochs, GCN K = 4, mask p = 0.5, gamma 2, T = 1).
* ``small``: the same model at H = 128, fast enough to train on a laptop CPU in minutes.
* ``tiny``: H = 16 and a handful of epochs, for tests.

``Config.to_dict`` / ``Config.from_dict`` round-trip through JSON (run folders and
checkpoints store it), and ``Config.override("model.hidden=64")`` applies dotted overrides
from the command line and papermill.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

MODALITIES = ("t", "a", "v")
MODALITY_NAMES = {"t": "text", "a": "audio", "v": "visual"}


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


@dataclass
class ModelConfig:
    modalities: tuple[str, ...] = MODALITIES  # which of t/a/v the model reads
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
    gcn_impl: str = "dense"  # "pyg" (MessagePassing over an edge list) or "dense" (same maths, per-dialogue matmuls)

    def __post_init__(self) -> None:
        check_field_types(self)
        self.modalities = normalise_modalities(self.modalities)
        if self.hidden % self.heads:
            raise ValueError(f"ModelConfig: hidden={self.hidden} is not divisible by heads={self.heads}")
        if not 0.0 <= self.mask_prob < 1.0:
            raise ValueError(f"ModelConfig: mask_prob={self.mask_prob} must lie in [0, 1)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig: dropout={self.dropout} must lie in [0, 1)")
        if self.gcn_impl not in ("pyg", "dense"):
            raise ValueError(f"ModelConfig: gcn_impl={self.gcn_impl!r}, expected 'pyg' or 'dense'")
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
    saf_mode: str = "soft"  # "soft" (similarity-smoothed focal) or "penalty"
    similarity: str = "vad"  # S: "prior", "vad", "prototype" or "identity"
    gamma: float = 2.0  # focal exponent
    saf_lambda: float = 1.0  # weight of the similar-class penalty ("penalty" mode)
    alpha: str = "inverse"  # SAF class weights: "inverse" (normalised 1/freq), "uniform", "reference"
    vad_sigma: float = 0.5  # bandwidth of S = exp(-||vad_i - vad_j||^2 / sigma^2)
    use_distillation: bool = True  # ablation: False drops the KL term
    temperature: float = 1.0  # T of the softened distributions
    detach_teacher: bool = False  # True stops KL gradients from reaching the teacher

    def __post_init__(self) -> None:
        check_field_types(self)
        checks = {
            "class_weights": ("inverse", "none"),
            "saf_mode": ("soft", "penalty"),
            "similarity": ("prior", "vad", "prototype", "identity"),
            "alpha": ("inverse", "uniform", "reference"),
        }
        for name, allowed in checks.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"LossConfig: {name}={getattr(self, name)!r}, expected one of {allowed}")
        if self.temperature <= 0:
            raise ValueError(f"LossConfig: temperature={self.temperature} must be > 0")
        if self.gamma < 0:
            raise ValueError(f"LossConfig: gamma={self.gamma} must be >= 0")


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
    amp: bool = True  # mixed precision where the device is CUDA
    grad_clip: float | None = None  # max gradient norm; None = no clipping
    progress: bool = True  # a progress bar per epoch

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"TrainConfig: optimizer={self.optimizer!r}, expected 'adam' or 'adamw'")
        if self.batch_size < 1 or self.epochs < 1:
            raise ValueError("TrainConfig: batch_size and epochs must be >= 1")


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
        parts = {}
        for name, kind in (("model", ModelConfig), ("loss", LossConfig), ("train", TrainConfig)):
            sub = dict(d.get(name, {}))
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
        """Apply ``section.field=value`` strings; values are parsed as JSON where they can be."""
        changes: dict[str, dict[str, Any]] = {}
        for a in assignments:
            if "=" not in a or "." not in a.split("=", 1)[0]:
                raise ValueError(f"override {a!r}: expected section.field=value, e.g. model.hidden=64")
            key, raw = a.split("=", 1)
            section, name = key.split(".", 1)
            changes.setdefault(section, {})[name] = parse_value(raw)
        return self.replace(**changes)


def parse_value(raw: str) -> Any:
    """``"64"`` -> 64, ``"false"`` -> False, ``"null"`` -> None, ``"tav"`` -> ``"tav"``."""
    lowered = raw.strip()
    if lowered.lower() in ("true", "false"):
        return lowered.lower() == "true"
    if lowered.lower() in ("none", "null"):
        return None
    try:
        return json.loads(lowered)
    except json.JSONDecodeError:
        return raw


def preset(name: str) -> Config:
    """The named preset: ``paper``, ``small`` or ``tiny``."""
    if name == "paper":
        return Config()
    if name == "small":
        # Same architecture, narrower streams and a faster learning rate so that a CPU run of a
        # few minutes converges; dropout lowered because the model is 60x smaller.
        return Config(
            model=ModelConfig(hidden=128, heads=4, dropout=0.3),
            train=TrainConfig(lr=1e-3, epochs=30, patience=10),
        )
    if name == "tiny":
        return Config(
            model=ModelConfig(hidden=16, heads=2, dropout=0.1, gcn_layers=2),
            train=TrainConfig(lr=3e-3, epochs=3, batch_size=8, progress=False),
        )
    raise ValueError(f"unknown preset {name!r}: expected paper, small or tiny")


PRESETS = ("paper", "small", "tiny")
