"""Waveform and spectrogram pictures of a clip, drawn with numpy and Pillow (no torch, no matplotlib)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

BACKGROUND = (17, 24, 39)
WAVE_COLOUR = (96, 165, 250)
# Anchor colours of a perceptually ordered map (dark violet -> orange -> pale yellow), like "magma".
_ANCHORS = np.array(
    [(0, 0, 4), (40, 11, 84), (101, 21, 110), (159, 42, 99), (212, 72, 66), (245, 125, 21), (252, 255, 164)],
    dtype=np.float32,
)


def to_mono(samples: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """``[frames]`` or ``[frames, channels]`` (soundfile's layout) to a mono ``[frames]`` float32 array."""
    data = np.asarray(samples, dtype=np.float32)
    return data.mean(axis=1) if data.ndim == 2 else data


def waveform_image(samples: npt.NDArray[np.floating], width: int = 800, height: int = 160) -> Image.Image:
    """Min/max envelope per pixel column of ``samples`` (values in [-1, 1]) as an RGB image."""
    mono = to_mono(samples)
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    mid = (height - 1) / 2
    draw.line([(0, mid), (width - 1, mid)], fill=(55, 65, 81))
    if mono.size == 0:
        return image
    edges = np.linspace(0, mono.size, width + 1).astype(np.int64)
    for x in range(width):
        lo, hi = edges[x], max(edges[x + 1], edges[x] + 1)
        chunk = mono[lo : min(hi, mono.size)]
        if chunk.size == 0:
            continue
        top = mid - float(np.clip(chunk.max(), -1, 1)) * mid
        bottom = mid - float(np.clip(chunk.min(), -1, 1)) * mid
        draw.line([(x, top), (x, bottom)], fill=WAVE_COLOUR)
    return image


def spectrogram_db(
    samples: npt.NDArray[np.floating], n_fft: int = 1024, max_frames: int = 800, floor_db: float = -80.0
) -> npt.NDArray[np.float32]:
    """Magnitude spectrogram in dB relative to its peak, ``[n_fft // 2 + 1, frames]``, clipped at
    ``floor_db``. The hop is chosen so at most ``max_frames`` frames are computed."""
    mono = to_mono(samples)
    if mono.size < n_fft:
        mono = np.pad(mono, (0, n_fft - mono.size))
    hop = max(n_fft // 4, int(np.ceil((mono.size - n_fft) / max(max_frames - 1, 1))) or 1)
    frames = np.lib.stride_tricks.sliding_window_view(mono, n_fft)[::hop]
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(n_fft).astype(np.float32), axis=1)).T
    db = 20.0 * np.log10(np.maximum(spectrum, 1e-10))
    db -= db.max()
    return np.maximum(db, floor_db).astype(np.float32)


def colourise(values: npt.NDArray[np.floating]) -> npt.NDArray[np.uint8]:
    """Values in [0, 1] to RGB through the anchor colour map; output ``[*values.shape, 3]``."""
    position = np.clip(values, 0.0, 1.0) * (len(_ANCHORS) - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, len(_ANCHORS) - 1)
    frac = (position - low)[..., None]
    return (_ANCHORS[low] * (1 - frac) + _ANCHORS[high] * frac).astype(np.uint8)


def spectrogram_image(
    samples: npt.NDArray[np.floating], sample_rate: int, width: int = 800, height: int = 160
) -> Image.Image:
    """Spectrogram of ``samples`` (low frequencies at the bottom, 0 to ``sample_rate / 2`` Hz)."""
    del sample_rate  # the axis spans 0..Nyquist whatever the rate; kept for callers' clarity
    db = spectrogram_db(samples)
    floor = float(db.min()) if db.size else -80.0
    scaled = (db - floor) / max(-floor, 1e-6)
    rgb = colourise(scaled[::-1])
    return Image.fromarray(rgb, "RGB").resize((width, height), Image.Resampling.BILINEAR)
