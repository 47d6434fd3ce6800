"""Speaker verification of the consent check on real speech: equal-error rate, false accepts and false
rejects at :data:`workers.consent.SPEAKER_THRESHOLD`.

Embeddings come from :func:`workers.consent.speaker_embedding` (Resemblyzer's trained GE2E encoder, the
production path: 16 kHz, VAD-trimmed), scores are cosine similarities of one clip against one other
(what the consent check compares: the consent clip against each reference).

Voices (real clips of 3-10 s, as a consent clip or a reference is; espeak-ng's slow sentences and the
x0.89 speed-shifted copies run to ~12 s):

* **real speakers**: Asterisk's recorded prompts (:mod:`tests.real_audio`, Debian packages):
  en_US_f_Allison, fr_CA_f_June, it_IT_m_Carlo, ru_RU_f_IvrvoiceRU; each clip is whole prompts
  concatenated (each prompt in one clip only), so a genuine pair is two different recordings;
  es_MX_f_Allison is Allison again in Spanish (a cross-language genuine pair, reported on its own);
* **the bundled Piper voice** (``en_US-joe-medium``), one clip per sentence of :data:`TEXTS`;
* **espeak-ng voices** (the library and data bundled by ``espeakng_loader``, driven through ctypes):
  :data:`ESPEAK_VOICES`;
* **shifted real speakers** (the impersonation attack: someone's recordings, altered): pitch shifted
  by +-3 semitones with formants kept (pedalboard's Rubber Band ``PitchShift``), and pitch with
  formants moved together (resampled playback at x1.12 / x0.89).

Genuine pairs: two clips of the same real speaker, or of the Piper voice. Impostor pairs: clips of two
different real speakers; Piper or espeak-ng against a real speaker; espeak-ng voices and Piper against
each other; a shifted clip of a speaker against the original clips (not the same prompts) of that
speaker.

The Asterisk prompts are 8 kHz telephone-band recordings: nothing above 4 kHz. The encoder was trained
on wide-band (16 kHz) speech, so every clip here (the synthetic ones too, resampled to 8 kHz so that
the channel does not give them away) is judged on half the band it knows: what is measured is the
check on telephone-quality audio, which should be its harder case (fewer cues per speaker).

Run: ``OMP_NUM_THREADS=1 uv run --frozen python -m benchmarks.speaker_verification`` (about a minute of
encoding on one core; writes ``benchmarks/results/speaker_verification.{json,md}``).
"""

from __future__ import annotations

import argparse
import ctypes
import itertools
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.common import machine_info

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "speaker_verification.json"
RATE = 8000
"""Every clip is compared at the real recordings' telephone rate."""
REAL = ("en_US_f_Allison", "fr_CA_f_June", "it_IT_m_Carlo", "ru_RU_f_IvrvoiceRU")
CROSS_LANGUAGE = "es_MX_f_Allison"
ESPEAK_VOICES = ("en-us", "en+f3", "en+m3", "en+f4")
TEXTS = (
    "The weather today is bright and warm, and the children are playing near the river.",
    "Please remember to bring your notebook and a bottle of water to the meeting tomorrow.",
    "I agree that this server may copy my voice. My code is four one seven nine two six.",
    "Our train leaves the station at seven, so we should have breakfast a little earlier.",
    "She painted the old wooden fence green and planted tomatoes along the garden wall.",
    "The library will be closed on Monday while the heating system is being repaired.",
    "He called his sister to ask whether she had found the keys to the summer house.",
    "A small boat drifted slowly across the lake as the sun went down behind the hills.",
    "If you have any questions about your order, please write to our support team.",
    "The museum opened a new exhibition of maps drawn by sailors three hundred years ago.",
    "We counted the birds in the park every morning and wrote the numbers in a book.",
    "My code is eight three five zero one two, and I agree to the use of my voice.",
)
SHIFTS = ("pitch+3", "pitch-3", "speed x1.12", "speed x0.89")


def _clip_groups(files: list[Path], rng: random.Random, count: int) -> list[list[Path]]:
    """Disjoint groups of prompts, each 3-10 s long in total (target drawn in 3-8 s)."""
    import soundfile as sf

    files = files[:]
    rng.shuffle(files)
    groups: list[list[Path]] = []
    group: list[Path] = []
    length, target = 0.0, rng.uniform(3, 8)
    for f in files:
        d = sf.info(str(f)).duration
        if d > 10 or length + d > 10:
            continue
        group.append(f)
        length += d
        if length >= target:
            groups.append(group)
            if len(groups) == count:
                break
            group, length, target = [], 0.0, rng.uniform(3, 8)
    return groups


