"""Weighted voice blends: ``af_bella(2)+af_sky(1)`` (the syntax Kokoro-FastAPI offers).

A blend names voices of one model joined by ``+``, each with an optional positive weight in
parentheses (1 when omitted). The weights are normalised to sum to 1: ``af_bella(2)+af_sky(1)`` is
two thirds of af_bella's voice pack and one third of af_sky's. A name given twice adds its weights.
Models whose catalog entry has ``voice_blending`` take a blend wherever they take a voice name; the
API checks every name against the entry's speakers (:func:`check_voice`), the worker mixes the packs.

Plain data and pure functions (no torch): shared by the API and the workers. Hand-written: the
syntax is Kokoro-FastAPI's own (an application, not a library), and no package parses it.
"""

from __future__ import annotations

import math
import re

from gen_server.contract.catalog import ModelEntry
from gen_server.errors import InvalidInput

MAX_VOICES = 8
"""Most voices one blend may name."""
MAX_WEIGHT = 1000.0
_PART = re.compile(r"^\s*(?P<name>[A-Za-z0-9_.\-]+)\s*(?:\(\s*(?P<weight>[0-9]*\.?[0-9]+)\s*\))?\s*$")


def is_blend(voice: str) -> bool:
    """Whether ``voice`` is written as a blend (has ``+`` or a weight) rather than one plain name."""
    return "+" in voice or "(" in voice


def parse_voice_mix(voice: str) -> tuple[tuple[str, float], ...]:
    """The voices of ``voice`` with their normalised weights, in the order first named.

    Args:
        voice: ``name``, or ``name(weight)+name(weight)+...`` (weights positive, 1 when omitted).

    Returns:
        ``((name, weight), ...)``, weights summing to 1.

    Raises:
        InvalidInput: (field ``voice``) malformed, an empty part, a weight that is not a positive
            number up to :data:`MAX_WEIGHT`, or more than :data:`MAX_VOICES` voices.
    """
    parts = voice.split("+")
    if len(parts) > MAX_VOICES:
        raise InvalidInput(f"a voice blend may name at most {MAX_VOICES} voices", field="voice")
    weights: dict[str, float] = {}
    for part in parts:
        found = _PART.match(part)
        if found is None:
            raise InvalidInput(
                f"voice '{voice}' is not a voice name or a blend like af_bella(2)+af_sky(1)", field="voice"
            )
        weight = float(found["weight"]) if found["weight"] is not None else 1.0
        if not (0.0 < weight <= MAX_WEIGHT) or not math.isfinite(weight):
            raise InvalidInput(
                f"voice weight {found['weight']} of '{found['name']}' must be above 0 and at most "
                f"{MAX_WEIGHT:g}",
                field="voice",
            )
        weights[found["name"]] = weights.get(found["name"], 0.0) + weight
    total = sum(weights.values())
    return tuple((name, weight / total) for name, weight in weights.items())


def check_voice(voice: str, entry: ModelEntry) -> None:
    """Refuse ``voice`` unless ``entry`` speaks it: a speaker name, or a blend of them when the model
    blends voices.

    Raises:
        InvalidInput: (field ``voice``) naming the unknown voice and the model's speakers.
    """
    known = ", ".join(entry.speakers) or "none (single-speaker model)"
    if voice in entry.speakers:
        return
    if entry.voice_blending and is_blend(voice):
        for name, _ in parse_voice_mix(voice):
            if name not in entry.speakers:
                raise InvalidInput(
                    f"unknown voice '{name}' in '{voice}' for '{entry.id}'; speakers: {known}", field="voice"
                )
        return
    hint = " (or a blend such as a(2)+b(1))" if entry.voice_blending else ""
    raise InvalidInput(f"unknown voice '{voice}' for '{entry.id}'; speakers: {known}{hint}", field="voice")
