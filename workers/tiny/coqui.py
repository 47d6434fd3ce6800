"""Tiny random coqui TTS checkpoints: VITS and XTTS-v2, in the folders coqui's loaders read.

* Coqui VITS: ``config.json`` + ``model.pth`` (multi-speaker, character input, no phonemizer);
  loaded by ``TTS(model_path=..., config_path=...)``.
* Coqui XTTS-v2: the folder ``Xtts.load_checkpoint`` reads, ``config.json`` + ``model.pth``
  (``{'model': state_dict}``) + ``vocab.json`` (a ``tokenizers`` BPE file with XTTS' special and
  language tokens); loaded by ``TTS(model_path=<folder>, config_path=<folder>/config.json)``. Only the
  GPT is small: coqui 0.28 builds the HiFi-GAN decoder (~14M parameters) and the ResNet speaker
  encoder (~8M) at their real sizes whatever the config says, so the folder holds ~46 MB (float16).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from workers.tiny.common import FORMAT_VERSION, SEED, TINY_CODEBOOK_SIZE, write_atomically

XTTS_MAX_AUDIO_TOKENS = 24
"""Tiny XTTS ``gpt_max_audio_tokens``; the GPT then makes ``XTTS_CODES_PER_SENTENCE`` codes."""
XTTS_CODES_PER_SENTENCE = XTTS_MAX_AUDIO_TOKENS - 3
"""Audio codes per sentence: the tiny GPT never emits its stop token, so it always fills its budget
(coqui's ``max_gen_mel_tokens``: the budget less start, stop and one conditioning slot)."""
XTTS_CODE_STRIDE = 1024
"""Samples per audio code at XTTS' 22.05 kHz GPT rate (``gpt_code_stride_len``)."""
XTTS_GPT_SAMPLE_RATE = 22050
XTTS_OUTPUT_SAMPLE_RATE = 24000


# --------------------------------------------------------------------------------------------------
# coqui VITS
# --------------------------------------------------------------------------------------------------


def vits_config(args: Any, *, run_name: str, **fields: Any) -> Any:
    """A coqui ``VitsConfig`` for ``args``: 22.05 kHz, character input (lower-case letters, no
    phonemizer, so no espeak), blanks between characters; ``fields`` adds or overrides settings."""
    from TTS.config.shared_configs import BaseAudioConfig
    from TTS.tts.configs.shared_configs import CharactersConfig
    from TTS.tts.configs.vits_config import VitsConfig

    return VitsConfig(
        model_args=args,
        audio=BaseAudioConfig(
            sample_rate=22050, fft_size=1024, win_length=1024, hop_length=256, num_mels=80, mel_fmax=None
        ),
        characters=CharactersConfig(
            characters_class="TTS.tts.models.vits.VitsCharacters",
            characters="abcdefghijklmnopqrstuvwxyz",
            punctuations="!'(),-.:;? ",
            phonemes=None,
            pad="<PAD>",
            eos="<EOS>",
            bos="<BOS>",
            blank="<BLNK>",
            is_unique=True,
            is_sorted=True,
        ),
        use_phonemes=False,
        phonemizer=None,
        text_cleaner="basic_cleaners",
        add_blank=True,
        run_name=run_name,
        output_path="",
        datasets=[],
        **fields,
    )


def _write_vits(folder: Path, speakers: Sequence[str]) -> None:
    from TTS.tts.models.vits import Vits, VitsArgs

    args = VitsArgs(
        hidden_channels=32,
        hidden_channels_ffn_text_encoder=64,
        num_heads_text_encoder=2,
        num_layers_text_encoder=2,
        num_layers_posterior_encoder=2,
        num_layers_flow=2,
        kernel_size_flow=3,
        resblock_type_decoder="2",
        resblock_kernel_sizes_decoder=[3],
        resblock_dilation_sizes_decoder=[[1, 3]],
        upsample_rates_decoder=[8, 8, 4],
        upsample_initial_channel_decoder=32,
        upsample_kernel_sizes_decoder=[16, 16, 8],
        use_sdp=False,
        use_speaker_embedding=True,
        speaker_embedding_channels=16,
        init_discriminator=False,
    )
    config = vits_config(
        args, run_name="soundry-tiny-vits", speakers=list(speakers), use_speaker_embedding=True
    )
    model = Vits.init_from_config(config)
    model.eval()
    config.save_json(str(folder / "config.json"))
    torch.save({"model": model.state_dict(), "step": 0, "epoch": 0}, folder / "model.pth")


def write_tiny_vits(folder: Path, speakers: Sequence[str] = ("alice", "bob")) -> Path:
    """Write a tiny random multi-speaker coqui VITS (22.05 kHz, character input) to ``folder``.

    Args:
        folder: Target folder (created; left alone when already complete).
        speakers: Speaker names, in embedding order.

    Returns:
        ``folder`` holding ``config.json`` and ``model.pth`` for ``TTS(model_path=..., config_path=...)``.
    """
    speakers = tuple(speakers)
    if not speakers:
        raise ValueError("a multi-speaker VITS needs at least one speaker name")
    manifest = {"kind": "vits", "format": FORMAT_VERSION, "seed": SEED, "speakers": list(speakers)}
    return write_atomically(Path(folder), manifest, lambda tmp: _write_vits(tmp, speakers))


# --------------------------------------------------------------------------------------------------
# coqui XTTS-v2
# --------------------------------------------------------------------------------------------------

XTTS_SPECIAL_TOKENS: tuple[str, ...] = ("[STOP]", "[UNK]", "[SPACE]", "[START]")
"""The tokens coqui's ``VoiceBpeTokenizer`` and ``Xtts.init_models`` look up by name."""

_XTTS_CHARACTERS = "".join(
    dict.fromkeys(
        "abcdefghijklmnopqrstuvwxyz"
        "àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿßœ"  # Western European
        "ąćęłńśźżčďěňřšťůžğışőű"  # Polish, Czech, Turkish, Hungarian
        "абвгдеёжзийклмнопрстуфхцчшщъыьэюя"  # Russian
        "0123456789'.,!?;:-\"()"
    )
)
_XTTS_MERGES: tuple[tuple[str, str], ...] = (("t", "h"), ("h", "e"), ("i", "n"), ("e", "r"), ("th", "e"))


def _write_xtts_vocab(path: Path, languages: Sequence[str]) -> None:
    """A character-level BPE ``tokenizers`` file in XTTS' layout.

    ``[STOP]`` is id 0 (XTTS' stop text token), then ``[UNK]``, ``[SPACE]`` (``encode`` writes
    spaces as ``[SPACE]``), ``[START]`` and one ``[<lang>]`` token per language (``encode`` prefixes
    the text with it), all special tokens; then the characters and a few merges. Unknown characters
    become ``[UNK]``, as in XTTS' own vocabulary.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    special = [*XTTS_SPECIAL_TOKENS, *(f"[{lang}]" for lang in languages)]
    vocab: dict[str, int] = {}
    for token in (*special, *_XTTS_CHARACTERS, *(a + b for a, b in _XTTS_MERGES)):
        vocab.setdefault(token, len(vocab))
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=list(_XTTS_MERGES), unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.decoder = decoders.BPEDecoder()
    tokenizer.add_special_tokens(special)
    tokenizer.save(str(path))


def _write_xtts(folder: Path) -> None:
    from TTS.tts.configs.xtts_config import XttsArgs, XttsAudioConfig, XttsConfig
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
    from TTS.tts.models.xtts import Xtts

    args = XttsArgs(
        gpt_layers=2,
        gpt_n_model_channels=64,
        gpt_n_heads=4,
        gpt_max_audio_tokens=XTTS_MAX_AUDIO_TOKENS,
        gpt_max_text_tokens=402,
        gpt_max_prompt_tokens=70,
        gpt_num_audio_tokens=TINY_CODEBOOK_SIZE + 2,
        gpt_start_audio_token=TINY_CODEBOOK_SIZE,
        gpt_stop_audio_token=TINY_CODEBOOK_SIZE + 1,
        gpt_code_stride_len=XTTS_CODE_STRIDE,
        gpt_use_masking_gt_prompt_approach=True,
        gpt_use_perceiver_resampler=True,  # XTTS v2 (v1 has prompt embeddings instead)
        input_sample_rate=XTTS_GPT_SAMPLE_RATE,
        output_sample_rate=XTTS_OUTPUT_SAMPLE_RATE,
        output_hop_length=256,
        decoder_input_dim=64,  # the GPT width: the decoder reads GPT latents
        d_vector_dim=512,  # fixed by coqui: the speaker encoder's projection
        cond_d_vector_in_each_upsampling_layer=True,
    )
    config = XttsConfig(
        model_args=args,
        audio=XttsAudioConfig(
            sample_rate=XTTS_GPT_SAMPLE_RATE,
            output_sample_rate=XTTS_OUTPUT_SAMPLE_RATE,
            dvae_sample_rate=XTTS_GPT_SAMPLE_RATE,
        ),
        run_name="soundry-tiny-xtts",
        output_path="",
        datasets=[],
    )
    _write_xtts_vocab(folder / "vocab.json", config.languages)
    model = Xtts(config)
    # what load_checkpoint does first: read the vocabulary, then build the GPT for its token count
    model.tokenizer = VoiceBpeTokenizer(vocab_file=str(folder / "vocab.json"))
    model.init_models()
    # GPT-2's 0.02-std init and tortoise's zero-initialised attention outputs leave a random GPT
    # nearly deaf to its text and voice prompt; unit-variance layers make both steer the output
    for param in model.gpt.parameters():
        if param.dim() >= 2:
            torch.nn.init.xavier_normal_(param)
    with torch.no_grad():  # never stop early: every sentence gets the whole code budget
        model.gpt.mel_head.bias[args.gpt_stop_audio_token] = -1e4
    config.save_json(str(folder / "config.json"))
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save({"model": state}, folder / "model.pth")


def write_tiny_xtts(folder: Path) -> Path:
    """Write a tiny random XTTS-v2 (2-layer 64-wide GPT, 17 languages, 24 kHz out) to ``folder``.

    Real parts: the tokenizer file format and special tokens, the perceiver conditioning, the
    HiFi-GAN decoder and speaker encoder (both at coqui's fixed real sizes). Each sentence becomes
    ``XTTS_CODES_PER_SENTENCE`` codes, about 0.97 s of audio at speed 1. Weights are stored as
    float16 (coqui casts them to the model's float32 on load).

    Returns:
        ``folder`` holding ``config.json``, ``model.pth`` and ``vocab.json``, loadable with
        ``TTS(model_path=str(folder), config_path=str(folder / "config.json"))``.
    """
    manifest = {"kind": "xtts", "format": FORMAT_VERSION, "seed": SEED}
    return write_atomically(Path(folder), manifest, _write_xtts)
