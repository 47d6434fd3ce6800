"""The Audio value type that crosses every boundary inside a worker."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class Audio:
    """Float audio.

    Attributes:
        samples: ``[channels, frames]`` float32 in [-1, 1].
        sample_rate: Frames per second (Hz).
    """

    samples: npt.NDArray[np.float32]
    sample_rate: int

    def __post_init__(self) -> None:
        if self.samples.ndim != 2:
            raise ValueError(f"Audio.samples must be [channels, frames], got shape {self.samples.shape}")
        if self.samples.dtype != np.float32:
            object.__setattr__(self, "samples", self.samples.astype(np.float32))
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")

    @classmethod
    def mono(cls, samples: npt.ArrayLike, sample_rate: int) -> Audio:
        """Wrap a 1-D signal as one channel."""
        return cls(np.asarray(samples, dtype=np.float32).reshape(1, -1), sample_rate)

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def frames(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate
