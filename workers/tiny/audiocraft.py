"""Tiny random MusicGen / AudioGen checkpoints in audiocraft's export format.

* MusicGen / AudioGen: one folder with ``state_dict.bin`` (LM) and ``compression_state_dict.bin``
  (EnCodec), each ``{'xp.cfg', 'best_state', 'version', 'exported'}``; loaded by
  ``MusicGen.get_pretrained(folder)`` / ``AudioGen.get_pretrained(folder)``.
* MusicGen stereo: as above, in the layout of ``facebook/musicgen-stereo-*``: a mono EnCodec in
  ``compression_state_dict.bin`` and an 8-codebook LM whose ``xp.cfg`` sets ``channels: 2`` and
  ``interleave_stereo_codebooks.use: true`` (delays ``[0, 0, 1, 1, 2, 2, 3, 3]``). audiocraft's
  ``MusicGen`` wraps the codec in ``InterleaveStereoCompressionModel`` when it reads that LM config:
  left and right are coded separately by the mono codec, their codebooks interleaved
  ``[1_L, 1_R, 2_L, 2_R, ...]``.
* MusicGen melody: as above with audiocraft's ``chroma_stem`` melody conditioner. That conditioner
  always loads Demucs ``htdemucs`` in its constructor (audiocraft 1.3 has no setting to skip the
  stem separation), so the folder also holds ``demucs/htdemucs.th`` in Demucs' local-repository
  format (a pass-through separator, see :class:`StemPassThrough`), which the audiocraft backend
  hands to ``demucs.pretrained.get_model``: nothing is downloaded.

:func:`audiocraft_config` and :func:`write_audiocraft` are also what ``benchmarks/realsize.py``
builds its real-size random checkpoints with.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from workers.tiny.common import FORMAT_VERSION, SEED, TINY_CODEBOOK_SIZE, write_atomically

MUSICGEN_WINDOW_S = 30.0
"""Tiny MusicGen training segment; audiocraft's MusicGen needs more than 18 s (its extend stride)."""
AUDIOGEN_WINDOW_S = 10.0
"""AudioGen's real window."""


def audiocraft_config(
    *, sample_rate: int, ratios: list[int], segment_duration: float, melody: bool
) -> dict[str, Any]:
    """The ``xp.cfg`` keys audiocraft's builders read (see its config/ YAMLs), at tiny sizes."""
    description = {"model": "lut", "lut": {"n_bins": 256, "dim": 32, "tokenizer": "noop"}}
    conditioners: dict[str, Any] = {"description": description}
    fuser: dict[str, Any] = {
        "cross_attention_pos_emb": False,
        "cross_attention_pos_emb_scale": 1,
        "sum": [],
        "prepend": [],
        "cross": ["description"],
        "input_interpolate": [],
    }
    if melody:
        # config/conditioner/chroma2music.yaml: chroma of the melody, text and chroma prepended
        conditioners["self_wav"] = {
            "model": "chroma_stem",
            "chroma_stem": {
                "sample_rate": sample_rate,
                "n_chroma": 12,
                "radix2_exp": 14,
                "argmax": True,
                "match_len_on_eval": False,
                "eval_wavs": None,
                "n_eval_wavs": 100,
                "cache_path": None,
            },
        }
        fuser["prepend"] = ["self_wav", "description"]
        fuser["cross"] = []
    return {
        "device": "cpu",
        "dtype": "float32",
        "sample_rate": sample_rate,
        "channels": 1,
        "dataset": {"segment_duration": segment_duration},
        "compression_model": "encodec",
        "encodec": {
            "autoencoder": "seanet",
            "quantizer": "rvq",
            "sample_rate": sample_rate,
            "channels": 1,
            "causal": False,
            "renormalize": False,
        },
        "seanet": {
            "dimension": 32,
            "channels": 1,
            "causal": False,
            "n_filters": 4,
            "n_residual_layers": 1,
            "ratios": ratios,
            "activation": "ELU",
            "activation_params": {"alpha": 1.0},
            "norm": "weight_norm",
            "norm_params": {},
            "kernel_size": 7,
            "residual_kernel_size": 3,
            "last_kernel_size": 7,
            "dilation_base": 2,
            "pad_mode": "constant",
            "true_skip": True,
            "compress": 2,
            "lstm": 2,
            "disable_norm_outer_blocks": 0,
            "decoder": {"trim_right_ratio": 1.0, "final_activation": None, "final_activation_params": None},
            "encoder": {},
        },
        "rvq": {
            "n_q": 4,
            "q_dropout": False,
            "bins": TINY_CODEBOOK_SIZE,
            "decay": 0.99,
            "kmeans_init": False,
            "kmeans_iters": 50,
            "threshold_ema_dead_code": 2,
            "orthogonal_reg_weight": 0.0,
            "orthogonal_reg_active_codes_only": False,
        },
        "lm_model": "transformer_lm",
        "codebooks_pattern": {
            "modeling": "delay",
            "delay": {"delays": [0, 1, 2, 3], "flatten_first": 0, "empty_initial": 0},
        },
        "transformer_lm": {
            "dim": 32,
            "num_heads": 2,
            "num_layers": 2,
            "hidden_scale": 4,
            "n_q": 4,
            "card": TINY_CODEBOOK_SIZE,
            "dropout": 0.0,
            "emb_lr": None,
            "activation": "gelu",
            "norm_first": True,
            "bias_ff": False,
            "bias_attn": False,
            "bias_proj": False,
            "past_context": None,
            "causal": True,
            "custom": False,
            "memory_efficient": True,
            "attention_as_float32": False,
            "layer_scale": None,
            "positional_embedding": "sin",
            "xpos": False,
            "checkpointing": "none",
            "weight_init": "gaussian",
            "depthwise_init": "current",
            "zero_bias_init": True,
            "norm": "layer_norm",
            "cross_attention": False,
            "qk_layer_norm": False,
            "qk_layer_norm_cross": False,
            "attention_dropout": None,
            "kv_repeat": 1,
            "two_step_cfg": False,
        },
        "classifier_free_guidance": {"training_dropout": 0.2, "inference_coef": 3.0},
        "attribute_dropout": {"text": {}, "wav": {}},
        "fuser": fuser,
        "conditioners": conditioners,
    }


