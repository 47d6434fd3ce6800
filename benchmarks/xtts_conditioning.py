"""What the XTTS conditioning cache saves per job, on the real-size XTTS-v2 architecture (random weights).

XTTS conditions every sentence on its voice: ``Xtts.get_conditioning_latents`` reads the references,
runs the conditioning encoder + perceiver over up to ``gpt_cond_len`` seconds (GPT latents) and the
HiFi-GAN's speaker encoder over the whole clips (speaker embedding). coqui's ``TTS.tts`` recomputes it
on every call, and Soundry calls it once per sentence; the backend now computes it once per job, and for
a library voice once per voice and model (read back from the store afterwards:
``workers/backends/coqui.py``, ``_conditioning``).

Measured here with the released XTTS-v2 configuration (``XttsConfig()`` defaults: GPT 30 layers x 1024,
perceiver, HiFi-GAN decoder and speaker encoder; ~470M parameters) built with random weights, so time
equals the trained model's:

* ``get_conditioning_latents`` on 1 and on 3 references of 8 s (real recorded speech, Asterisk's
  Allison, resampled to 22.05 kHz), with the settings XTTS's ``synthesize`` passes;
* the cached path: ``torch.load`` of the saved latents (what a known voice costs instead);
* one sentence's synthesis (``Xtts.inference``) with :data:`CODES` GPT codes (~2 s of audio; the random
  GPT is kept from stopping early), for the share of a job.

Run: ``OMP_NUM_THREADS=2 uv run --frozen python -m benchmarks.xtts_conditioning`` (writes
``benchmarks/results/xtts_conditioning.{json,md}``; ~2.6 GB of memory; a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import load_average, machine_info

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "xtts_conditioning.json"
CODES = 43
"""GPT codes of the timed sentence (XTTS makes ~21.5 codes per second of audio)."""
TEXT = "The weather today is bright and warm."


def _timed(fn: Any, repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def references(folder: Path, count: int, seconds: float = 8.0) -> list[str]:
    """``count`` WAV files of ``seconds`` of Allison's recorded prompts each (22.05 kHz)."""
    import soundfile as sf

    from tests.real_audio import load, speech_files

    waves = [load(p, 22050)[0] for p in speech_files("en_US_f_Allison", min_seconds=2.0)[: 8 * count]]
    joined = np.concatenate(waves)
    n = int(seconds * 22050)
    paths = []
    for i in range(count):
        path = folder / f"ref{i}.wav"
        sf.write(path, joined[i * n : (i + 1) * n], 22050, subtype="PCM_16")
        paths.append(str(path))
    return paths


def run(repeats: int) -> dict[str, Any]:
    import torch
    from TTS.tts.configs.xtts_config import XttsConfig
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
    from TTS.tts.models.xtts import Xtts

    from workers.backends.coqui import _soundfile_references
    from workers.tiny.coqui import _write_xtts_vocab

    torch.manual_seed(0)
    before = load_average()
    start = time.perf_counter()
    config = XttsConfig()
    with tempfile.TemporaryDirectory() as tmp:
        _write_xtts_vocab(Path(tmp) / "vocab.json", config.languages)  # a character vocabulary (no download)
        model = Xtts(config)
        model.tokenizer = VoiceBpeTokenizer(vocab_file=str(Path(tmp) / "vocab.json"))
        model.init_models()
    model.eval()
    with torch.no_grad():
        model.gpt.mel_head.bias[config.model_args.gpt_stop_audio_token] = -1e4
    build_s = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    settings = {
        "max_ref_length": config.max_ref_len,
        "gpt_cond_len": config.gpt_cond_len,
        "gpt_cond_chunk_len": config.gpt_cond_chunk_len,
        "sound_norm_refs": config.sound_norm_refs,
    }
    result: dict[str, Any] = {"parameters_m": round(params / 1e6, 1), "build_s": round(build_s, 1)}
    with tempfile.TemporaryDirectory() as tmp, _soundfile_references(), torch.inference_mode():
        for count in (1, 3):
            refs = references(Path(tmp), count)
            cond_s, (latent, embedding) = _timed(
                lambda r=refs: model.get_conditioning_latents(audio_path=r, **settings), repeats
            )
            result[f"conditioning_{count}ref_s"] = round(cond_s, 3)
        buffer = io.BytesIO()
        torch.save({"gpt_cond_latent": latent.clone(), "speaker_embedding": embedding.clone()}, buffer)
        data = buffer.getvalue()
        load_s, _ = _timed(
            lambda: torch.load(io.BytesIO(data), map_location="cpu", weights_only=True), repeats
        )
        result["cached_load_s"] = round(load_s, 4)
        result["cached_bytes"] = len(data)
        sentence_s, wav = _timed(
            lambda: model.inference(TEXT, "en", latent, embedding, max_new_tokens=CODES, do_sample=True),
            max(1, repeats // 2),
        )
        audio_s = len(wav["wav"]) / 24000
    result.update(
        sentence_s=round(sentence_s, 2),
        sentence_audio_s=round(audio_s, 2),
        threads=torch.get_num_threads(),
        load_average=[before, load_average()],
        machine=machine_info(),
    )
    c1, c3, s = result["conditioning_1ref_s"], result["conditioning_3ref_s"], sentence_s
    result["saving_per_sentence_1ref_s"] = round(c1 - load_s, 3)
    result["saving_per_sentence_3ref_s"] = round(c3 - load_s, 3)
    result["share_of_one_sentence_job_1ref"] = round(c1 / (c1 + s), 3)
    result["share_of_one_sentence_job_3ref"] = round(c3 / (c3 + s), 3)
    return result


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    return "\n".join(
        [
            "# XTTS conditioning cache",
            "",
            f"Real-size XTTS-v2 ({r['parameters_m']}M parameters, random weights), CPU: {m['cpu']}, "
            f"{r['threads']} torch threads, load average {r['load_average'][0]} -> {r['load_average'][1]}. "
            "Written by `benchmarks/xtts_conditioning.py`.",
            "",
            "| | seconds |",
            "|---|---:|",
            f"| `get_conditioning_latents`, 1 reference of 8 s | {r['conditioning_1ref_s']} |",
            f"| `get_conditioning_latents`, 3 references of 8 s | {r['conditioning_3ref_s']} |",
            f"| cached: `torch.load` of the saved latents ({r['cached_bytes'] / 1024:.0f} KiB) "
            f"| {r['cached_load_s']} |",
            f"| one sentence's synthesis ({r['sentence_audio_s']} s of audio) | {r['sentence_s']} |",
            "",
            f"Saving per sentence (coqui alone recomputes per call; Soundry called it once per sentence): "
            f"**{r['saving_per_sentence_1ref_s']} s** with 1 reference, "
            f"**{r['saving_per_sentence_3ref_s']} s** "
            "with 3. A job of N sentences now computes it once (raw uploads) or never (a known library "
            f"voice): the saving is N x that. In a one-sentence job the conditioning was "
            f"{r['share_of_one_sentence_job_1ref']:.0%} (1 reference) / "
            f"{r['share_of_one_sentence_job_3ref']:.0%} "
            "(3 references) of the model time.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    result = run(args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
