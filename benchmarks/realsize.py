"""Real-size random-weight checkpoints in each library's exact on-disk format, for timing.

A real-size architecture with random weights costs exactly the compute and memory of the trained
one (see shared/notes/FINDINGS.md), and no model hub is reachable here. So the benchmark writes:

* ``musicgen-small``: audiocraft export format (``state_dict.bin`` + ``compression_state_dict.bin``),
  the musicgen-small configuration: transformer LM dim 1024, 24 layers, 16 heads, 4 codebooks of
  2048, delay pattern, cross-attention on the text condition, classifier-free guidance 3.0; the
  real 32 kHz EnCodec (SEANet dimension 128, 64 filters, ratios 8-5-4-4, 4-codebook RVQ of 2048).
* ``audiogen-medium`` folder: AudioGen's 16 kHz EnCodec (ratios 8-5-4-2, 64 filters) with an LM of
  ``scale`` ``small`` (musicgen-small-sized, the default: cheap enough for 2 CPU cores) or
  ``medium`` (AudioGen's released 1.5B: dim 1536, 48 layers, 24 heads).
* ``vits-ljspeech``: coqui-tts ``config.json`` + ``model.pth`` of coqui's default (LJSpeech-sized)
  VITS: hidden 192, 6-layer text encoder, 16-layer posterior encoder, 4 flows, HiFi-GAN decoder
  with 512 initial channels, upsampling 8-8-2-2 (~36M parameters at inference). Character input
  instead of espeak phonemes (same network, no phonemizer needed). The duration predictor is VITS'
  deterministic one with its output pinned to a natural speaking rate: random duration weights
  would make ~4x shorter audio and overstate the real-time factor (the decoder's work follows the
  audio length). LJSpeech's stochastic predictor costs about the same (a few small flows per token).

* ``kokoro-82m`` (written by :func:`write_kokoro`, used by ``benchmarks/kokoro.py``; not part of
  :func:`ensure_all`): hexgrad/Kokoro-82M's layout (``config.json``, ``kokoro-v1_0.pth`` of ``module.``-
  prefixed sub-module state dicts, ``voices/af_heart.pt``) with the released ``config.json``: PL-BERT
  768 wide, 12 layers (shared ALBERT weights), hidden 512, 3-layer LSTM stacks, iSTFTNet with 512 initial
  channels, 10 x 6 upsampling, iSTFT hop 5 (81.8M parameters, float32 like the released file). The
  duration head is pinned to 3 frames (75 ms) per phoneme symbol (the tiny checkpoint's rule,
  :mod:`workers.tiny.kokoro`), a natural length: random weights would give ~0.6 s per symbol.

Text conditioner: audiocraft's ``lut`` conditioner with the ``noop`` tokenizer, 768 wide (T5-base's
width, projected to the LM dimension exactly like the T5 output) with a 32128-row table (T5's
vocabulary). The real models run a frozen T5 encoder (T5-base for MusicGen, T5-large for AudioGen)
once per call on a handful of tokens: ~0.1-0.3 s on this CPU against 10+ s of decoding, but
~0.45 GB (base) / ~1.4 GB (large) of extra resident memory that these checkpoints do not hold.

Each folder is written once (atomically, with a ``realsize.json`` manifest) and reused by later
runs. ``python -m benchmarks.realsize DIR`` writes all of them.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

logger = logging.getLogger(__name__)

MANIFEST = "realsize.json"
FORMAT_VERSION = 1
SEED = 20261
AudiogenScale = Literal["small", "medium"]

MUSICGEN_ID = "musicgen-small"
AUDIOGEN_ID = "audiogen-medium"
VITS_ID = "vits-ljspeech"

LM_SCALES: dict[str, dict[str, int]] = {
    "small": {"dim": 1024, "num_heads": 16, "num_layers": 24},  # audiocraft model_scale/small.yaml
    "medium": {"dim": 1536, "num_heads": 24, "num_layers": 48},  # audiocraft model_scale/medium.yaml
}

KOKORO_ID = "kokoro-82m"
KOKORO_FORMAT_VERSION = 1

VITS_FRAMES_PER_TOKEN = 2.9
"""Decoder frames (256 samples at 22.05 kHz) per input token after ``ceil``: 3, i.e. 35 ms."""
VITS_FORMAT_VERSION = 2

T5_VOCAB = 32128
T5_BASE_DIM = 768
T5_LARGE_DIM = 1024


def audiocraft_config(kind: Literal["musicgen", "audiogen"], scale: str = "small") -> dict[str, Any]:
    """The full ``xp.cfg`` of a real-size MusicGen/AudioGen (audiocraft's own YAML values).

    Starts from the key set the tiny test checkpoints use (``workers.tiny``, the same builders) and
    sets every size to the released configuration (``config/model/lm/*``, ``config/model/encodec/*``,
    ``config/conditioner/text2music.yaml`` / ``text2sound.yaml`` of audiocraft 1.3).
    """
    from workers.tiny import audiocraft_config as tiny_audiocraft_config

    music = kind == "musicgen"
    base = tiny_audiocraft_config(
        sample_rate=32000 if music else 16000,
        ratios=[8, 5, 4, 4] if music else [8, 5, 4, 2],
        segment_duration=30.0 if music else 10.0,
        melody=False,
    )
    text_dim = T5_BASE_DIM if music else T5_LARGE_DIM
    override: dict[str, Any] = {
        "seanet": {"dimension": 128, "n_filters": 64},
        "rvq": {"n_q": 4, "bins": 2048},
        "transformer_lm": {**LM_SCALES[scale], "n_q": 4, "card": 2048, "hidden_scale": 4},
        "classifier_free_guidance": {"training_dropout": 0.3 if music else 0.1, "inference_coef": 3.0},
        "conditioners": {
            "description": {"model": "lut", "lut": {"n_bins": T5_VOCAB, "dim": text_dim, "tokenizer": "noop"}}
        },
    }
    from omegaconf import OmegaConf

    # omegaconf (audiocraft's config library): this module also runs on GPU hosts without the API's packages
    merged = OmegaConf.to_container(OmegaConf.merge(base, override))
    assert isinstance(merged, dict)
    return {str(k): v for k, v in merged.items()}


# --------------------------------------------------------------------------------------------------
# atomic, idempotent writing
# --------------------------------------------------------------------------------------------------


def _complete(folder: Path, manifest: dict[str, Any]) -> bool:
    try:
        return bool(json.loads((folder / MANIFEST).read_text()) == manifest)
    except (OSError, ValueError):
        return False


def _write_once(folder: Path, manifest: dict[str, Any], fill: Callable[[Path], None]) -> bool:
    """Fill ``folder`` through a temporary sibling unless it already holds ``manifest``.

    Returns:
        Whether anything was written.
    """
    if _complete(folder, manifest):
        return False
    import torch

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        started = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            fill(tmp)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
        logger.info("wrote %s in %.1f s", folder, time.perf_counter() - started)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return True


def write_musicgen_small(folder: Path) -> bool:
    """musicgen-small-sized random MusicGen at ``folder`` (``MusicGen.get_pretrained(folder)``)."""
    from workers.tiny import write_audiocraft

    cfg = audiocraft_config("musicgen", "small")
    manifest = {"model": "musicgen-small", "format": FORMAT_VERSION, "seed": SEED, "text": "lut-noop"}
    return _write_once(folder, manifest, lambda tmp: write_audiocraft(tmp, cfg))


def write_audiogen(folder: Path, scale: AudiogenScale = "small") -> bool:
    """Random AudioGen (real 16 kHz EnCodec, LM of ``scale``) at ``folder``."""
    from workers.tiny import write_audiocraft

    cfg = audiocraft_config("audiogen", scale)
    manifest = {"model": f"audiogen-{scale}-lm", "format": FORMAT_VERSION, "seed": SEED, "text": "lut-noop"}
    return _write_once(folder, manifest, lambda tmp: write_audiocraft(tmp, cfg))


def _fill_vits(folder: Path) -> None:
    import torch
    from TTS.tts.models.vits import Vits, VitsArgs

    from workers.tiny import vits_config

    # coqui's VitsArgs defaults are the LJSpeech VITS sizes; the discriminator (training only) is off,
    # and the duration predictor is the deterministic one, pinned to a natural speaking rate (below)
    args = VitsArgs(init_discriminator=False, use_sdp=False)
    config = vits_config(args, run_name="soundry-bench-vits")
    model = Vits(config)
    model.eval()
    # Random duration weights make speech ~4x shorter than a trained voice, and the decoder's work
    # (most of the cost) follows the audio length: pin every input token (letters and the blanks
    # between them) to VITS_FRAMES_PER_TOKEN frames, ~14 characters per second like LJSpeech.
    proj = model.duration_predictor.proj
    with torch.no_grad():
        proj.weight.zero_()
        proj.bias.fill_(math.log(VITS_FRAMES_PER_TOKEN))
    config.save_json(str(folder / "config.json"))
    torch.save({"model": model.state_dict(), "step": 0, "epoch": 0}, folder / "model.pth")


def write_vits(folder: Path) -> bool:
    """LJSpeech-sized random coqui VITS at ``folder`` (``config.json`` + ``model.pth``)."""
    manifest = {
        "model": "vits-ljspeech-size",
        "format": VITS_FORMAT_VERSION,
        "seed": SEED,
        "frames_per_token": VITS_FRAMES_PER_TOKEN,
    }
    return _write_once(folder, manifest, _fill_vits)


def write_kokoro(folder: Path, voices: tuple[str, ...] = ("af_heart",)) -> bool:
    """Kokoro-82M-sized random Kokoro at ``folder`` (``KModel(config=..., model=...)`` and voice packs)."""
    from workers.tiny.kokoro import FRAMES_PER_TOKEN, REAL_CONFIG
    from workers.tiny.kokoro import write_kokoro as fill

    manifest = {
        "model": "kokoro-82m-size",
        "format": KOKORO_FORMAT_VERSION,
        "seed": SEED,
        "frames_per_token": FRAMES_PER_TOKEN,
        "voices": list(voices),
    }
    return _write_once(folder, manifest, lambda tmp: fill(tmp, REAL_CONFIG, voices))


def ensure_all(models_dir: Path, audiogen_scale: AudiogenScale = "small") -> dict[str, Any]:
    """Write every real-size checkpoint under ``models_dir/<catalog id>/`` (skips complete ones).

    Returns:
        ``{model id: {"written": bool, "bytes": on-disk size}}`` plus the total seconds spent.
    """
    started = time.perf_counter()
    out: dict[str, Any] = {}
    for model_id, write in (
        (MUSICGEN_ID, write_musicgen_small),
        (AUDIOGEN_ID, lambda f: write_audiogen(f, audiogen_scale)),
        (VITS_ID, write_vits),
    ):
        folder = models_dir / model_id
        written = write(folder)
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        out[model_id] = {"written": written, "bytes": size}
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def ensure_tiny_all(models_dir: Path) -> dict[str, Any]:
    """The tiny dev checkpoints (``<models_dir>/dev/<name>``, as the worker writes them) for quick runs."""
    from workers.tiny import ensure_tiny

    started = time.perf_counter()
    out: dict[str, Any] = {}
    for name in ("musicgen", "audiogen", "vits"):
        folder = ensure_tiny(f"tiny:{name}", models_dir)
        out[f"dev/{name}"] = {"bytes": sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())}
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write real-size random-weight checkpoints")
    parser.add_argument("models_dir", type=Path)
    parser.add_argument("--audiogen-scale", choices=("small", "medium"), default="small")
    parser.add_argument("--tiny", action="store_true", help="only the tiny dev checkpoints (quick runs)")
    parser.add_argument("--json-out", type=Path, help="write the summary here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    summary = (
        ensure_tiny_all(args.models_dir) if args.tiny else ensure_all(args.models_dir, args.audiogen_scale)
    )
    if args.json_out:
        args.json_out.write_text(json.dumps(summary, indent=2))
    logger.info("checkpoints: %s", summary)


if __name__ == "__main__":
    main()
