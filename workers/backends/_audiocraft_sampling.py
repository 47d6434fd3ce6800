"""Seeding and per-row sampling for audiocraft's LM: a request's clip depends only on its own seed.

audiocraft's ``LMModel._sample_next_token`` samples the next tokens of all batch rows with one
``torch.multinomial`` call on the global RNG, so a row's tokens would depend on the rows beside it:
the same request would give a different clip batched than alone, or beside other requests.
:func:`per_row_sampling` patches audiocraft's samplers while a generation runs so that row ``i``
draws only from a ``torch.Generator`` seeded with its request's seed (:class:`RowSampler`), in solo
and batched calls alike (a batch needs one more condition for equal clips: prompts of equal token
length, see ``AudiocraftBackend.batch_key``). :func:`seed_everything` seeds the global RNGs, for
the randomness outside token sampling (the coqui backend seeds with it too).
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

_SAMPLING_PATCH_LOCK = threading.RLock()


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and every GPU), Python's ``random`` and NumPy.

    Python's ``random`` matters: Demucs' stem separation in the melody conditioner draws its random
    shift from it, so without it the same seed gives a different melody result.
    """
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


class RowSampler:
    """Drop-in replacements for audiocraft's samplers that draw each batch row from its own generator.

    audiocraft's ``LMModel._sample_next_token`` samples the next tokens of all rows with one
    ``torch.multinomial`` call on the global RNG (through ``audiocraft.utils.utils.multinomial``,
    ``sample_top_k`` and ``sample_top_p``), so a row's tokens depend on the rows beside it. Here
    row ``b`` of the ``[B, K, card]`` probabilities is sampled with ``generators[b]`` only, consuming
    the same random numbers whatever ``B`` is. ``sample_top_k``/``sample_top_p`` mirror audiocraft's
    own (audiocraft 1.3) apart from the generator.

    Args:
        generators: One generator per batch row, on the model's device.
    """

    def __init__(self, generators: Sequence[Any]) -> None:
        self.generators = list(generators)

    def multinomial(
        self, input: Any, num_samples: int, replacement: bool = False, *, generator: Any = None
    ) -> Any:
        """``audiocraft.utils.utils.multinomial`` with row ``b`` (first dimension) drawn from generator ``b``.

        Raises:
            RuntimeError: The first dimension is not the number of generators (an audiocraft change).
        """
        import torch

        rows = int(input.shape[0])
        if rows != len(self.generators):
            raise RuntimeError(
                f"per-row sampling expected {len(self.generators)} rows, got probabilities "
                f"{tuple(input.shape)}"
            )
        card = int(input.shape[-1])
        out = [
            torch.multinomial(
                input[b].reshape(-1, card), num_samples=num_samples, replacement=replacement, generator=gen
            ).reshape(*input.shape[1:-1], num_samples)
            for b, gen in enumerate(self.generators)
        ]
        return torch.stack(out)

    def sample_top_k(self, probs: Any, k: int) -> Any:
        """Top-k sampling over the last dimension (audiocraft's ``sample_top_k``, per-row generators)."""
        import torch

        top_k_value, _ = torch.topk(probs, k, dim=-1)
        min_value_top_k = top_k_value[..., [-1]]
        probs *= (probs >= min_value_top_k).float()
        probs.div_(probs.sum(dim=-1, keepdim=True))
        return self.multinomial(probs, num_samples=1)

    def sample_top_p(self, probs: Any, p: float) -> Any:
        """Nucleus sampling over the last dimension (audiocraft's ``sample_top_p``, per-row generators)."""
        import torch

        probs_sort, probs_idx = torch.sort(probs, dim=-1, descending=True)
        probs_sum = torch.cumsum(probs_sort, dim=-1)
        mask = probs_sum - probs_sort > p
        probs_sort *= (~mask).float()
        probs_sort.div_(probs_sort.sum(dim=-1, keepdim=True))
        next_token = self.multinomial(probs_sort, num_samples=1)
        return torch.gather(probs_idx, -1, next_token)


@contextlib.contextmanager
def per_row_sampling(seeds: Sequence[int], device: Any) -> Iterator[RowSampler]:
    """While active, audiocraft's LM samples batch row ``i`` from a generator seeded with ``seeds[i]``.

    Swaps ``multinomial``, ``sample_top_k`` and ``sample_top_p`` of ``audiocraft.utils.utils`` (which
    ``audiocraft.models.lm`` looks up at call time) and restores them on exit. A process-wide lock
    serialises patched calls: in a worker only the batcher thread generates, so it never waits.

    Args:
        seeds: One seed per batch row (request order).
        device: Device of the model (generators must live where the probabilities are).
    """
    import torch
    from audiocraft.utils import utils as ac_utils

    generators = []
    for seed in seeds:
        gen = torch.Generator(device=device)
        gen.manual_seed(int(seed))
        generators.append(gen)
    sampler = RowSampler(generators)
    names = ("multinomial", "sample_top_k", "sample_top_p")
    with _SAMPLING_PATCH_LOCK:
        originals = {name: getattr(ac_utils, name) for name in names}
        for name in names:
            setattr(ac_utils, name, getattr(sampler, name))
        try:
            yield sampler
        finally:
            for name, fn in originals.items():
                setattr(ac_utils, name, fn)
