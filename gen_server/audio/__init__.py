"""Torch-free audio code shared by the API and the workers.

The API decodes uploads, transcodes downloads and detects watermarks, and ``gen_server`` may not
import ``workers`` or torch, so the pure numpy DSP lives here and the workers import it.
"""

from gen_server.audio.types import Audio, SpeechQc, Word, WordSource, shift_words

__all__ = ["Audio", "SpeechQc", "Word", "WordSource", "shift_words"]
