"""Tiny random-weight checkpoints in each library's exact on-disk format (dev models and tests).

No model hub is reachable from development machines or CI, so the real loaders are exercised on
checkpoints written here: same files, same loader, random weights (the output is noise).

* MusicGen / AudioGen: audiocraft's export format, one folder with ``state_dict.bin`` (LM) and
  ``compression_state_dict.bin`` (EnCodec), each ``{'xp.cfg', 'best_state', 'version', 'exported'}``;
  loaded by ``MusicGen.get_pretrained(folder)`` / ``AudioGen.get_pretrained(folder)``.
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
* Coqui VITS: ``config.json`` + ``model.pth`` (multi-speaker, character input, no phonemizer);
  loaded by ``TTS(model_path=..., config_path=...)``.
* Coqui XTTS-v2: the folder ``Xtts.load_checkpoint`` reads, ``config.json`` + ``model.pth``
  (``{'model': state_dict}``) + ``vocab.json`` (a ``tokenizers`` BPE file with XTTS' special and
  language tokens); loaded by ``TTS(model_path=<folder>, config_path=<folder>/config.json)``. Only the
  GPT is small: coqui 0.28 builds the HiFi-GAN decoder (~14M parameters) and the ResNet speaker
  encoder (~8M) at their real sizes whatever the config says, so the folder holds ~46 MB (float16).

Every writer is deterministic (fixed seed, caller's RNG state untouched), idempotent (a folder
holding a matching ``tiny.json`` manifest is left alone) and atomic (written to a temporary sibling
folder, then moved in place with ``os.replace``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

MANIFEST = "tiny.json"
FORMAT_VERSION = 2
SEED = 1234

#: ``tiny:<name>`` sources and the folder each one gets under ``<models_dir>/dev/``.
TINY_SOURCES: tuple[str, ...] = (
    "musicgen",
    "musicgen-melody",
    "musicgen-stereo",
    "audiogen",
    "vits",
    "xtts",
)

MUSICGEN_WINDOW_S = 30.0
"""Tiny MusicGen training segment; audiocraft's MusicGen needs more than 18 s (its extend stride)."""
AUDIOGEN_WINDOW_S = 10.0
"""AudioGen's real window."""
TINY_CODEBOOK_SIZE = 64

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
# atomic, idempotent folder writing
# --------------------------------------------------------------------------------------------------


def _is_complete(folder: Path, manifest: dict[str, Any]) -> bool:
    try:
        found = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return bool(found == manifest)


def _write_atomically(folder: Path, manifest: dict[str, Any], fill: Callable[[Path], None]) -> Path:
    """Create ``folder`` by filling a temporary sibling and moving it in place.

    Args:
        folder: Final folder.
        manifest: Written last as ``tiny.json``; a folder with an equal manifest counts as complete.
        fill: Writes the checkpoint files into the folder it is given.

    Returns:
        ``folder``.
    """
    folder = Path(folder)
    if _is_complete(folder, manifest):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            fill(tmp)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if folder.exists() and not _is_complete(folder, manifest):
            # stale or half-written by an older version: move it aside, then drop it
            stale = folder.parent / f".{folder.name}.stale-{uuid.uuid4().hex[:8]}"
            os.replace(folder, stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(tmp, folder)
        except OSError:
            # another process finished first (the target is a non-empty folder now)
            if not _is_complete(folder, manifest):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("wrote tiny checkpoint %s", folder)
    return folder


# --------------------------------------------------------------------------------------------------
# audiocraft (MusicGen, AudioGen)
# --------------------------------------------------------------------------------------------------


def _audiocraft_config(
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


def _write_audiocraft(
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
        from workers.backends._audiocraft import local_demucs

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
    cfg = _audiocraft_config(
        sample_rate=32000, ratios=[8, 5, 4, 4], segment_duration=MUSICGEN_WINDOW_S, melody=melody
    )
    lm_cfg = _stereo_lm_config(cfg) if stereo else None
    kind = "musicgen-melody" if melody else "musicgen-stereo" if stereo else "musicgen"
    manifest = {"kind": kind, "format": FORMAT_VERSION, "seed": SEED}
    return _write_atomically(Path(folder), manifest, lambda tmp: _write_audiocraft(tmp, cfg, lm_cfg))


def write_tiny_audiogen(folder: Path) -> Path:
    """Write a tiny random AudioGen (16 kHz mono, 10 s window, 4 codebooks of 64) to ``folder``.

    Returns:
        ``folder``, loadable with ``AudioGen.get_pretrained(str(folder))``.
    """
    cfg = _audiocraft_config(
        sample_rate=16000, ratios=[8, 5, 4, 2], segment_duration=AUDIOGEN_WINDOW_S, melody=False
    )
    manifest = {"kind": "audiogen", "format": FORMAT_VERSION, "seed": SEED}
    return _write_atomically(Path(folder), manifest, lambda tmp: _write_audiocraft(tmp, cfg))


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
    return _write_atomically(Path(folder), manifest, lambda tmp: _write_vits(tmp, speakers))


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
    return _write_atomically(Path(folder), manifest, _write_xtts)


# --------------------------------------------------------------------------------------------------


def ensure_tiny(source: str, models_dir: Path) -> Path:
    """The folder of the tiny checkpoint named by ``source``, written on first use.

    Args:
        source: ``tiny:musicgen``, ``tiny:musicgen-melody``, ``tiny:musicgen-stereo``,
            ``tiny:audiogen``, ``tiny:vits`` or ``tiny:xtts``.
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
    return write_tiny_vits(folder)
