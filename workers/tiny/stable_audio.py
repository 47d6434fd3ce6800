"""Tiny random Stable Audio Open pipelines in diffusers' own folder layout, read by
``StableAudioPipeline.from_pretrained(<folder>)``.

The folder is what ``DiffusionPipeline.save_pretrained`` writes, as in ``stabilityai/stable-audio-open-1.0``:
``model_index.json`` and one sub-folder per component, ``transformer/`` (``StableAudioDiTModel``),
``vae/`` (``AutoencoderOobleck``), ``text_encoder/`` (``T5EncoderModel``), ``tokenizer/``
(``T5TokenizerFast``), ``projection_model/`` (``StableAudioProjectionModel``) and ``scheduler/``. The
library writes every file itself (configs and safetensors); nothing here knows the file formats.

Sizes: the tiny pipeline keeps what decides the audio's shape (44.1 kHz stereo, the Oobleck VAE's
2 x 4 x 4 x 8 x 8 = 2048-sample hop, so one latent frame is ~46 ms as in the real model) and shrinks
every width and depth (DiT 2 layers of 2 x 8 heads, 4 latent channels, VAE 8 channels wide in the
encoder and 4 in the decoder, a one-layer 32-wide T5). Its
latent window is 256 frames (11.9 s, the length of stable-audio-open-small's window) instead of 1024
(47.55 s): the pipeline always denoises and decodes the whole window whatever the requested
duration, so a shorter window keeps dev jobs fast. ~47k parameters in all.

Tokenizer: the hub's T5 SentencePiece model cannot be fetched here, so the tiny tokenizer is a
character-level ``tokenizers`` Unigram model with T5's special tokens (``<pad>`` 0, ``</s>`` 1,
``<unk>`` 2), T5's Metaspace pre-tokenizer and its ``$A </s>`` post-processor, wrapped in
``T5TokenizerFast`` and saved with its own ``save_pretrained`` (``tokenizer.json``): the same class and
loader as the real checkpoint's tokenizer, a smaller vocabulary.

Scheduler: the released checkpoint names ``CosineDPMSolverMultistepScheduler``, whose SDE noise comes
from ``torchsde`` (a dependency this installation does not carry, so diffusers exposes that class only
as a placeholder that raises). The tiny pipeline uses ``EDMDPMSolverMultistepScheduler``, the class the
pipeline's own signature names, with the released sigmas (0.3 to 500, exponential schedule,
v-prediction, second-order midpoint DPM-Solver++, SDE variant): the same loop, the same per-step noise
drawn from the job's generators, no ``torchsde``.

:data:`REAL_SIZES` holds the released stable-audio-open-1.0 sizes (diffusers' class defaults, which
are that model's, and T5-base), used by ``benchmarks/stable_audio.py`` for a real-size random model.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

from workers.tiny.common import FORMAT_VERSION, SEED, write_atomically

SAMPLE_RATE = 44100
HOP = 2048
"""Audio samples per latent frame (``AutoencoderOobleck.hop_length``: the product of its downsampling
ratios)."""

SCHEDULER: dict[str, Any] = {
    "sigma_min": 0.3,
    "sigma_max": 500.0,
    "sigma_data": 1.0,
    "sigma_schedule": "exponential",
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "solver_order": 2,
    "solver_type": "midpoint",
    "algorithm_type": "sde-dpmsolver++",
    "lower_order_final": True,
    "euler_at_final": False,
    "final_sigmas_type": "zero",
    "rho": 7.0,
}
"""``EDMDPMSolverMultistepScheduler`` settings: stable-audio-open-1.0's released scheduler values."""

REAL_SIZES: dict[str, Any] = {
    "transformer": {
        "sample_size": 1024,
        "in_channels": 64,
        "num_layers": 24,
        "attention_head_dim": 64,
        "num_attention_heads": 24,
        "num_key_value_attention_heads": 12,
        "out_channels": 64,
        "cross_attention_dim": 768,
        "time_proj_dim": 256,
        "global_states_input_dim": 1536,
        "cross_attention_input_dim": 768,
    },
    "vae": {
        "encoder_hidden_size": 128,
        "downsampling_ratios": [2, 4, 4, 8, 8],
        "channel_multiples": [1, 2, 4, 8, 16],
        "decoder_channels": 128,
        "decoder_input_channels": 64,
        "audio_channels": 2,
        "sampling_rate": SAMPLE_RATE,
    },
    "text_encoder": {  # T5-base's encoder
        "d_model": 768,
        "d_kv": 64,
        "d_ff": 3072,
        "num_layers": 12,
        "num_heads": 12,
        "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128,
        "feed_forward_proj": "relu",
    },
    "projection_model": {"conditioning_dim": 768, "min_value": 0, "max_value": 512},
    "tokenizer_max_length": 128,
}
"""stable-audio-open-1.0: DiT 24 layers x 24 heads of 64 (1536 wide, 12 key/value heads), 1024
latent frames of 64 channels (47.55 s); Oobleck VAE 128 channels, x[1, 2, 4, 8, 16], hop 2048; T5-base
encoder; seconds conditioners 0-512 s, 768 wide; prompts of up to 128 tokens."""

