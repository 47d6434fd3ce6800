"""Keyed audio watermark: a 32-bit payload + CRC-16, convolutionally coded, in band-energy contrasts.

Pure numpy/soxr (no torch), so the API process can detect marks too.

Signal features (all at 16 kHz, whatever the input rate):

* Tiles of 250 Hz x 32 ms cover 250-6250 Hz (24 bands). A *chip* is the log-energy contrast of two
  time-adjacent tiles of one band, ``L[b, 2c] - L[b, 2c + 1]`` (dB), minus its mean over the bands
  (cancels gain and broadband onsets), passed through a redescending function so that onsets and
  outliers weigh little. Contrasts do not change with gain, resampling or the codec's delay.
* A *column* is one pair of tiles (64 ms) across the 24 bands; its chips form 4 keyed groups of 6
  (keyed band choice and chip signs). One group per column is a pilot, three carry coded bits.
  36 columns (2.304 s) carry every coded bit once, and the pattern repeats over the whole clip.

Coding: ``payload (32 bits) + CRC-16 (16 bits, keyed)`` through a rate-1/2, K=7 convolutional code
(108 coded bits, soft-decision Viterbi).

Embedding is *informed* (spread-transform dither modulation): the sum of a group's chips is moved to
the nearest point of a keyed lattice (step ``step_db``) that stands for its bit, so the host's own
contrasts do not interfere. The change is made by per-tile gains on the STFT (shaped by the host's own
spectrum), in closed-loop rounds that measure what the detector will see, within a power budget of
``target_snr_db`` below the host for each 0.5 s window. The residual is computed at 16 kHz and added
to the original at its own rate, so content above 8 kHz and the original samples elsewhere are kept.

Detection folds every period in the clip into soft values (cosine of the lattice phase, weighted by how
far the tiles are above a level floor), searches 288 alignments (8 ms steps over a period) with the
pilot, refines the best ones to 1 ms, decodes them, and reports a payload only when the pilot score
reaches :data:`PILOT_THRESHOLD` and the keyed CRC matches.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt
import soxr

from gen_server.audio.types import Audio

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DEFAULT_KEY: Final[bytes] = b"soundry-default-watermark-key-v1"
"""Used when no key is configured; deployments should set their own (a setting, later)."""

FS: Final[int] = 16000
N_FFT: Final[int] = 256
HOP: Final[int] = 128
LO_BIN: Final[int] = 4
BAND_BINS: Final[int] = 4
N_BANDS: Final[int] = 24
TILE_HOPS: Final[int] = 4
GROUP_SIZE: Final[int] = 6
GROUPS_PER_COLUMN: Final[int] = N_BANDS // GROUP_SIZE
COLUMNS: Final[int] = 36
PERIOD_TILES: Final[int] = 2 * COLUMNS
PERIOD_S: Final[float] = PERIOD_TILES * TILE_HOPS * HOP / FS

PAYLOAD_BITS: Final[int] = 32
CRC_BITS: Final[int] = 16
INFO_BITS: Final[int] = PAYLOAD_BITS + CRC_BITS
CONSTRAINT: Final[int] = 7
GENERATORS: Final[tuple[int, int]] = (0o133, 0o171)
CODED_BITS: Final[int] = (INFO_BITS + CONSTRAINT - 1) * len(GENERATORS)

TARGET_SNR_DB: Final[float] = 26.0
STEP_DB: Final[float] = 8.0
PILOT_THRESHOLD: Final[float] = 4.0
FLOOR_DB: Final[float] = 25.0
NOISE_PERCENTILE: Final[float] = 3.0
TILE_NOISE_DB2: Final[float] = 5.0
CODEC_NOISE_DB2: Final[float] = 0.1
VAR_SCALE_DB2: Final[float] = 4.0
CLIP_DB: Final[float] = 6.0
PSI_SCALE_DB: Final[float] = 4.0
EFFICIENCY: Final[float] = 0.75
MAX_PUSH_DB: Final[float] = 8.0
MAX_STEP_DB: Final[float] = 3.0
BUDGET_COLUMNS: Final[int] = 8
SUBSTEPS: Final[int] = 4
SEARCH_S: Final[float] = 9.3
SEARCH_SLACK: Final[float] = 1.0
CANDIDATES: Final[int] = 3
MAX_DECODES: Final[int] = 3

if COLUMNS * (GROUPS_PER_COLUMN - 1) != CODED_BITS:  # pragma: no cover - layout sanity
    raise RuntimeError("the period must hold each coded bit exactly once")


@dataclass(frozen=True, slots=True)
class Detection:
    """Result of :meth:`Watermarker.detect`.

    Attributes:
        detected: A payload was recovered (pilot score above threshold and CRC intact).
        payload: The 32-bit payload, or ``None``.
        confidence: Pilot correlation score of the best alignment: about N(0, 1) on unmarked audio,
            up to ``sqrt(36 * periods)`` on an intact mark.
        offset_s: Where a watermark period starts in the input (s), when detected.
        bit_errors: Coded bits whose soft decision disagreed with the decoded codeword, when detected.
    """

    detected: bool
    payload: int | None
    confidence: float
    offset_s: float | None = None
    bit_errors: int | None = None


class Watermarker(Protocol):
    """Embeds and detects a 32-bit payload."""

    def embed(self, audio: Audio, payload: int) -> Audio: ...

    def detect(self, audio: Audio) -> Detection: ...


def payload_for_job(job_id: str, key: bytes = DEFAULT_KEY) -> int:
    """32-bit payload for a job: the first 4 bytes of HMAC-SHA256(key, job_id), big-endian."""
    digest = hmac.new(key, job_id.encode("utf-8"), hashlib.sha256).digest()
    return int.from_bytes(digest[:4], "big")


# ------------------------------------------------------------------------------------ CRC and code


def crc16(data: bytes, init: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021) of ``data``."""
    crc = init
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def _bits(value: int, n: int) -> IntArray:
    return np.array([(value >> (n - 1 - i)) & 1 for i in range(n)], dtype=np.int64)