def _stereo_lm_config(mono: dict[str, Any]) -> dict[str, Any]:
    """The LM ``xp.cfg`` of a stereo MusicGen made from the mono one (musicgen-stereo-* layout).

    As audiocraft's stereo fine-tuning sets it (``grids/musicgen/musicgen_stereo_finetune_32khz.py``,
    ``docs/MUSICGEN.md``): ``channels: 2``, ``interleave_stereo_codebooks`` on (codebooks interleaved,
    not time steps), twice the codebooks in the LM and each delay repeated for left and right. The
    codec stays mono: the LM config alone makes ``MusicGen`` wrap it for stereo.
    """
    n_q = 2 * int(mono["transformer_lm"]["n_q"])
    delays = [d for delay in mono["codebooks_pattern"]["delay"]["delays"] for d in (delay, delay)]
    return {
        **mono,
        "channels": 2,
        "interleave_stereo_codebooks": {"use": True, "per_timestep": False},
        "compression_model_n_q": None,  # musicgen solver default: the codec's own n_q per channel
        "codebooks_pattern": {
            **mono["codebooks_pattern"],
            "delay": {**mono["codebooks_pattern"]["delay"], "delays": delays},
        },
        "transformer_lm": {**mono["transformer_lm"], "n_q": n_q},
    }


def write_audiocraft(
    folder: Path, cfg_dict: dict[str, Any], lm_cfg_dict: dict[str, Any] | None = None
) -> None:
    """Build both models from their configs and save them in audiocraft's export format.

    Args:
        folder: Checkpoint folder (exists).
        cfg_dict: The codec's ``xp.cfg`` (and the LM's too unless ``lm_cfg_dict`` is given).
        lm_cfg_dict: A different LM ``xp.cfg`` (stereo: the LM config wraps the mono codec).
    """
    import audiocraft
    from audiocraft.models import builders
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(cfg_dict)
    lm_cfg = OmegaConf.create(lm_cfg_dict) if lm_cfg_dict is not None else cfg
    compression = builders.get_compression_model(cfg)
    if "self_wav" in lm_cfg.conditioners:
        # the chroma conditioner's constructor loads Demucs: give it the tiny local one
        _write_tiny_demucs(folder / "demucs")
        from workers.backends._audiocraft_weights import local_demucs

        with local_demucs(folder / "demucs"):
            lm = builders.get_lm_model(lm_cfg)
    else:
        lm = builders.get_lm_model(lm_cfg)
    for name, model, model_cfg in (
        ("compression_state_dict.bin", compression, cfg),
        ("state_dict.bin", lm, lm_cfg),
    ):
        pkg = {
            "xp.cfg": OmegaConf.to_yaml(model_cfg),
            "best_state": model.state_dict(),
            "version": audiocraft.__version__,
            "exported": True,
        }
        torch.save(pkg, folder / name)


