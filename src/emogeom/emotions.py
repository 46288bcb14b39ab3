"""The 21 emotion conditions (20 emotions + neutral) and human valence/arousal norms.

Norms: NRC Valence, Arousal, and Dominance Lexicon v1, each value copied from that word's line.
Cite: Saif M. Mohammad. 2018. Obtaining Reliable Human Ratings of Valence, Arousal, and Dominance
for 20,000 English Words. In Proceedings of ACL 2018.
Terms of the lexicon: free for non-commercial research and educational purposes, with citation.
"""

from __future__ import annotations

import numpy as np

EMOTIONS: tuple[str, ...] = (
    "happy", "sad", "calm", "desperate", "afraid", "angry", "proud", "guilty", "nervous",
    "hopeful", "brooding", "gloomy", "reflective", "enthusiastic", "hostile", "loving",
    "exasperated", "blissful", "anxious", "grateful", "neutral",
)
NEUTRAL = "neutral"

NORMS_CITATION = (
    "Valence/arousal: NRC VAD Lexicon v1 (Mohammad, ACL 2018); "
    "free for non-commercial research and education, with citation."
)

# (valence, arousal, dominance), scale 0-1, NRC VAD Lexicon v1.
VAD: dict[str, tuple[float, float, float]] = {
    "happy": (1.000, 0.735, 0.772),
    "sad": (0.225, 0.333, 0.149),
    "calm": (0.875, 0.100, 0.282),
    "desperate": (0.083, 0.842, 0.337),
    "afraid": (0.010, 0.775, 0.245),
    "angry": (0.122, 0.830, 0.604),
    "proud": (0.906, 0.700, 0.873),
    "guilty": (0.135, 0.770, 0.352),
    "nervous": (0.235, 0.820, 0.213),
    "hopeful": (0.947, 0.357, 0.627),
    "brooding": (0.327, 0.367, 0.333),
    "gloomy": (0.107, 0.410, 0.287),
    "reflective": (0.656, 0.292, 0.735),
    "enthusiastic": (0.885, 0.868, 0.848),
    "hostile": (0.188, 0.877, 0.474),
    "loving": (0.948, 0.612, 0.636),
    "exasperated": (0.229, 0.816, 0.377),
    "blissful": (0.885, 0.639, 0.676),
    "anxious": (0.281, 0.875, 0.434),
    "grateful": (0.958, 0.353, 0.560),
    "neutral": (0.469, 0.184, 0.357),
}


def valence(emotion: str) -> float:
    """Human valence rating (0-1) of an emotion word."""
    return VAD[emotion][0]


def arousal(emotion: str) -> float:
    """Human arousal rating (0-1) of an emotion word."""
    return VAD[emotion][1]


def by_valence(emotions: tuple[str, ...] | list[str] = EMOTIONS) -> list[str]:
    """Emotions ordered from most positive to most negative valence (for figures)."""
    return sorted(emotions, key=lambda e: -valence(e))


def valence_groups(
    emotions: tuple[str, ...] | list[str] = EMOTIONS, low: float = 0.4, high: float = 0.6
) -> tuple[list[str], list[str]]:
    """Split emotions into (positive, negative) by human valence; the middle band is left out."""
    pos = [e for e in emotions if valence(e) > high]
    neg = [e for e in emotions if valence(e) < low]
    return pos, neg


def valence_arousal(emotions: tuple[str, ...] | list[str] = EMOTIONS) -> np.ndarray:
    """[len(emotions), 2] array of human (valence, arousal) ratings."""
    return np.array([VAD[e][:2] for e in emotions], dtype=np.float64)