def _from_bits(bits: npt.ArrayLike) -> int:
    out = 0
    for b in np.asarray(bits, dtype=np.int64).tolist():
        out = (out << 1) | int(b)
    return out


class _ConvCode:
    """Rate-1/2, K=7 convolutional code (133, 171 octal), zero tail, soft-decision Viterbi decoder."""

    def __init__(self) -> None:
        n_states = 1 << (CONSTRAINT - 1)
        self.n_states = n_states
        nxt = np.zeros((n_states, 2), dtype=np.int64)
        out = np.zeros((n_states, 2, len(GENERATORS)), dtype=np.int64)
        for s in range(n_states):
            for u in (0, 1):
                reg = (u << (CONSTRAINT - 1)) | s
                nxt[s, u] = reg >> 1
                for g, poly in enumerate(GENERATORS):
                    out[s, u, g] = bin(reg & poly).count("1") & 1
        self.next_state = nxt
        self.outputs = out
        self.prev = np.zeros((n_states, 2), dtype=np.int64)
        self.prev_input = np.zeros(n_states, dtype=np.int64)
        count = np.zeros(n_states, dtype=np.int64)
        for p in range(n_states):
            for u in (0, 1):
                s = nxt[p, u]
                self.prev[s, count[s]] = p
                self.prev_input[s] = u
                count[s] += 1
        # bipolar outputs (+1 for bit 0) of the branch into state s from prev[s, i]: [states, 2, outputs]
        self.branch_sign = 1.0 - 2.0 * out[self.prev, self.prev_input[:, None]]

    def encode(self, bits: IntArray) -> IntArray:
        state = 0
        coded: list[int] = []
        for u in [*bits.tolist(), *([0] * (CONSTRAINT - 1))]:
            coded.extend(self.outputs[state, u].tolist())
            state = int(self.next_state[state, u])
        return np.array(coded, dtype=np.int64)

    def decode(self, soft: FloatArray) -> IntArray:
        """Maximum-likelihood info bits.

        Args:
            soft: ``[CODED_BITS]`` soft values, positive meaning coded bit 0.

        Returns:
            ``[INFO_BITS]`` bits.
        """
        steps = soft.size // len(GENERATORS)
        sv = soft.reshape(steps, len(GENERATORS))
        metric = np.full(self.n_states, -np.inf)
        metric[0] = 0.0
        choice = np.zeros((steps, self.n_states), dtype=np.int64)
        for t in range(steps):
            cand = metric[self.prev] + self.branch_sign @ sv[t]
            pick = np.argmax(cand, axis=1)
            choice[t] = pick
            metric = cand[np.arange(self.n_states), pick]
        state = 0  # the zero tail ends in state 0
        bits = np.zeros(steps, dtype=np.int64)
        for t in range(steps - 1, -1, -1):
            bits[t] = self.prev_input[state]
            state = int(self.prev[state, choice[t, state]])
        return bits[:INFO_BITS]


_CODE = _ConvCode()


# ------------------------------------------------------------------------------------ features

_WINDOW: Final[FloatArray] = np.hanning(N_FFT + 1)[:-1]


def _to_mono16(audio: Audio) -> FloatArray:
    mono = audio.samples.astype(np.float64).mean(axis=0)
    if audio.sample_rate != FS and mono.size:
        mono = np.asarray(soxr.resample(mono, audio.sample_rate, FS, quality="HQ"), dtype=np.float64)
    return mono