class StemPassThrough(torch.nn.Module):
    """A stand-in Demucs separator for tiny melody checkpoints: the mix becomes the melody stems.

    audiocraft's chroma conditioner keeps Demucs' ``vocals`` + ``other`` stems and drops drums and
    bass. A random-weight HTDemucs would replace the melody with its own noise (every melody gives
    the same chroma), so the tiny checkpoint ships this module instead, in Demucs' serialized-model
    format: half the mix in each kept stem, silence in the others. The melody then really steers
    the tiny model, and the conditioner code path stays audiocraft's own.

    Args:
        sources: Stem names, Demucs order.
        samplerate: Hz (Demucs models run at 44.1 kHz).
        audio_channels: Channels the separator expects.
        segment: Seconds per chunk in ``demucs.apply.apply_model``.
    """

    def __init__(
        self,
        sources: Sequence[str] = ("drums", "bass", "other", "vocals"),
        samplerate: int = 44100,
        audio_channels: int = 2,
        segment: float = 8.0,
    ) -> None:
        super().__init__()
        self.sources = list(sources)
        self.samplerate = samplerate
        self.audio_channels = audio_channels
        self.segment = segment
        keep = [0.5 if name in ("vocals", "other") else 0.0 for name in self.sources]
        self.stem_gain: torch.Tensor
        self.register_buffer("stem_gain", torch.tensor(keep, dtype=torch.float32))

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """``[batch, channels, time]`` mix to ``[batch, stems, channels, time]`` stems."""
        return mix[:, None] * self.stem_gain[None, :, None, None]


def _write_tiny_demucs(repo: Path) -> None:
    """The melody stem separator as ``<repo>/htdemucs.th`` (Demucs' serialized-model format)."""
    repo.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {"sources": ["drums", "bass", "other", "vocals"], "samplerate": 44100}
    model = StemPassThrough(**kwargs)
    pkg = {"klass": StemPassThrough, "args": (), "kwargs": kwargs, "state": model.state_dict()}
    torch.save(pkg, repo / "htdemucs.th")


def write_tiny_musicgen(folder: Path, *, melody: bool = False, stereo: bool = False) -> Path:
    """Write a tiny random MusicGen (32 kHz, 30 s window, 4 codebooks of 64 per channel) to ``folder``.

    Args:
        folder: Target folder (created; left alone when already complete).
        melody: Add the chroma melody conditioner (``generate_with_chroma``), like musicgen-melody.
        stereo: Two channels, like musicgen-stereo-*: a mono codec, an 8-codebook LM whose config
            turns on ``interleave_stereo_codebooks``.

    Returns:
        ``folder``, loadable with ``MusicGen.get_pretrained(str(folder))``.

    Raises:
        ValueError: ``melody`` and ``stereo`` together (no tiny stereo melody model).
    """
    if melody and stereo:
        raise ValueError("there is no tiny stereo melody MusicGen")
    cfg = audiocraft_config(
        sample_rate=32000, ratios=[8, 5, 4, 4], segment_duration=MUSICGEN_WINDOW_S, melody=melody
    )
    lm_cfg = _stereo_lm_config(cfg) if stereo else None
    kind = "musicgen-melody" if melody else "musicgen-stereo" if stereo else "musicgen"
    manifest = {"kind": kind, "format": FORMAT_VERSION, "seed": SEED}
    return write_atomically(Path(folder), manifest, lambda tmp: write_audiocraft(tmp, cfg, lm_cfg))


def write_tiny_audiogen(folder: Path) -> Path:
    """Write a tiny random AudioGen (16 kHz mono, 10 s window, 4 codebooks of 64) to ``folder``.

    Returns:
        ``folder``, loadable with ``AudioGen.get_pretrained(str(folder))``.
    """
    cfg = audiocraft_config(
        sample_rate=16000, ratios=[8, 5, 4, 2], segment_duration=AUDIOGEN_WINDOW_S, melody=False
    )
    manifest = {"kind": "audiogen", "format": FORMAT_VERSION, "seed": SEED}
    return write_atomically(Path(folder), manifest, lambda tmp: write_audiocraft(tmp, cfg))
