"""Tiny random Kokoro checkpoints in the layout of ``hexgrad/Kokoro-82M``, read by ``kokoro.KModel``.

The folder holds what the real repository holds:

* ``config.json``: kokoro's config schema (``n_token``, ``hidden_dim``, ``style_dim``, ``n_layer``,
  ``max_dur``, ``plbert``, ``istftnet``, the phoneme ``vocab``, ...), with the real 178-symbol vocabulary.
* ``kokoro-v1_0.pth``: ``torch.save`` of a dict of sub-module state dicts, ``{"bert": ...,
  "bert_encoder": ..., "predictor": ..., "text_encoder": ..., "decoder": ...}``, each key prefixed
  ``module.`` as in the released file (saved from a ``DataParallel`` wrapper); ``KModel`` strips it.
* ``voices/<name>.pt``: a voice pack, a float32 tensor ``[510, 1, 256]``: one 256-wide style vector per
  phoneme-string length (row ``len(phonemes) - 1``); the first 128 values condition the decoder, the
  last 128 the prosody predictor.

Only some sizes can shrink: kokoro 0.9.4 hard-codes the decoder's 1024/512 channels (so the
generator starts at 512), a 512-wide text path (``hidden_dim``) and the 128 + 128 style split, so the
tiny model keeps those and shrinks the PL-BERT (1 layer, 32 wide), the LSTM stacks (``n_layer`` 1) and
the iSTFTNet generator's rate: upsampling 2 x 2 with an iSTFT hop of 75 (n_fft 300) instead of 10 x 6
with a hop of 5, the same 600 samples of 24 kHz audio per predicted frame (durations and timings keep
their units) for a tenth of the generator's work, and one resblock kernel instead of three. 56M
parameters remain (the fixed decoder blocks are most of them; Kokoro-82M has 82M), stored as float16
(114 MB; ``KModel`` loads them into its float32 parameters). A 5.7 s two-sentence take costs ~1.3 s on
one busy CPU thread.

Durations: random duration weights would give every phoneme ~25 frames (0.6 s). The duration
projection is pinned instead (weights 0, bias so that the summed sigmoids give
:data:`FRAMES_PER_TOKEN`), so each input symbol lasts 3 frames (75 ms) at speed 1, like trained speech
in length; ``speed`` divides it before rounding, as in the real model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from workers.tiny.common import FORMAT_VERSION, SEED, write_atomically

CHECKPOINT = "kokoro-v1_0.pth"
VOICE_ROWS = 510
"""Rows of a voice pack: one per phoneme-string length the model takes (510 + BOS/EOS = 512)."""
STYLE_WIDTH = 256
FRAMES_PER_TOKEN = 2.6
"""Pinned summed-sigmoid duration per input symbol at speed 1 (rounds to 3 frames, 75 ms)."""
SAMPLES_PER_FRAME = 600
"""24 kHz samples per predicted duration frame (upsampling 10 x 6, iSTFT hop 5, F0 at twice the frame
rate)."""
TINY_VOICES = ("af_heart", "am_adam", "bf_emma")

VOCAB: dict[str, int] = {
    ";": 1, ":": 2, ",": 3, ".": 4, "!": 5, "?": 6, "\u2014": 9, "\u2026": 10, '"': 11, "(": 12,
    ")": 13, "\u201c": 14, "\u201d": 15, " ": 16, "\u0303": 17, "\u02a3": 18, "\u02a5": 19,
    "\u02a6": 20, "\u02a8": 21, "\u1d5d": 22, "\uab67": 23, "A": 24, "I": 25, "O": 31, "Q": 33,
    "S": 35, "T": 36, "W": 39, "Y": 41, "\u1d4a": 42, "a": 43, "b": 44, "c": 45, "d": 46, "e": 47,
    "f": 48, "h": 50, "i": 51, "j": 52, "k": 53, "l": 54, "m": 55, "n": 56, "o": 57, "p": 58,
    "q": 59, "r": 60, "s": 61, "t": 62, "u": 63, "v": 64, "w": 65, "x": 66, "y": 67, "z": 68,
    "\u0251": 69, "\u0250": 70, "\u0252": 71, "\u00e6": 72, "\u03b2": 75, "\u0254": 76, "\u0255": 77,
    "\u00e7": 78, "\u0256": 80, "\u00f0": 81, "\u02a4": 82, "\u0259": 83, "\u025a": 85, "\u025b": 86,
    "\u025c": 87, "\u025f": 90, "\u0261": 92, "\u0265": 99, "\u0268": 101, "\u026a": 102,
    "\u029d": 103, "\u026f": 110, "\u0270": 111, "\u014b": 112, "\u0273": 113, "\u0272": 114,
    "\u0274": 115, "\u00f8": 116, "\u0278": 118, "\u03b8": 119, "\u0153": 120, "\u0279": 123,
    "\u027e": 125, "\u027b": 126, "\u0281": 128, "\u027d": 129, "\u0282": 130, "\u0283": 131,
    "\u0288": 132, "\u02a7": 133, "\u028a": 135, "\u028b": 136, "\u028c": 138, "\u0263": 139,
    "\u0264": 140, "\u03c7": 142, "\u028e": 143, "\u0292": 147, "\u0294": 148, "\u02c8": 156,
    "\u02cc": 157, "\u02d0": 158, "\u02b0": 162, "\u02b2": 164, "\u2193": 169, "\u2192": 171,
    "\u2197": 172, "\u2198": 173, "\u1d7b": 177,
}  # fmt: skip
"""Kokoro-82M v1.0's phoneme vocabulary (its ``config.json``): misaki's phoneme set -> token id."""

REAL_CONFIG: dict[str, Any] = {
    "istftnet": {
        "upsample_kernel_sizes": [20, 12],
        "upsample_rates": [10, 6],
        "gen_istft_hop_size": 5,
        "gen_istft_n_fft": 20,
        "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
        "resblock_kernel_sizes": [3, 7, 11],
        "upsample_initial_channel": 512,
    },
    "dim_in": 64,
    "dropout": 0.2,
    "hidden_dim": 512,
    "max_conv_dim": 512,
    "max_dur": 50,
    "multispeaker": True,
    "n_layer": 3,
    "n_mels": 80,
    "n_token": 178,
    "style_dim": 128,
    "text_encoder_kernel_size": 5,
    "plbert": {
        "hidden_size": 768,
        "num_attention_heads": 12,
        "intermediate_size": 2048,
        "max_position_embeddings": 512,
        "num_hidden_layers": 12,
        "dropout": 0.1,
    },
    "vocab": VOCAB,
}
"""Kokoro-82M v1.0's ``config.json`` (81.8M parameters)."""