def _stft(x: FloatArray) -> npt.NDArray[np.complex128]:
    """``[frames, N_FFT // 2 + 1]`` STFT; frame ``f`` covers samples ``[f * HOP, f * HOP + N_FFT)``."""
    n_frames = 1 + (x.size - N_FFT) // HOP if x.size >= N_FFT else 0
    if n_frames == 0:
        return np.zeros((0, N_FFT // 2 + 1), dtype=np.complex128)
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP][:n_frames]
    return np.fft.rfft(frames * _WINDOW, axis=1)


def _istft(spec: npt.NDArray[np.complex128], length: int) -> FloatArray:
    """Weighted overlap-add inverse of :func:`_stft`, ``length`` samples."""
    frames = np.fft.irfft(spec, n=N_FFT, axis=1) * _WINDOW
    step = N_FFT // HOP
    total = max(length, spec.shape[0] * HOP + N_FFT) + N_FFT
    out = np.zeros(total)
    norm = np.zeros(total)
    for i in range(step):
        part = frames[i::step]
        n = part.shape[0]
        start = i * HOP
        out[start : start + n * N_FFT] += part.reshape(-1)
        norm[start : start + n * N_FFT] += np.tile(_WINDOW**2, n)
    norm[norm < 1e-8] = 1.0
    return (out / norm)[:length]


def _band_energy(spec: npt.NDArray[np.complex128]) -> FloatArray:
    """``[N_BANDS, frames]`` energy per band and STFT frame."""
    part = spec[:, LO_BIN : LO_BIN + N_BANDS * BAND_BINS]
    p = part.real**2 + part.imag**2
    return np.ascontiguousarray(p.reshape(p.shape[0], N_BANDS, BAND_BINS).sum(axis=2).T)


def _tile_energy(band: FloatArray, offset: int) -> FloatArray:
    """``[N_BANDS, tiles]`` energy of ``TILE_HOPS``-frame tiles starting at frame ``offset``."""
    usable = max(0, (band.shape[1] - offset) // TILE_HOPS)
    part = band[:, offset : offset + usable * TILE_HOPS]
    return part.reshape(N_BANDS, usable, TILE_HOPS).sum(axis=2)


def _raw_contrasts(tiles: FloatArray) -> FloatArray:
    """``[..., N_BANDS, tiles - 1]`` contrast of tiles ``k`` and ``k + 1`` minus its band mean (dB).

    The floor under each tile is ``FLOOR_DB`` below the mean tile energy of the two tiles' time span,
    so the value depends on nothing outside these 64 ms (crops and gain leave it unchanged).
    """
    a, b = tiles[..., :-1], tiles[..., 1:]
    floor = 0.5 * (a + b).mean(axis=-2, keepdims=True) * 10 ** (-FLOOR_DB / 10) + 1e-30
    d = 10.0 * np.log10((a + floor) / (b + floor))
    return d - np.clip(d, -CLIP_DB, CLIP_DB).mean(axis=-2, keepdims=True)


def _psi(d: FloatArray) -> FloatArray:
    """Redescending chip value: linear near 0, fading beyond ``PSI_SCALE_DB`` (onsets, outliers)."""
    return d * np.exp(-0.5 * (d / PSI_SCALE_DB) ** 2)


def _dpsi(d: FloatArray) -> FloatArray:
    r = (d / PSI_SCALE_DB) ** 2
    return (1.0 - r) * np.exp(-0.5 * r)


def _noise_floor(tiles: FloatArray) -> FloatArray:
    """``[N_BANDS, 1]`` estimate of the noise under the signal in each band: a low percentile of the
    excerpt's tile energies (pauses expose it; for dense signals it errs high, which only evens out
    the weights)."""
    if tiles.shape[-1] == 0:
        return np.zeros((N_BANDS, 1))
    return np.asarray(np.percentile(tiles, NOISE_PERCENTILE, axis=-1, keepdims=True))


def _chip_features(tiles: FloatArray, noise: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Chip values, liveness and noise variance, each ``[..., N_BANDS, tiles - 1]``.

    * value: :func:`_psi` of :func:`_raw_contrasts`;
    * liveness in [0, 1]: how far the chip's tiles stand above their floor (0: silence, where the mark
      cannot be);
    * variance (dB^2): what noise at ``noise`` (per band) adds to the chip, about ``TILE_NOISE_DB2``
      times each tile's noise-to-signal ratio, plus ``CODEC_NOISE_DB2``.
    """
    a, b = tiles[..., :-1], tiles[..., 1:]
    floor = 0.5 * (a + b).mean(axis=-2, keepdims=True) * 10 ** (-FLOOR_DB / 10) + 1e-30
    d = 10.0 * np.log10((a + floor) / (b + floor))
    d = d - np.clip(d, -CLIP_DB, CLIP_DB).mean(axis=-2, keepdims=True)
    la, lb = a / (a + floor), b / (b + floor)
    var = TILE_NOISE_DB2 * (la**2 * noise / (a + floor) + lb**2 * noise / (b + floor)) + CODEC_NOISE_DB2
    return _psi(d), 0.5 * (la + lb), var


# ------------------------------------------------------------------------------------ layout


class _Layout:
    """Keyed layout: which chips form each group, chip signs, dithers, pilot bits and bit scrambling.

    Chip ``(band, column)``; group ``(column, g)`` with ``g == 0`` the pilot and ``g = 1..3`` data
    slots, each holding one coded bit (a keyed permutation interleaves the code over the period).
    """

    def __init__(self, key: bytes, step_db: float) -> None:
        seed = int.from_bytes(hashlib.sha256(b"soundry-wm-layout:" + key).digest()[:8], "big")
        rng = np.random.default_rng(seed)
        self.step = step_db
        # matrix[j] maps the 24 chips of pattern column j to its 4 group sums, with chip signs
        matrix = np.zeros((COLUMNS, N_BANDS, GROUPS_PER_COLUMN))
        group = np.zeros((COLUMNS, N_BANDS), dtype=np.int64)
        for j in range(COLUMNS):
            bands = rng.permutation(N_BANDS)
            signs = rng.choice([-1.0, 1.0], size=N_BANDS)
            for g in range(GROUPS_PER_COLUMN):
                members = bands[g * GROUP_SIZE : (g + 1) * GROUP_SIZE]
                matrix[j, members, g] = signs[members]
                group[j, members] = g
        self.matrix = matrix
        self.chip_sign = matrix.sum(axis=2)  # [COLUMNS, N_BANDS]
        self.chip_group = group
        self.dither = rng.uniform(0.0, step_db, size=(COLUMNS, GROUPS_PER_COLUMN))
        self.pilot_bits = rng.integers(0, 2, size=COLUMNS)
        self.scramble = rng.integers(0, 2, size=(COLUMNS, GROUPS_PER_COLUMN))
        perm = rng.permutation(CODED_BITS)
        self.slot_bit = np.full((COLUMNS, GROUPS_PER_COLUMN), -1, dtype=np.int64)
        self.slot_bit[:, 1:] = perm.reshape(COLUMNS, GROUPS_PER_COLUMN - 1)
        self.crc_mask = int.from_bytes(hashlib.sha256(b"soundry-wm-crc:" + key).digest()[:2], "big")

    def info_bits(self, payload: int) -> IntArray:
        crc = crc16(payload.to_bytes(4, "big")) ^ self.crc_mask
        return np.concatenate([_bits(payload, PAYLOAD_BITS), _bits(crc, CRC_BITS)])

    def check(self, info: IntArray) -> int | None:
        payload = _from_bits(info[:PAYLOAD_BITS])
        crc = _from_bits(info[PAYLOAD_BITS:])
        return payload if crc == crc16(payload.to_bytes(4, "big")) ^ self.crc_mask else None

    def group_bits(self, payload: int) -> IntArray:
        """``[COLUMNS, GROUPS_PER_COLUMN]`` bit each group carries (pilot or scrambled coded bit)."""
        coded = _CODE.encode(self.info_bits(payload))
        bits = np.where(self.slot_bit >= 0, coded[np.maximum(self.slot_bit, 0)] ^ self.scramble, 0)
        bits[:, 0] = self.pilot_bits
        return bits

    @cached_property
    def flat_matrix(self) -> FloatArray:
        """``[N_BANDS, COLUMNS * GROUPS_PER_COLUMN]``: chips to group sums for every pattern column."""
        return np.ascontiguousarray(self.matrix.transpose(1, 0, 2).reshape(N_BANDS, -1))

    @cached_property
    def abs_flat_matrix(self) -> FloatArray:
        return np.abs(self.flat_matrix)

    @cached_property
    def pilot_sign(self) -> FloatArray:
        return 1.0 - 2.0 * self.pilot_bits

    @cached_property
    def data_sign(self) -> FloatArray:
        """``[COLUMNS, GROUPS_PER_COLUMN - 1]`` sign undoing the scrambling of each data slot."""
        return 1.0 - 2.0 * self.scramble[:, 1:]


# ------------------------------------------------------------------------------------ watermarker


class KeyedWatermarker:
    """The project's DSP watermark, keyed by a secret (see the module docstring).

    Args:
        key: Secret key; detection only finds marks embedded with the same key.
        target_snr_db: Host-to-watermark power ratio the result keeps at least (dB), in every 0.5 s
            window as well as overall.
        step_db: Lattice step of the group sums (dB of contrast); larger is more robust and louder.
        iterations: Closed-loop embedding rounds.
    """

    def __init__(
        self,
        key: bytes = DEFAULT_KEY,
        *,
        target_snr_db: float = TARGET_SNR_DB,
        step_db: float = STEP_DB,
        iterations: int = 6,
    ) -> None:
        if not key:
            raise ValueError("watermark key must not be empty")
        self.key = key
        self.target_snr_db = target_snr_db
        self.step_db = step_db
        self.iterations = iterations
        self._layout = _Layout(key, step_db)

    # -- embedding -------------------------------------------------------------------------------

    def embed(self, audio: Audio, payload: int) -> Audio:
        """Add a watermark carrying ``payload``.

        Args:
            audio: ``[channels, frames]`` audio at any rate. The same residual goes into every channel.
                Clips shorter than one period (2.3 s) carry part of the mark only.
            payload: Unsigned 32-bit integer.

        Returns:
            Marked audio, same shape and rate, at least ``target_snr_db`` above the added residual.

        Raises:
            ValueError: ``payload`` out of range.
        """
        if not 0 <= payload < 2**32:
            raise ValueError(f"payload must fit in 32 bits, got {payload}")
        if audio.frames == 0:
            return audio
        host = _to_mono16(audio)
        power = float(np.mean(audio.samples.astype(np.float64) ** 2))
        residual16 = self._residual(host, payload, power * 10 ** (-self.target_snr_db / 10))
        if not np.any(residual16):
            return audio
        residual = residual16
        if audio.sample_rate != FS:
            residual = np.asarray(soxr.resample(residual16, FS, audio.sample_rate, quality="HQ"))
        residual = np.pad(residual, (0, max(0, audio.frames - residual.size)))[: audio.frames]
        marked = audio.samples.astype(np.float64) + residual[None, :]
        return Audio(marked.astype(np.float32), audio.sample_rate)

    def _residual(self, host: FloatArray, payload: int, max_power: float) -> FloatArray:
        """Residual at 16 kHz (same length as ``host``) with mean power at most ``max_power``."""
        spec = _stft(host)
        tiles = _tile_energy(_band_energy(spec), 0)
        pairs = tiles.shape[1] // 2
        if pairs == 0 or max_power <= 0 or not np.any(tiles):
            return np.zeros_like(host)
        lay = self._layout
        step = self.step_db
        cols = np.arange(pairs) % COLUMNS
        matrix = lay.matrix[cols]  # [pairs, bands, groups]
        chip_sign = lay.chip_sign[cols].T  # [bands, pairs]
        chip_group = lay.chip_group[cols].T  # [bands, pairs]
        target_phase = (lay.dither + step / 2 * lay.group_bits(payload))[cols]  # [pairs, groups]
        inst = (np.arange(pairs)[None, :] * GROUPS_PER_COLUMN + chip_group).reshape(-1)
        n_inst = pairs * GROUPS_PER_COLUMN

        # budget windows of BUDGET_COLUMNS columns, each with its share of the host's energy
        win_of_inst = np.arange(n_inst) // (GROUPS_PER_COLUMN * BUDGET_COLUMNS)
        n_win = int(win_of_inst[-1]) + 1
        col_len = 2 * TILE_HOPS * HOP
        energy = np.pad(host**2, (0, max(0, n_win * BUDGET_COLUMNS * col_len - host.size)))
        win_energy = energy[: n_win * BUDGET_COLUMNS * col_len].reshape(n_win, -1).sum(axis=1)
        win_share = win_energy / max(float(win_energy.sum()), 1e-30)

        k_cost = (math.log(10) / 20) ** 2 / 4  # model cost of a chip push p (dB): (Ea + Eb) * k * p**2
        w = ((tiles[:, 0 : 2 * pairs : 2] + tiles[:, 1 : 2 * pairs : 2]) * k_cost).reshape(-1) + 1e-30
        push = np.zeros(N_BANDS * pairs)
        gain_db = np.zeros_like(tiles)
        ratio = math.nan  # actual residual power per unit of model cost
        cur = tiles
        for it in range(self.iterations):
            raw = _raw_contrasts(cur[:, : 2 * pairs])[:, 0::2]  # [bands, pairs]
            sums = np.einsum("bp,pbg->pg", _psi(raw), matrix)
            # distance to the nearest lattice point of the group's bit, in [-step/2, step/2)
            err = ((target_phase - sums + step / 2) % step - step / 2).reshape(-1)
            ea, eb = cur[:, 0 : 2 * pairs : 2], cur[:, 1 : 2 * pairs : 2]
            floor = 0.5 * (ea + eb).mean(axis=0, keepdims=True) * 10 ** (-FLOOR_DB / 10) + 1e-30
            live = 0.5 * (ea / (ea + floor) + eb / (eb + floor))
            resp = (EFFICIENCY * live * _dpsi(raw) * chip_sign).reshape(-1)  # d(sum) / d(push)
            q = np.bincount(inst, weights=resp**2 / w, minlength=n_inst)
            need = (np.abs(err) > 0.02 * step) & (q > 0)
            full = np.where(need, err / np.maximum(q, 1e-300), 0.0)[inst] * resp / w
            full = np.clip(full, -MAX_STEP_DB, MAX_STEP_DB)
            if math.isnan(ratio):  # calibrate model cost against the real residual once
                trial = self._synth(spec, self._gains(full, pairs, tiles.shape[1]), host.size)
                model = float(np.sum(w * full**2))
                ratio = float(np.mean(trial**2)) / model if model > 0 else 1.0
            room = max_power / max(ratio, 1e-30) * win_share - np.bincount(
                win_of_inst[inst], weights=w * push**2, minlength=n_win
            )
            alpha = self._fractions(full, push, w, inst, err, need, win_of_inst, room, n_inst)
            push = np.clip(push + alpha[inst] * full, -MAX_PUSH_DB, MAX_PUSH_DB)
            gain_db = self._gains(push, pairs, tiles.shape[1])
            if it + 1 < self.iterations:
                residual = self._synth(spec, gain_db, host.size)
                actual, model = float(np.mean(residual**2)), float(np.sum(w * push**2))
                if actual > 0 and model > 0:
                    ratio = actual / model
                cur = _tile_energy(_band_energy(_stft(host + residual)), 0)
        residual = self._synth(spec, gain_db, host.size)
        power = float(np.mean(residual**2))
        if power > max_power:
            residual *= math.sqrt(max_power / power)
        return residual

    @staticmethod
    def _gains(push: FloatArray, pairs: int, n_tiles: int) -> FloatArray:
        """Per-tile gains (dB, ``[N_BANDS, n_tiles]``) for chip pushes (dB of contrast)."""
        gain_db = np.zeros((N_BANDS, n_tiles))
        gain_db[:, 0 : 2 * pairs : 2] = push.reshape(N_BANDS, pairs) / 2
        gain_db[:, 1 : 2 * pairs : 2] = -push.reshape(N_BANDS, pairs) / 2
        return gain_db

    @staticmethod
    def _fractions(
        full: FloatArray,
        push: FloatArray,
        w: FloatArray,
        inst: IntArray,
        err: FloatArray,
        need: npt.NDArray[np.bool_],
        win_of_inst: IntArray,
        room: FloatArray,
        n_inst: int,
    ) -> FloatArray:
        """Fraction in [0, 1] of each group's full move to take so every window stays in budget.

        The fraction ``1 / (1 + lam * c)`` (``c``: cost per unit of squared move) equalises the
        marginal gain in soft value per unit of cost; ``lam`` is found per window by bisection.
        """
        a = np.bincount(inst, weights=w * full**2, minlength=n_inst)
        b = np.bincount(inst, weights=w * push * full, minlength=n_inst)
        c = np.where(need, a / np.maximum(err**2, 1e-12), 0.0)
        n_win = room.size

        def spend(log_lam: FloatArray) -> FloatArray:
            frac = np.where(need, 1.0 / (1.0 + np.exp(log_lam[win_of_inst]) * c), 0.0)
            return np.bincount(win_of_inst, weights=frac**2 * a + 2 * frac * b, minlength=n_win)

        lo = np.full(n_win, -30.0)
        hi = np.full(n_win, 30.0)
        free = spend(lo) <= room
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            over = spend(mid) > room
            lo = np.where(over, mid, lo)
            hi = np.where(over, hi, mid)
        log_lam = np.where(free, -30.0, hi)
        frac = np.where(need, 1.0 / (1.0 + np.exp(log_lam[win_of_inst]) * c), 0.0)
        return np.where(room[win_of_inst] > 0, frac, 0.0)

    @staticmethod
    def _synth(spec: npt.NDArray[np.complex128], gain_db: FloatArray, length: int) -> FloatArray:
        """Residual of applying per-tile gains (dB, ``[N_BANDS, tiles]``) to the host's STFT."""
        n_frames = spec.shape[0]
        frame_gain = np.zeros((N_BANDS, n_frames))
        used = min(n_frames, gain_db.shape[1] * TILE_HOPS)
        frame_gain[:, :used] = np.repeat(gain_db, TILE_HOPS, axis=1)[:, :used]
        cell = np.zeros((n_frames, spec.shape[1]))
        cell[:, LO_BIN : LO_BIN + N_BANDS * BAND_BINS] = np.repeat((10 ** (frame_gain / 20) - 1.0).T, BAND_BINS, 1)
        return _istft(spec * cell, length)

    # -- detection -------------------------------------------------------------------------------

    def _group_soft(
        self, values: FloatArray, live: FloatArray, var: FloatArray, columns: IntArray | None = None
    ) -> FloatArray:
        """Soft value (positive: bit 0) of groups from chip features ``[..., N_BANDS, n]``.

        With ``columns`` (``[n]`` pattern column of each tile pair): ``[..., n, GROUPS_PER_COLUMN]``
        for those columns. Without: every pattern column at every position,
        ``[..., COLUMNS * GROUPS_PER_COLUMN, n]``.
        """
        lay = self._layout
        if columns is None:
            flat = lay.flat_matrix  # [bands, COLUMNS * groups]
            lead = values.shape[:-2]
            n = values.shape[-1]

            def project(m: FloatArray, x: FloatArray) -> FloatArray:
                # one 2-D product (BLAS) instead of a broadcast batch of small ones
                x2 = np.moveaxis(x, -2, 0).reshape(N_BANDS, -1)
                return np.moveaxis((m.T @ x2).reshape(-1, *lead, n), 0, -2)

            sums = project(flat, values)
            group_var = project(lay.abs_flat_matrix, var)
            group_live = project(lay.abs_flat_matrix, live) / GROUP_SIZE
            dither = lay.dither.reshape(-1, 1)
        else:
            m = lay.matrix[columns]  # [n, bands, groups]
            sums = np.einsum("...bn,nbg->...ng", values, m)
            group_var = np.einsum("...bn,nbg->...ng", var, np.abs(m))
            group_live = np.einsum("...bn,nbg->...ng", live, np.abs(m)) / GROUP_SIZE
            dither = lay.dither[columns]
        weight = group_live / (1.0 + group_var / VAR_SCALE_DB2)
        return np.asarray(weight * np.cos(2 * np.pi / lay.step * (sums - dither)))

    def _search(self, host: FloatArray, noise: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Pilot scores ``[TILE_HOPS * SUBSTEPS, PERIOD_TILES]`` of every alignment on a 2 ms grid, and
        the folded soft values ``[TILE_HOPS * SUBSTEPS, PERIOD_TILES, 2, COLUMNS, groups]`` (sums and
        sums of squares).

        Alignment ``(d, s)``: a period starts at sample ``d * HOP // SUBSTEPS + ((-s) % PERIOD_TILES)
        * TILE_HOPS * HOP``. One STFT with hop ``HOP // SUBSTEPS`` gives the tiles of every sub-hop
        offset ``d`` (every ``SUBSTEPS``-th frame is the embedder's frame grid shifted by ``d``).
        """
        fine = HOP // SUBSTEPS
        n_frames = 1 + (host.size - N_FFT) // fine
        frames = np.lib.stride_tricks.sliding_window_view(host, N_FFT)[::fine][:n_frames]
        band = _band_energy(np.fft.rfft(frames * _WINDOW, axis=1)).astype(np.float32)  # [bands, frames]
        span = SUBSTEPS * (TILE_HOPS - 1)
        g = sum(band[:, i * SUBSTEPS : band.shape[1] - span + i * SUBSTEPS] for i in range(TILE_HOPS))
        per_tile = TILE_HOPS * SUBSTEPS
        k = g.shape[1] // per_tile
        tiles = g[:, : k * per_tile].reshape(N_BANDS, k, per_tile).transpose(2, 0, 1)  # [d, bands, k]
        values, live, var = _chip_features(tiles, noise)
        soft = self._group_soft(values, live, var)  # [d, COLUMNS * groups, k - 1]
        both = np.stack([soft, soft**2], axis=1)  # [d, 2, COLUMNS * groups, k - 1]
        whole = both.shape[-1] // PERIOD_TILES * PERIOD_TILES
        folded = both[..., :whole].reshape(per_tile, 2, -1, whole // PERIOD_TILES, PERIOD_TILES).sum(axis=3)
        rest = both.shape[-1] - whole
        if rest:
            folded[..., :rest] += both[..., whole:]
        folded = folded.reshape(per_tile, 2, COLUMNS, GROUPS_PER_COLUMN, PERIOD_TILES)
        folded = folded.transpose(0, 1, 3, 2, 4)  # [d, 2, g, j, k % P]
        idx = (2 * np.arange(COLUMNS)[None, :] - np.arange(PERIOD_TILES)[:, None]) % PERIOD_TILES  # [s, j]
        picked = folded[..., np.arange(COLUMNS)[None, :], idx]  # [d, 2, g, s, j]
        softs = picked.transpose(0, 3, 1, 4, 2)  # [d, s, 2, j, g]
        return self._pilot_score(softs), softs

    def _fold_at(self, host: FloatArray, start: int, noise: FloatArray) -> FloatArray:
        """Folded ``[2, COLUMNS, groups]`` soft values for a period starting at sample ``start``."""
        period = PERIOD_TILES * TILE_HOPS * HOP
        lead = start % period % (TILE_HOPS * HOP)
        tiles = _tile_energy(_band_energy(_stft(host[lead:])), 0)
        out = np.zeros((2, COLUMNS, GROUPS_PER_COLUMN))
        pairs = (tiles.shape[1] // 2) if tiles.shape[1] >= 2 else 0
        first_tile = (start % period - lead) // (TILE_HOPS * HOP)  # pattern tile 0 sits at this tile
        # tile t holds pattern tile (t - first_tile) % PERIOD_TILES; pairs start on even pattern tiles
        parity = first_tile % 2
        t = np.arange(parity, tiles.shape[1] - 1, 2)
        if pairs == 0 or t.size == 0:
            return out
        columns = ((t - first_tile) % PERIOD_TILES) // 2
        values, live, var = _chip_features(tiles, noise)
        soft = self._group_soft(values[:, t], live[:, t], var[:, t], columns)  # [m, groups]
        np.add.at(out[0], columns, soft)
        np.add.at(out[1], columns, soft**2)
        return out

    def _decode(self, soft: FloatArray) -> tuple[int | None, int]:
        """Viterbi-decode folded soft values; (payload if the CRC holds, coded-bit disagreements)."""
        lay = self._layout
        data = soft[0, :, 1:] * lay.data_sign  # [COLUMNS, groups - 1]
        coded_soft = np.zeros(CODED_BITS)
        coded_soft[lay.slot_bit[:, 1:].reshape(-1)] = data.reshape(-1)
        info = _CODE.decode(coded_soft)
        errors = int(np.sum((coded_soft < 0) != (_CODE.encode(info) == 1)))
        return lay.check(info), errors

    def _pilot_score(self, soft: FloatArray) -> FloatArray:
        """Pilot z-score: folded pilot soft values against the pilot bits over their null deviation."""
        num = soft[..., 0, :, 0] @ self._layout.pilot_sign
        den = np.sqrt(np.sum(soft[..., 1, :, 0], axis=-1)) + 1e-12
        return np.asarray(num / den)

    def detect(self, audio: Audio) -> Detection:
        """Look for this key's watermark.

        Args:
            audio: ``[channels, frames]`` audio at any rate and gain; 3 s or more is best.

        Returns:
            The detection; ``payload`` is set only when ``detected``.
        """
        host = _to_mono16(audio)
        if host.size < N_FFT + 3 * TILE_HOPS * HOP or not np.any(host):
            return Detection(False, None, 0.0)
        noise = _noise_floor(_tile_energy(_band_energy(_stft(host)), 0))
        searched = host[: int(SEARCH_S * FS)]
        scores, softs = self._search(searched, noise)
        order = np.argsort(-scores, axis=None)[:CANDIDATES]
        period = PERIOD_TILES * TILE_HOPS * HOP
        best = float(scores.reshape(-1)[order[0]])
        decoded = 0
        for rank, flat_index in enumerate(order):
            d, s = (int(v) for v in np.unravel_index(int(flat_index), scores.shape))
            if scores[d, s] < PILOT_THRESHOLD - SEARCH_SLACK:
                break
            start = (d * (HOP // SUBSTEPS) + ((-s) % PERIOD_TILES) * TILE_HOPS * HOP) % period
            soft = softs[d, s].astype(np.float64) if searched.size == host.size else self._fold_at(host, start, noise)
            score = float(self._pilot_score(soft))
            if rank == 0:  # the grid is 2 ms: look 1 ms either side of the best alignment
                for shift in (-HOP // SUBSTEPS // 2, HOP // SUBSTEPS // 2):
                    other = self._fold_at(host, start + shift, noise)
                    other_score = float(self._pilot_score(other))
                    if other_score > score:
                        score, start, soft = other_score, start + shift, other
            best = max(best, score)
            if score < PILOT_THRESHOLD:
                continue
            payload, errors = self._decode(soft)
            decoded += 1
            if payload is not None:
                return Detection(True, payload, score, (start % period) / FS, errors)
            if decoded >= MAX_DECODES:
                break
        return Detection(False, None, best)