TINY_SIZES: dict[str, Any] = {
    "transformer": {
        "sample_size": 256,
        "in_channels": 4,
        "num_layers": 2,
        "attention_head_dim": 8,
        "num_attention_heads": 2,
        "num_key_value_attention_heads": 1,
        "out_channels": 4,
        "cross_attention_dim": 16,
        "time_proj_dim": 16,
        "global_states_input_dim": 32,
        "cross_attention_input_dim": 16,
    },
    "vae": {
        "encoder_hidden_size": 8,  # the encoder's output: mean and scale of the 4 latent channels
        "downsampling_ratios": [2, 4, 4, 8, 8],
        "channel_multiples": [1, 1, 1, 1, 1],
        "decoder_channels": 4,
        "decoder_input_channels": 4,
        "audio_channels": 2,
        "sampling_rate": SAMPLE_RATE,
    },
    "text_encoder": {
        "d_model": 32,
        "d_kv": 8,
        "d_ff": 64,
        "num_layers": 1,
        "num_heads": 2,
        "relative_attention_num_buckets": 8,
        "relative_attention_max_distance": 32,
        "feed_forward_proj": "relu",
    },
    "projection_model": {"conditioning_dim": 16, "min_value": 0, "max_value": 512},
    "tokenizer_max_length": 64,
}
"""The tiny pipeline (see the module docstring); the seconds conditioners keep the real 0-512 s range."""

_SPECIALS = ("<pad>", "</s>", "<unk>")


def window_s(sizes: dict[str, Any]) -> float:
    """Longest clip, seconds, the pipeline of ``sizes`` makes in one call (its whole latent window)."""
    return int(sizes["transformer"]["sample_size"]) * HOP / SAMPLE_RATE


def build_tokenizer(max_length: int) -> Any:
    """A character-level T5-style ``T5TokenizerFast`` (see the module docstring)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    pieces = ["\u2581", *(f"\u2581{c}" for c in string.ascii_lowercase)]
    pieces += [c for c in string.ascii_letters + string.digits + string.punctuation if c not in pieces]
    vocab = [(token, 0.0) for token in _SPECIALS] + [(p, -float(i + 1)) for i, p in enumerate(pieces)]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Replace(Regex(" {2,}"), " "), normalizers.Strip()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return T5TokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_ids=0,
        model_max_length=max_length,
    )


def build_pipeline(sizes: dict[str, Any]) -> Any:
    """A randomly initialised ``StableAudioPipeline`` of ``sizes`` (``TINY_SIZES``, ``REAL_SIZES``)."""
    from diffusers import (
        AutoencoderOobleck,
        EDMDPMSolverMultistepScheduler,
        StableAudioDiTModel,
        StableAudioPipeline,
        StableAudioProjectionModel,
    )
    from transformers import T5Config, T5EncoderModel

    tokenizer = build_tokenizer(int(sizes["tokenizer_max_length"]))
    t5 = T5Config(
        vocab_size=len(tokenizer),
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        **sizes["text_encoder"],
    )
    text_encoder = T5EncoderModel(t5).eval()
    projection = StableAudioProjectionModel(text_encoder_dim=t5.d_model, **sizes["projection_model"])
    return StableAudioPipeline(
        vae=AutoencoderOobleck(**sizes["vae"]),
        text_encoder=text_encoder,
        projection_model=projection,
        tokenizer=tokenizer,
        transformer=StableAudioDiTModel(**sizes["transformer"]),
        scheduler=EDMDPMSolverMultistepScheduler(**SCHEDULER),
    )


def write_stable_audio(folder: Path, sizes: dict[str, Any]) -> None:
    """Write a random pipeline of ``sizes`` into the existing, empty ``folder`` with ``save_pretrained``."""
    build_pipeline(sizes).save_pretrained(folder, safe_serialization=True)


def write_tiny_stable_audio(folder: Path) -> Path:
    """Write the tiny random Stable Audio pipeline (``dev-stable-audio-tiny``) to ``folder``.

    Returns:
        ``folder``, loadable with ``StableAudioPipeline.from_pretrained(folder)``.
    """
    manifest = {"kind": "stable-audio", "format": FORMAT_VERSION, "seed": SEED, "sizes": TINY_SIZES}
    return write_atomically(Path(folder), manifest, lambda tmp: write_stable_audio(tmp, TINY_SIZES))
