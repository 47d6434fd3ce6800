"""Tiny random-weight checkpoints in each library's exact on-disk format (dev models and tests).

No model hub is reachable from development machines or CI, so the real loaders are exercised on
checkpoints written here: same files, same loader, random weights (the output is noise). One module
per library:

* :mod:`workers.tiny.audiocraft`: MusicGen (mono, stereo, melody) and AudioGen, audiocraft's export
  format.
* :mod:`workers.tiny.coqui`: coqui VITS and XTTS-v2.
* :mod:`workers.tiny.kokoro`: Kokoro (``hexgrad/Kokoro-82M``'s layout: config, checkpoint, voice packs).
* :mod:`workers.tiny.stable_audio`: Stable Audio Open (diffusers' ``StableAudioPipeline`` folder,
  written by its own ``save_pretrained``).
* :mod:`workers.tiny.common`: the manifest, the seed and the atomic, idempotent folder writing
  they share.

Every writer is deterministic (fixed seed, caller's RNG state untouched), idempotent (a folder
holding a matching ``tiny.json`` manifest is left alone) and atomic (written to a temporary sibling
folder, then moved in place with ``os.replace``). :func:`ensure_tiny` writes the checkpoint a
``tiny:<name>`` catalog source names on first use; the names below stay importable from here.
"""

from __future__ import annotations

from pathlib import Path

from workers.tiny.audiocraft import (
    AUDIOGEN_WINDOW_S,
    MUSICGEN_WINDOW_S,
    StemPassThrough,  # older melody checkpoints pickled it as workers.tiny.StemPassThrough
    audiocraft_config,
    write_audiocraft,
    write_tiny_audiogen,
    write_tiny_musicgen,
)
from workers.tiny.common import FORMAT_VERSION, MANIFEST, SEED, TINY_CODEBOOK_SIZE
from workers.tiny.coqui import (
    XTTS_CODE_STRIDE,
    XTTS_CODES_PER_SENTENCE,
    XTTS_GPT_SAMPLE_RATE,
    XTTS_MAX_AUDIO_TOKENS,
    XTTS_OUTPUT_SAMPLE_RATE,
    XTTS_SPECIAL_TOKENS,
    vits_config,
    write_tiny_vits,
    write_tiny_xtts,
)
from workers.tiny.kokoro import write_tiny_kokoro
from workers.tiny.stable_audio import write_tiny_stable_audio

__all__ = [
    "AUDIOGEN_WINDOW_S",
    "FORMAT_VERSION",
    "MANIFEST",
    "MUSICGEN_WINDOW_S",
    "SEED",
    "TINY_CODEBOOK_SIZE",
    "TINY_SOURCES",
    "XTTS_CODES_PER_SENTENCE",
    "XTTS_CODE_STRIDE",
    "XTTS_GPT_SAMPLE_RATE",
    "XTTS_MAX_AUDIO_TOKENS",
    "XTTS_OUTPUT_SAMPLE_RATE",
    "XTTS_SPECIAL_TOKENS",
    "StemPassThrough",
    "audiocraft_config",
    "ensure_tiny",
    "vits_config",
    "write_audiocraft",
    "write_tiny_audiogen",
    "write_tiny_kokoro",
    "write_tiny_musicgen",
    "write_tiny_stable_audio",
    "write_tiny_vits",
    "write_tiny_xtts",
]

#: ``tiny:<name>`` sources and the folder each one gets under ``<models_dir>/dev/``.
TINY_SOURCES: tuple[str, ...] = (
    "musicgen",
    "musicgen-melody",
    "musicgen-stereo",
    "audiogen",
    "vits",
    "xtts",
    "kokoro",
    "stable-audio",
)


def ensure_tiny(source: str, models_dir: Path) -> Path:
    """The folder of the tiny checkpoint named by ``source``, written on first use.

    Args:
        source: ``tiny:musicgen``, ``tiny:musicgen-melody``, ``tiny:musicgen-stereo``,
            ``tiny:audiogen``, ``tiny:vits``, ``tiny:xtts``, ``tiny:kokoro`` or ``tiny:stable-audio``.
        models_dir: Root of local checkpoints; the tiny ones live in ``<models_dir>/dev/<name>``.

    Returns:
        The complete checkpoint folder.

    Raises:
        ValueError: ``source`` names no tiny checkpoint.
    """
    prefix, _, name = source.partition(":")
    if prefix != "tiny" or name not in TINY_SOURCES:
        known = ", ".join(f"tiny:{n}" for n in TINY_SOURCES)
        raise ValueError(f"unknown tiny checkpoint '{source}'; known: {known}")
    folder = Path(models_dir) / "dev" / name
    if name == "musicgen":
        return write_tiny_musicgen(folder)
    if name == "musicgen-melody":
        return write_tiny_musicgen(folder, melody=True)
    if name == "musicgen-stereo":
        return write_tiny_musicgen(folder, stereo=True)
    if name == "audiogen":
        return write_tiny_audiogen(folder)
    if name == "xtts":
        return write_tiny_xtts(folder)
    if name == "kokoro":
        return write_tiny_kokoro(folder)
    if name == "stable-audio":
        return write_tiny_stable_audio(folder)
    return write_tiny_vits(folder)
