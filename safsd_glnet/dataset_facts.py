"""Facts about the data sets and the reference code, in one place.

Everything here is a constant that comes from outside the kit: the class orders of IEMOCAP
and MELD, the modality names, which emotions are known to be confused, the reference code's
hand-set similarity prior and focal weights, the NRC VAD lexicon values of SPEC.md, and the
numbering of MELD dialogues in the standard feature pickles. Modules import them from here;
none of them is defined a second time.
"""
from __future__ import annotations

# --------------------------------------------------------------------------- classes and modalities

# The label index is the position in these tuples (the order of the standard SDT / M3Net files).
IEMOCAP_CLASSES = ("happy", "sad", "neutral", "angry", "excited", "frustrated")
MELD_CLASSES = ("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger")
CLASS_ORDERS = {"iemocap": IEMOCAP_CLASSES, "meld": MELD_CLASSES}

IEMOCAP_SPEAKERS = ("M", "F")  # the standard IEMOCAP file's speaker codes, in index order

MODALITIES = ("t", "a", "v")  # canonical order everywhere: configs, corpora, model streams
MODALITY_NAMES = {"t": "text", "a": "audio", "v": "visual"}

# --------------------------------------------------------------------------- similar emotions

# Emotions that ERC models confuse most and that the synthetic corpus builds to be hard to tell
# apart (its class means have cosine 0.6 for these pairs).
SIMILAR_EMOTIONS = {
    "iemocap": (("happy", "excited"), ("angry", "frustrated"), ("sad", "frustrated")),
    "meld": (("joy", "surprise"), ("anger", "disgust"), ("fear", "sadness")),
}
# The commonest confusion with the neutral class, tracked beside the pairs above by the metrics.
NEUTRAL_CONFUSION = {"iemocap": ("neutral", "frustrated"), "meld": ("neutral", "surprise")}
# What the metrics and plots track: the similar emotions, then the neutral confusion.
TRACKED_PAIRS = {corpus: pairs + (NEUTRAL_CONFUSION[corpus],) for corpus, pairs in SIMILAR_EMOTIONS.items()}

# --------------------------------------------------------------------------- the reference code's constants

# The reference code's hand-set IEMOCAP similarity, rows/columns in IEMOCAP_CLASSES order.
# It is not symmetric (e.g. S[happy, neutral] = 0.4 but S[neutral, happy] = 0.2); it is kept
# exactly as published because row y_i is what SAF reads for a sample of class y_i.
PRIOR_IEMOCAP = (
    (1.0, 0.3, 0.4, 0.2, 0.6, 0.3),
    (0.3, 1.0, 0.4, 0.7, 0.4, 0.6),
    (0.2, 0.5, 1.0, 0.4, 0.5, 0.2),
    (0.2, 0.7, 0.4, 1.0, 0.3, 0.5),
    (0.6, 0.4, 0.5, 0.3, 1.0, 0.4),
    (0.3, 0.8, 0.3, 0.5, 0.4, 1.0),
)

# The reference's hard-coded SAF alpha for IEMOCAP, in IEMOCAP_CLASSES order (sums to 0.9997,
# kept as published).
REFERENCE_ALPHA_IEMOCAP = (0.1807, 0.1707, 0.1585, 0.1667, 0.1725, 0.1506)

# NRC VAD lexicon entries (valence, arousal, dominance) in [0, 1], as listed in SPEC.md.
NRC_VAD: dict[str, tuple[float, float, float]] = {
    "happy": (1.000, 0.735, 0.772),
    "sad": (0.225, 0.333, 0.149),
    "neutral": (0.469, 0.184, 0.357),
    "angry": (0.122, 0.830, 0.604),
    "excited": (0.908, 0.931, 0.709),
    "frustrated": (0.080, 0.651, 0.255),
    "surprise": (0.875, 0.875, 0.562),
    "fear": (0.073, 0.840, 0.293),
    "sadness": (0.052, 0.288, 0.164),
    "joy": (0.980, 0.824, 0.794),
    "disgust": (0.052, 0.775, 0.317),
    "anger": (0.167, 0.865, 0.657),
    "joyful": (0.990, 0.740, 0.667),
    "mad": (0.219, 0.873, 0.277),
    "peaceful": (0.867, 0.108, 0.569),
    "powerful": (0.865, 0.830, 0.991),
    "scared": (0.146, 0.828, 0.185),
}

# --------------------------------------------------------------------------- MELD in the standard pickles

# MELD's dialogue numbering in the standard pickles (DialogueRNN / COSMIC / SDT / M3Net
# meld_multimodal_features.pkl): train dialogues keep their Dialogue_ID (0..1038, 60 absent),
# dev dialogue k is 1039 + k (1039..1152) and test dialogue k is 1153 + k (1153..1432).
MELD_PICKLE_OFFSETS = {"train": 0, "valid": 1039, "test": 1153}
MELD_DEV_IDS = tuple(str(i) for i in range(MELD_PICKLE_OFFSETS["valid"], MELD_PICKLE_OFFSETS["test"]))

# --------------------------------------------------------------------------- IEMOCAP's standard ERC split

# The 12 validation dialogues of the IEMOCAP split that DialogueRNN, COSMIC, SDT and M3Net share
# (their training set is the other 108 train dialogues plus these; test is Session 5): a table
# whose valid split is exactly these records the validation kind "cosmic-12".
COSMIC_IEMOCAP_VALID_IDS = (
    "Ses01M_impro01", "Ses01M_script03_1", "Ses02F_impro02", "Ses02F_impro07", "Ses02M_script01_2",
    "Ses03F_impro01", "Ses03M_impro02", "Ses03M_impro08a", "Ses03M_script02_2", "Ses03M_script03_2",
    "Ses04F_impro07", "Ses04F_script02_1",
)
