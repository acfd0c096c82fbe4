"""Synthetic conversations shaped like IEMOCAP and MELD: the kit's built-in data.

The standard feature files cannot be shipped or downloaded by the kit, so every notebook,
test and example runs on this generator unless given a real file. It is deterministic in its
seed (a ``numpy.random.SeedSequence`` spawns one stream for labels and speakers and one per
modality, so changing one modality's size leaves everything else unchanged) and reproduces
the structure a MERC model exploits:

* corpus shape: the real class names and order, dialogue counts and split sizes, dialogue
  lengths (IEMOCAP: mean ~50, 8-110; MELD: mean ~9.8, 1-24) and class imbalance;
* speakers: IEMOCAP dyadic (M/F) turns that mostly alternate; MELD 1-9 speakers per dialogue,
  a few dominant, numbered by order of appearance as in the standard file;
* emotional inertia: a speaker's next emotion repeats their previous one with high
  probability; otherwise it copies another speaker's latest emotion with a small probability
  (contagion), else comes from the dialogue's prior: the class prior tilted towards a
  per-dialogue "mood" class (which leaves the corpus-level class shares unchanged);
* similar emotions: class means are unit vectors in a latent space with cosine 0.6 for the
  hard pairs (IEMOCAP happy/excited, angry/frustrated, sad/frustrated; MELD joy/surprise,
  anger/disgust, fear/sadness), 0.25 between neutral and the rest, 0 otherwise;
* modalities: each utterance has a latent point in a 32-dim space (class mean + jitter shared
  by all modalities + a per-dialogue offset). Each modality adds its own latent noise (least
  for text, then audio, then visual: that sets how informative it is), embeds the point in
  its feature space with a random orthonormal map, and adds a little isotropic noise and a
  per-(dialogue, speaker) nuisance vector (speaker identity, as real audio and faces carry).
  The class information therefore lies in a low-dimensional subspace, as with real
  pretrained features, and the difficulty hardly depends on the feature size;
* features are float32, roughly unit variance per dimension, at the standard sizes by
  default (IEMOCAP 1024/1582/342, MELD 1024/300/342). No sentences (``texts`` is None).

Calibration, seed 0, test accuracy (majority class: IEMOCAP 0.27, MELD 0.47):

* sizes 64/48/32, per-utterance logistic regression on standardised features: IEMOCAP text
  0.58, audio 0.44, visual 0.36; MELD 0.64 / 0.54 / 0.49;
* standard sizes, a 128-unit MLP trained with Adam and chosen on the valid split: IEMOCAP
  0.59 / 0.41 / 0.33; MELD 0.61 / 0.54 / 0.49. An unregularised logistic regression at
  1582 dimensions instead fits the training set perfectly and generalises poorly (it uses
  the noise directions), so probes at standard sizes should regularise or reduce dimension;
* the speaker's previous label, added to the IEMOCAP text regression, lifts it from 0.58 to
  0.78: the context carries information (tests/data/test_synthetic_data.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..dataset_facts import IEMOCAP_CLASSES, MELD_CLASSES, MODALITIES, SIMILAR_EMOTIONS
from . import validation
from .corpus import Corpus, Dialogue

__all__ = ["make_synthetic", "PROFILES", "SyntheticProfile", "class_gram_matrix"]


@dataclass(frozen=True)
class SyntheticProfile:
    classes: tuple[str, ...]
    class_counts: tuple[int, ...]  # utterances per class in the real corpus: the class prior
    num_dialogues: int
    split_sizes: tuple[int, int, int]  # train / valid / test dialogues at full size
    length_shape: float  # gamma shape of dialogue lengths
    length_mean: float  # mean of the gamma before the range cut (the cut lowers it a little)
    length_range: tuple[int, int]  # lengths outside are redrawn
    feature_sizes: dict
    similar_pairs: tuple[tuple[str, str], ...]
    repeat: float  # P(speaker repeats their previous emotion)
    contagion: float  # P(fresh emotion copies another speaker's latest one)
    mood: float  # weight of the dialogue's mood class in its fresh-emotion prior
    noise: dict  # latent noise per modality: larger = less informative
    max_speakers: int  # 2 = dyadic (IEMOCAP)
    speaker_names: tuple[str, ...]


PROFILES: dict[str, SyntheticProfile] = {
    "iemocap": SyntheticProfile(
        classes=IEMOCAP_CLASSES,
        class_counts=(648, 1084, 1708, 1103, 1041, 1849),
        num_dialogues=151, split_sizes=(108, 12, 31),
        length_shape=5.0, length_mean=50.0, length_range=(8, 110),
        feature_sizes={"t": 1024, "a": 1582, "v": 342},
        similar_pairs=SIMILAR_EMOTIONS["iemocap"],
        repeat=0.65, contagion=0.15, mood=0.3,
        noise={"t": 0.55, "a": 0.85, "v": 1.45},
        max_speakers=2, speaker_names=("M", "F"),
    ),
    "meld": SyntheticProfile(
        classes=MELD_CLASSES,
        class_counts=(6436, 1636, 358, 1002, 2308, 361, 1607),
        num_dialogues=1432, split_sizes=(1038, 114, 280),
        length_shape=2.5, length_mean=10.4, length_range=(1, 24),
        feature_sizes={"t": 1024, "a": 300, "v": 342},
        similar_pairs=SIMILAR_EMOTIONS["meld"],
        repeat=0.5, contagion=0.15, mood=0.2,
        noise={"t": 0.6, "a": 0.9, "v": 1.4},
        max_speakers=9, speaker_names=tuple(f"speaker{i}" for i in range(9)),
    ),
}

LATENT_DIM = 32  # room for the C class directions plus jitter in other directions
SIMILAR_COSINE = 0.6
NEUTRAL_COSINE = 0.25
JITTER = 0.15  # per-utterance latent jitter (std per latent dimension), shared by the modalities
DIALOGUE_OFFSET = 0.15  # per-dialogue latent offset (std per latent dimension)
ISOTROPIC = 0.05  # noise in all d feature dimensions, in latent units
NUISANCE = 1.0  # per-(dialogue, speaker) feature offset, relative to ISOTROPIC
SPEAKER_COUNT_PRIOR = (0.08, 0.34, 0.26, 0.15, 0.08, 0.04, 0.03, 0.01, 0.01)  # MELD, 1..9


def class_gram_matrix(profile: SyntheticProfile) -> np.ndarray:
    """(C, C) cosines between the latent class means (positive definite by construction)."""
    c = len(profile.classes)
    g = np.eye(c)
    index = {name: i for i, name in enumerate(profile.classes)}
    if "neutral" in index:
        n = index["neutral"]
        g[n, :] = g[:, n] = NEUTRAL_COSINE
        g[n, n] = 1.0
    for a, b in profile.similar_pairs:
        g[index[a], index[b]] = g[index[b], index[a]] = SIMILAR_COSINE
    return g


def _split_counts(total: int, full: tuple[int, int, int]) -> tuple[int, int, int]:
    """Split ``total`` dialogues in the proportions of ``full``, at least one per split."""
    if total < 3:
        raise ValueError(f"make_synthetic: {total} dialogues, need at least 3 (one per split)")
    whole = sum(full)
    valid = max(1, int(round(total * full[1] / whole)))
    test = max(1, int(round(total * full[2] / whole)))
    train = total - valid - test
    while train < 1:  # tiny corpora: take back from the larger of valid / test
        if valid >= test and valid > 1:
            valid -= 1
        else:
            test -= 1
        train = total - valid - test
    return train, valid, test


def _lengths(rng: np.random.Generator, profile: SyntheticProfile, count: int) -> np.ndarray:
    """(count,) dialogue lengths: gamma-distributed, redrawn until inside the range."""
    lo, hi = profile.length_range
    scale = profile.length_mean / profile.length_shape
    out = np.empty(0, dtype=np.int64)
    while out.size < count:  # rejection keeps the shape instead of piling mass at the bounds
        draw = np.rint(rng.gamma(profile.length_shape, scale, size=2 * count + 16)).astype(np.int64)
        out = np.concatenate([out, draw[(draw >= lo) & (draw <= hi)]])
    return out[:count]


def _speaker_turns(rng: np.random.Generator, profile: SyntheticProfile, n: int) -> np.ndarray:
    """(n,) speaker indices of one dialogue, numbered by first appearance."""
    u = rng.random(n)
    if profile.max_speakers == 2:
        # Dyadic: mostly alternate, sometimes a speaker keeps the floor (a run).
        switch = u < 0.8
        switch[0] = False
        first = int(rng.integers(2))
        return ((first + np.cumsum(switch)) % 2).astype(np.int64)
    num = int(rng.choice(np.arange(1, 10), p=SPEAKER_COUNT_PRIOR))
    num = max(1, min(num, n))
    # A few dominant speakers: Zipf-like popularity, in a random order per dialogue.
    weights = 1.0 / np.arange(1, num + 1) ** 1.3
    weights = weights[rng.permutation(num)]
    picks = rng.random(n)
    raw = np.empty(n, dtype=np.int64)
    raw[0] = int(np.searchsorted(np.cumsum(weights) / weights.sum(), picks[0]))
    for t in range(1, n):
        if num == 1 or u[t] < 0.25:  # same speaker goes on
            raw[t] = raw[t - 1]
            continue
        w = weights.copy()
        w[raw[t - 1]] = 0.0  # otherwise someone else takes the turn
        raw[t] = min(int(np.searchsorted(np.cumsum(w) / w.sum(), picks[t])), num - 1)
    # Renumber by order of appearance, as the standard MELD file does.
    order: dict[int, int] = {}
    return np.array([order.setdefault(int(s), len(order)) for s in raw], dtype=np.int64)


def _emotions(rng: np.random.Generator, profile: SyntheticProfile, prior: np.ndarray,
              speakers: np.ndarray) -> np.ndarray:
    """(n,) labels of one dialogue from the inertia / contagion / mood chain."""
    n = len(speakers)
    c = len(prior)
    mood = int(np.searchsorted(np.cumsum(prior), rng.random()))
    fresh_p = (1.0 - profile.mood) * prior
    fresh_p[min(mood, c - 1)] += profile.mood
    # All random numbers are drawn up front so the Python loop stays cheap.
    fresh = np.minimum(np.searchsorted(np.cumsum(fresh_p), rng.random(n)), c - 1)
    u_repeat = rng.random(n)
    u_copy = rng.random(n)
    last_of: dict[int, int] = {}
    labels = np.empty(n, dtype=np.int64)
    last_other = -1  # latest emotion by a speaker other than the current one
    prev_speaker = -1
    prev_label = -1
    for t in range(n):
        s = int(speakers[t])
        if prev_speaker != s and prev_speaker >= 0:
            last_other = prev_label
        if s in last_of and u_repeat[t] < profile.repeat:
            y = last_of[s]
        elif last_other >= 0 and u_copy[t] < profile.contagion:
            y = last_other
        else:
            y = int(fresh[t])
        labels[t] = y
        last_of[s] = y
        prev_speaker, prev_label = s, y
    return labels


def make_synthetic(profile: str = "iemocap", seed: int = 0,
                   feature_sizes: dict[str, int] | None = None,
                   num_dialogues: int | None = None, scale: float = 1.0) -> Corpus:
    """A validated synthetic :class:`Corpus` shaped like IEMOCAP or MELD.

    Args:
        profile: ``"iemocap"`` (6 classes, 151 dialogues split 108/12/31, speakers M/F) or
            ``"meld"`` (7 classes, 1432 dialogues split 1038/114/280, speakers speaker0-8).
        seed: everything is drawn from ``numpy.random.default_rng(seed)``: the same seed
            gives identical arrays.
        feature_sizes: e.g. ``{"t": 64, "a": 48, "v": 32}`` for fast experiments; modalities
            left out of the dict are dropped; default the standard sizes.
        num_dialogues: total dialogues (default the real corpus' count); split proportions are
            kept with at least one dialogue per split.
        scale: multiplies the dialogue count (e.g. 0.1 for a tenth of the corpus).

    Returns:
        Corpus named ``"synthetic-<profile>"`` with source ``"synthetic:<profile>:seed<k>"``,
        dialogue ids ``"<profile>_0000"`` ..., splits train/valid/test in id order, features
        (n, d_m) float32, no texts; validation record ``{"kind": "synthetic", "seed": seed}``.
    """
    if profile not in PROFILES:
        raise ValueError(f"make_synthetic: unknown profile {profile!r}, expected one of {sorted(PROFILES)}")
    if scale <= 0:
        raise ValueError(f"make_synthetic: scale={scale} must be > 0")
    prof = PROFILES[profile]
    sizes = dict(prof.feature_sizes) if feature_sizes is None else dict(feature_sizes)
    for m, d in sizes.items():
        if m not in MODALITIES:
            raise ValueError(f"make_synthetic: unknown modality {m!r} in feature_sizes (expected t, a, v)")
        if int(d) < 1:
            raise ValueError(f"make_synthetic: feature size {m}={d} must be >= 1")
    if not sizes:
        raise ValueError("make_synthetic: feature_sizes is empty")
    sizes = {m: int(sizes[m]) for m in MODALITIES if m in sizes}
    total = prof.num_dialogues if num_dialogues is None else int(num_dialogues)
    total = int(round(total * scale))
    n_train, n_valid, n_test = _split_counts(total, prof.split_sizes)

    # Independent streams for the structure and each modality: changing or dropping one
    # modality's size leaves labels, speakers and the other modalities' features unchanged.
    streams = np.random.SeedSequence(seed).spawn(1 + len(MODALITIES))
    rng = np.random.default_rng(streams[0])
    prior = np.asarray(prof.class_counts, dtype=np.float64)
    prior /= prior.sum()
    c = len(prior)

    lengths = _lengths(rng, prof, total)
    speakers = [_speaker_turns(rng, prof, int(n)) for n in lengths]
    labels = [_emotions(rng, prof, prior, s) for s in speakers]

    # Latent class means with the designed cosines: rows of the Cholesky factor have exactly
    # the Gram matrix's inner products; a random rotation places them in the latent space.
    gram = class_gram_matrix(prof)
    chol = np.linalg.cholesky(gram)  # (C, C)
    rotation, _ = np.linalg.qr(rng.standard_normal((LATENT_DIM, LATENT_DIM)))
    means = chol @ rotation[:c]  # (C, k), unit rows

    y = np.concatenate(labels)  # (N,)
    dialogue_of = np.repeat(np.arange(total), lengths)  # (N,)
    n_total = len(y)
    offsets = DIALOGUE_OFFSET * rng.standard_normal((total, LATENT_DIM))
    latent = (means[y] + JITTER * rng.standard_normal((n_total, LATENT_DIM))
              + offsets[dialogue_of])  # (N, k)

    # (dialogue, speaker) pairs for the nuisance vectors: one row per pair.
    spk = np.concatenate(speakers)
    pair_index = dialogue_of * prof.max_speakers + spk
    _, pair_of = np.unique(pair_index, return_inverse=True)
    num_pairs = int(pair_of.max()) + 1

    features: dict[str, np.ndarray] = {}
    for m, stream in zip(MODALITIES, streams[1:]):
        if m not in sizes:
            continue
        mrng = np.random.default_rng(stream)
        d = sizes[m]
        # (d, k) orthonormal columns; below k dimensions some latent directions are lost.
        embed, _ = np.linalg.qr(mrng.standard_normal((d, LATENT_DIM)))
        if d < LATENT_DIM:
            embed = np.pad(embed, ((0, 0), (0, LATENT_DIM - embed.shape[1])))
        # The modality's own view of the utterance: its latent noise sets how informative it
        # is. Keeping the class overlap in the k latent directions (and only a little noise
        # in the other d - k) makes the difficulty nearly independent of d, as with real
        # features, whose variance is concentrated in few directions.
        view = latent + prof.noise[m] * mrng.standard_normal((n_total, LATENT_DIM))  # (N, k)
        nuisance = mrng.standard_normal((num_pairs, d), dtype=np.float32)
        x = np.empty((n_total, d), dtype=np.float32)
        mrng.standard_normal(dtype=np.float32, out=x)  # isotropic noise, drawn in place
        x *= np.float32(ISOTROPIC)
        x += view.astype(np.float32) @ embed.T.astype(np.float32)  # (N, k) @ (k, d)
        x += np.float32(ISOTROPIC * NUISANCE) * nuisance[pair_of]
        # Roughly unit variance per dimension, a comfortable input scale for a network.
        spread = ISOTROPIC ** 2 * (1.0 + NUISANCE ** 2) + float(np.mean(view.var(axis=0))) * LATENT_DIM / d
        x *= np.float32(1.0 / np.sqrt(spread))
        features[m] = x

    bounds = np.cumsum(lengths)[:-1]
    ids = [f"{profile}_{i:04d}" for i in range(total)]
    per_modality = {m: np.split(x, bounds) for m, x in features.items()}
    dialogues = {
        did: Dialogue(did, speakers[i], labels[i], {m: per_modality[m][i] for m in features}, None)
        for i, did in enumerate(ids)
    }
    splits = {"train": ids[:n_train], "valid": ids[n_train:n_train + n_valid],
              "test": ids[n_train + n_valid:]}
    corpus = Corpus(f"synthetic-{profile}", list(prof.classes), list(prof.speaker_names), sizes,
                    dialogues, splits, f"synthetic:{profile}:seed{seed}",
                    validation=validation.record("synthetic", seed=int(seed)))
    return corpus.validate()
