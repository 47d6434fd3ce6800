"""Real recorded audio for measurements: Debian packages fetched with ``apt-get download``.

Tests and benchmarks that measure (watermark robustness, speaker verification) use real recordings,
not only synthetic signals. Debian ships them in plain ``.deb`` archives:

* recorded human speech, one professional speaker per package (Asterisk's prompts, CC-BY-SA 3.0,
  8 kHz mono WAV): ``en_US_f_Allison`` (US English, female), ``fr_CA_f_June`` (Canadian French,
  female), ``it_IT_m_Carlo`` (Italian, male), ``ru_RU_f_IvrvoiceRU`` (Russian, female), and
  ``es_MX_f_Allison`` (Allison again, in Spanish);
* produced music: Asterisk's music on hold (``asterisk-moh-opsound-wav``, CC-BY-SA 3.0, 8 kHz);
* sound effects: the Heroes game's effects (``heroes-sound-effects``, 11 kHz) and the freedesktop
  sound theme (``sound-theme-freedesktop``, 44.1 kHz stereo Ogg).

``apt-get download`` needs no root and no install; each archive is unpacked with ``dpkg-deb -x``
into a cache folder (``SOUNDRY_TEST_AUDIO_DIR``, default ``~/.cache/soundry/debian-audio``) once and
reused. Where apt is missing or the mirror is unreachable, ``require`` skips the calling test and
says why (``RealAudioMissing`` elsewhere).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf

CACHE = Path(os.environ.get("SOUNDRY_TEST_AUDIO_DIR", Path.home() / ".cache" / "soundry" / "debian-audio"))

SPEECH_PACKAGES = {
    "en_US_f_Allison": "asterisk-core-sounds-en-wav",
    "fr_CA_f_June": "asterisk-core-sounds-fr-wav",
    "it_IT_m_Carlo": "asterisk-core-sounds-it-wav",
    "ru_RU_f_IvrvoiceRU": "asterisk-core-sounds-ru-wav",
    "es_MX_f_Allison": "asterisk-core-sounds-es-wav",
}
"""Speaker folder under /usr/share/asterisk/sounds -> the package holding it."""

MUSIC_PACKAGE = "asterisk-moh-opsound-wav"
EFFECTS_PACKAGES = ("heroes-sound-effects", "sound-theme-freedesktop")


class RealAudioMissing(RuntimeError):
    """A Debian package with real recordings could not be fetched here."""


def package_root(package: str) -> Path:
    """The unpacked tree of ``package`` (fetched and unpacked on first use)."""
    root = CACHE / package
    if (root / ".complete").exists():
        return root
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise RealAudioMissing(f"{package}: apt-get/dpkg-deb not found (a Debian-based machine is needed)")
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        got = subprocess.run(
            ["apt-get", "download", "-q", package], cwd=tmp, capture_output=True, text=True, timeout=300
        )
        debs = list(Path(tmp).glob("*.deb"))
        if got.returncode != 0 or not debs:
            raise RealAudioMissing(f"{package}: apt-get download failed: {got.stderr.strip()[-300:]}")
        unpacked = Path(tmp) / "tree"
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)], check=True, timeout=300)
        (unpacked / ".complete").write_text(debs[0].name + "\n")
        if root.exists():  # a half-unpacked tree from an interrupted run
            shutil.rmtree(root)
        unpacked.rename(root)  # atomic: another process sees all of it or none
    return root


def require(package: str) -> Path:
    """``package_root`` for tests: skips the test (naming the package and why) when unavailable."""
    import pytest

    try:
        return package_root(package)
    except RealAudioMissing as exc:
        pytest.skip(f"real recordings unavailable: {exc}")


def speech_files(speaker: str, *, min_seconds: float = 0.0) -> list[Path]:
    """WAV prompts spoken by ``speaker`` (a key of SPEECH_PACKAGES), sorted, at least ``min_seconds``."""
    root = package_root(SPEECH_PACKAGES[speaker]) / "usr/share/asterisk/sounds" / speaker
    files = sorted(p for p in root.rglob("*.wav") if "silence" not in p.parts)
    return [p for p in files if min_seconds <= 0 or sf.info(str(p)).duration >= min_seconds]


def music_files() -> list[Path]:
    return sorted((package_root(MUSIC_PACKAGE) / "usr/share/asterisk/moh").glob("*.wav"))


def effect_files() -> list[Path]:
    heroes = sorted((package_root("heroes-sound-effects") / "usr/share/games/heroes/sfx").glob("*.wav"))
    themes = sorted((package_root("sound-theme-freedesktop") / "usr/share/sounds/freedesktop").rglob("*.oga"))
    return heroes + themes


def load(path: Path, rate: int | None = None) -> tuple[npt.NDArray[np.float32], int]:
    """A recording as float32 mono (channels averaged), resampled to ``rate`` when given."""
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    if rate is not None and rate != sr:
        import soxr

        mono = soxr.resample(mono, sr, rate).astype(np.float32)
        sr = rate
    return mono, sr