def tiny_config() -> dict[str, Any]:
    """The real config with every size kokoro lets shrink made small (see the module docstring)."""
    config = json.loads(json.dumps(REAL_CONFIG))
    config["n_layer"] = 1
    config["text_encoder_kernel_size"] = 3
    config["plbert"].update(hidden_size=32, num_attention_heads=2, intermediate_size=64, num_hidden_layers=1)
    config["istftnet"].update(
        upsample_rates=[2, 2],
        upsample_kernel_sizes=[4, 4],
        gen_istft_hop_size=75,
        gen_istft_n_fft=300,
        resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1, 3, 5]],
    )
    return config


def build_modules(config: dict[str, Any]) -> dict[str, torch.nn.Module]:
    """The five sub-modules ``KModel.__init__`` builds from ``config``, randomly initialised."""
    from kokoro.istftnet import Decoder
    from kokoro.modules import CustomAlbert, ProsodyPredictor, TextEncoder
    from transformers import AlbertConfig

    bert = CustomAlbert(AlbertConfig(vocab_size=config["n_token"], **config["plbert"]))
    return {
        "bert": bert,
        "bert_encoder": torch.nn.Linear(bert.config.hidden_size, config["hidden_dim"]),
        "predictor": ProsodyPredictor(
            style_dim=config["style_dim"],
            d_hid=config["hidden_dim"],
            nlayers=config["n_layer"],
            max_dur=config["max_dur"],
            dropout=config["dropout"],
        ),
        "text_encoder": TextEncoder(
            channels=config["hidden_dim"],
            kernel_size=config["text_encoder_kernel_size"],
            depth=config["n_layer"],
            n_symbols=config["n_token"],
        ),
        "decoder": Decoder(
            dim_in=config["hidden_dim"],
            style_dim=config["style_dim"],
            dim_out=config["n_mels"],
            **config["istftnet"],
        ),
    }


def pin_durations(predictor: Any, max_dur: int, frames: float = FRAMES_PER_TOKEN) -> None:
    """Make the duration head predict ``frames`` per input symbol whatever its input (random weights
    otherwise predict ~``max_dur / 2``)."""
    linear: Any = predictor.duration_proj.linear_layer  # kokoro's LinearNorm wraps an nn.Linear
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.fill_(math.log(frames / (max_dur - frames)))


def write_kokoro(
    folder: Path,
    config: dict[str, Any],
    voices: Sequence[str],
    *,
    dtype: torch.dtype = torch.float32,
    frames_per_token: float = FRAMES_PER_TOKEN,
) -> None:
    """Write ``config.json``, ``kokoro-v1_0.pth`` and ``voices/<name>.pt`` for ``config`` into ``folder``.

    Args:
        folder: An existing, empty folder.
        config: A kokoro ``config.json`` dict (:func:`tiny_config`, :data:`REAL_CONFIG`).
        voices: Voice pack names.
        dtype: Floating dtype the weights are stored in (the loader copies them into float32).
        frames_per_token: Pinned duration per input symbol (see :func:`pin_durations`).
    """
    modules = build_modules(config)
    pin_durations(modules["predictor"], config["max_dur"], frames_per_token)
    state = {
        name: {
            f"module.{key}": value.to(dtype) if value.is_floating_point() else value
            for key, value in module.state_dict().items()
        }
        for name, module in modules.items()
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    torch.save(state, folder / CHECKPOINT)
    (folder / "voices").mkdir()
    for name in voices:
        # real packs: values within about +-1.5, standard deviation ~0.15, smooth along the rows
        base = torch.randn(1, 1, STYLE_WIDTH) * 0.15
        drift = torch.randn(VOICE_ROWS, 1, STYLE_WIDTH).cumsum(0) * (0.02 / math.sqrt(VOICE_ROWS))
        torch.save((base + drift).contiguous(), folder / "voices" / f"{name}.pt")


def write_tiny_kokoro(folder: Path, voices: Sequence[str] = TINY_VOICES) -> Path:
    """Write a tiny random Kokoro (``dev-kokoro-tiny``) to ``folder``.

    Args:
        folder: Target folder (created; left alone when already complete).
        voices: Voice pack names (``voices/<name>.pt``); the first letter of each names its language
            (``a`` American English, ``b`` British, ``e`` Spanish, ...), as in Kokoro-82M.

    Returns:
        ``folder``, loadable with ``KModel(repo_id=..., config=folder/"config.json",
        model=folder/"kokoro-v1_0.pth")``.
    """
    voices = tuple(voices)
    if not voices:
        raise ValueError("a Kokoro folder needs at least one voice pack")
    manifest = {"kind": "kokoro", "format": FORMAT_VERSION, "seed": SEED, "voices": list(voices)}
    return write_atomically(
        Path(folder), manifest, lambda tmp: write_kokoro(tmp, tiny_config(), voices, dtype=torch.float16)
    )