def real_clips(speaker: str, count: int, seed: int) -> list[npt.NDArray[np.float32]]:
    from tests.real_audio import load, speech_files

    groups = _clip_groups(speech_files(speaker, min_seconds=1.0), random.Random(f"{seed}-{speaker}"), count)
    pause = np.zeros(RATE // 5, np.float32)
    return [np.concatenate([np.concatenate([load(f, RATE)[0], pause]) for f in g]) for g in groups]


def piper_clips(count: int) -> list[npt.NDArray[np.float32]]:
    import soxr
    from piper import PiperVoice

    from gen_server.contract.catalog import _bundled_voice_path

    path = _bundled_voice_path()
    if path is None:
        return []
    voice = PiperVoice.load(str(path))
    out = []
    for text in TEXTS[:count]:
        chunks = list(voice.synthesize(text))
        wave = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
        out.append(soxr.resample(wave, chunks[0].sample_rate, RATE).astype(np.float32))
    return out


def espeak_clips(voices: tuple[str, ...], count: int) -> dict[str, list[npt.NDArray[np.float32]]]:
    """espeak-ng speaking :data:`TEXTS` in each voice (``espeakng_loader``'s library; {} without it)."""
    try:
        import espeakng_loader
        import soxr
    except ImportError:
        return {}
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    rate = lib.espeak_Initialize(2, 0, espeakng_loader.get_data_path().encode(), 0)  # synchronous
    chunks: list[npt.NDArray[np.int16]] = []
    callback_type = ctypes.CFUNCTYPE(
        ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
    )

    @callback_type
    def collect(wav: Any, n: int, _events: Any) -> int:
        if n > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    lib.espeak_SetSynthCallback(collect)
    out: dict[str, list[npt.NDArray[np.float32]]] = {}
    for voice in voices:
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            continue
        clips = []
        for text in TEXTS[:count]:
            chunks.clear()
            data = text.encode()
            lib.espeak_Synth(ctypes.c_char_p(data), ctypes.c_size_t(len(data) + 1), 0, 0, 0, 0, None, None)
            lib.espeak_Synchronize()
            wave = np.concatenate(chunks).astype(np.float32) / 32768
            clips.append(soxr.resample(wave, rate, RATE).astype(np.float32))
        out[f"espeak {voice}"] = clips
    return out


def shifted(wave: npt.NDArray[np.float32], how: str) -> npt.NDArray[np.float32]:
    if how.startswith("pitch"):
        from pedalboard import Pedalboard, PitchShift

        board = Pedalboard([PitchShift(semitones=float(how[len("pitch") :]))])
        return np.asarray(board(wave[None], RATE)[0], np.float32)
    import soxr

    factor = float(how.split("x")[1])  # played faster: pitch and formants up together
    return soxr.resample(wave, RATE * factor, RATE).astype(np.float32)


def embed(wave: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    from gen_server.audio import Audio
    from workers.consent import speaker_embedding

    return speaker_embedding(Audio(samples=wave[None], sample_rate=RATE))


def pairs(
    emb: dict[str, npt.NDArray[np.float32]], voice_of: dict[str, str], kind_of: dict[str, str]
) -> Iterator[tuple[str, bool, float]]:
    """(category, genuine, cosine) for every pair of clips the design above compares."""
    names = sorted(emb)
    for a, b in itertools.combinations(names, 2):
        va, vb, ka, kb = voice_of[a], voice_of[b], kind_of[a], kind_of[b]
        score = float(emb[a] @ emb[b])
        kinds = {ka, kb}
        if kinds == {"real"}:
            yield ("real, same speaker" if va == vb else "real vs other real speaker"), va == vb, score
        elif kinds == {"piper"}:
            yield "piper vs piper", True, score
        elif kinds == {"real", "cross"}:
            if "en_US_f_Allison" in (va, vb):
                yield "Allison English vs Allison Spanish", True, score
            else:
                yield "real vs other real speaker", False, score
        elif "shifted" in kinds and "real" in kinds:
            base = va.split(" / ")[0] if ka == "shifted" else vb.split(" / ")[0]
            other = vb if ka == "shifted" else va
            same_prompts = a.split("#")[1] == b.split("#")[1]
            if base == other and not same_prompts:
                shift = (va if ka == "shifted" else vb).split(" / ")[1]
                yield f"shifted speaker ({shift}) vs original", False, score
        elif kinds <= {"piper", "espeak", "real", "cross"} and va != vb and kinds & {"piper", "espeak"}:
            if kinds == {"espeak"}:
                yield "espeak-ng voice vs another", False, score
            elif "real" in kinds or "cross" in kinds:
                yield "synthetic (piper/espeak-ng) vs real", False, score
            else:
                yield "piper vs espeak-ng", False, score


def rates(
    genuine: npt.NDArray[np.float64], impostor: npt.NDArray[np.float64], t: float
) -> tuple[float, float]:
    """(false-accept rate, false-reject rate) at threshold ``t`` (accept when score >= t)."""
    return float((impostor >= t).mean()), float((genuine < t).mean())


def eer(genuine: npt.NDArray[np.float64], impostor: npt.NDArray[np.float64]) -> tuple[float, float]:
    """(equal-error rate, the threshold where FAR and FRR cross), sweeping every observed score."""
    best = (2.0, 0.0, 0.0)
    for t in np.unique(np.concatenate([genuine, impostor])):
        far, frr = rates(genuine, impostor, float(t))
        if abs(far - frr) < best[0]:
            best = (abs(far - frr), (far + frr) / 2, float(t))
    return best[1], best[2]


def run(args: argparse.Namespace) -> dict[str, Any]:
    from workers.consent import SPEAKER_THRESHOLD

    t0 = time.perf_counter()
    clips: dict[str, npt.NDArray[np.float32]] = {}
    voice_of: dict[str, str] = {}
    kind_of: dict[str, str] = {}

    def add(name: str, wave: npt.NDArray[np.float32], voice: str, kind: str) -> None:
        clips[name], voice_of[name], kind_of[name] = wave, voice, kind

    for speaker in REAL:
        for i, wave in enumerate(real_clips(speaker, args.clips, args.seed)):
            add(f"{speaker}#{i}", wave, speaker, "real")
            for how in SHIFTS:
                add(f"{speaker} / {how}#{i}", shifted(wave, how), f"{speaker} / {how}", "shifted")
    for i, wave in enumerate(real_clips(CROSS_LANGUAGE, args.clips, args.seed)):
        add(f"{CROSS_LANGUAGE}#{i}", wave, CROSS_LANGUAGE, "cross")
    for i, wave in enumerate(piper_clips(args.clips)):
        add(f"piper#{i}", wave, "piper joe", "piper")
    for voice, waves in espeak_clips(ESPEAK_VOICES, args.espeak_clips).items():
        for i, wave in enumerate(waves):
            add(f"{voice}#{i}", wave, voice, "espeak")
    made_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    emb = {name: embed(wave) for name, wave in clips.items()}
    embed_s = time.perf_counter() - t1

    scored = list(pairs(emb, voice_of, kind_of))
    main = [(c, g, s) for c, g, s in scored if c != "Allison English vs Allison Spanish"]
    genuine = np.array([s for _, g, s in main if g])
    impostor = np.array([s for _, g, s in main if not g])
    rate, at = eer(genuine, impostor)

    categories: dict[str, Any] = {}
    for c in sorted({c for c, _, _ in scored}):
        s = np.array([x for cc, _, x in scored if cc == c])
        g = next(g for cc, g, _ in scored if cc == c)
        categories[c] = {
            "genuine": g,
            "pairs": int(s.size),
            "mean": round(float(s.mean()), 3),
            "min": round(float(s.min()), 3),
            "max": round(float(s.max()), 3),
            ("frr" if g else "far"): round(
                float((s < SPEAKER_THRESHOLD).mean() if g else (s >= SPEAKER_THRESHOLD).mean()), 4
            ),
        }
    far, frr = rates(genuine, impostor, SPEAKER_THRESHOLD)
    other_person = np.array([s for c, g, s in main if not g and "speed" not in c])
    # the operating point: the lowest threshold (in hundredths) accepting at most MAX_FAR of other people
    chosen = next(
        t
        for t in (round(0.5 + 0.01 * i, 2) for i in range(51))
        if float((other_person >= t).mean()) <= args.max_far
    )
    sweep = [
        {
            "threshold": t,
            "far": round(rates(genuine, impostor, t)[0], 4),
            "far_other_person": round(float((other_person >= t).mean()), 4),
            "frr": round(rates(genuine, impostor, t)[1], 4),
        }
        for t in (round(0.80 + 0.01 * i, 2) for i in range(16))
    ]
    durations = [w.size / RATE for n, w in clips.items()]
    return {
        "machine": machine_info(),
        "encoder": "resemblyzer 0.1.4 VoiceEncoder (GE2E, trained weights from the wheel), CPU",
        "clips": len(clips),
        "clip_seconds": {"min": round(min(durations), 2), "max": round(max(durations), 2)},
        "voices": sorted(set(voice_of.values())),
        "real_speakers": len(REAL),
        "genuine_pairs": int(genuine.size),
        "impostor_pairs": int(impostor.size),
        "eer": round(rate, 4),
        "eer_threshold": round(at, 3),
        "threshold": SPEAKER_THRESHOLD,
        "far_at_threshold": round(far, 4),
        "frr_at_threshold": round(frr, 4),
        "max_far": args.max_far,
        "suggested_threshold": chosen,
        "categories": categories,
        "sweep": sweep,
        "scores": {c: [round(x, 4) for cc, _, x in scored if cc == c] for c in categories},
        "seconds": {
            "make_clips": round(made_s, 1),
            "embed": round(embed_s, 1),
            "per_clip": round(embed_s / len(clips), 3),
        },
    }


def markdown(r: dict[str, Any]) -> str:
    lines = [
        "# Speaker verification (consent check)",
        "",
        f"Encoder: {r['encoder']}. Machine: {r['machine'].get('cpu', '')} "
        f"({r['machine'].get('cores', '?')} cores). Written by `benchmarks/speaker_verification.py`.",
        "",
        f"{r['clips']} clips of {r['clip_seconds']['min']}-{r['clip_seconds']['max']} s, all at 8 kHz "
        f"(telephone band); {r['real_speakers']} real speakers, the Piper voice, espeak-ng voices, "
        "pitch/formant-shifted real speakers.",
        "",
        f"- genuine pairs: **{r['genuine_pairs']}**, impostor pairs: **{r['impostor_pairs']}**",
        f"- equal-error rate: **{r['eer']:.2%}** (at cosine {r['eer_threshold']})",
        f"- at SPEAKER_THRESHOLD = {r['threshold']}: false accepts **{r['far_at_threshold']:.2%}**, "
        f"false rejects **{r['frr_at_threshold']:.2%}**",
        f"- lowest threshold accepting at most {r['max_far']:.0%} of other people (all impostors but the "
        f"speed-shifted copies): {r['suggested_threshold']}",
        f"- encoding: {r['seconds']['per_clip']} s per clip (one CPU thread)",
        "",
        "| pairs | kind | n | mean | min | max | FAR / FRR at threshold |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for c, v in r["categories"].items():
        figure = f"FRR {v['frr']:.2%}" if v["genuine"] else f"FAR {v['far']:.2%}"
        kind = "genuine" if v["genuine"] else "impostor"
        lines.append(f"| {c} | {kind} | {v['pairs']} | {v['mean']} | {v['min']} | {v['max']} | {figure} |")
    lines += [
        "",
        "| threshold | FAR (all impostors) | FAR (other people: no speed-shifted copies) | FRR |",
        "|---:|---:|---:|---:|",
    ]
    for row in r["sweep"]:
        lines.append(
            f"| {row['threshold']} | {row['far']:.2%} | {row['far_other_person']:.2%} | {row['frr']:.2%} |"
        )
    lines += [
        "",
        "Allison English vs Allison Spanish is not in the totals (a cross-language figure).",
        "",
        "Reading it:",
        "",
        "- All clips are 8 kHz (the Asterisk recordings are telephone band; the synthetic voices were",
        "  resampled to match, so the channel does not give them away). The encoder was trained on 16 kHz",
        "  speech: with the band above 4 kHz gone, different real speakers come closer (mean 0.76, highest",
        "  0.87 here) than wide-band speech would; these figures are the telephone-quality case.",
        "- The threshold is the lowest accepting at most 1% of other people: different real speakers,",
        "  synthetic voices, pitch-shifted copies that keep the formants, and espeak-ng's voice variants",
        "  against each other (one formant synthesizer with different settings: most of that 1%).",
        "- Speed-shifted copies of a speaker (pitch and formants moved together by 11-12%, like a",
        "  resampled recording) score close to the original: the check does not tell them apart from the",
        "  speaker, and is not meant to. They are impostors of the 'same person, altered' kind; the",
        "  consent phrase's one-time code, not the speaker check, is what stops a replayed recording.",
        "- Same speaker in another language (Allison, Spanish vs English) often falls below the",
        "  threshold: references and the consent clip should be in the same language.",
        "- Piper's synthesis is not seeded here, so its pair figures move slightly between runs.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=12, help="clips per real speaker and of the Piper voice")
    parser.add_argument("--espeak-clips", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-far", type=float, default=0.01)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
