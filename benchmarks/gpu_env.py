"""Run the GPU benchmark on a bare CUDA image: absent import-only dependencies of audiocraft.

A lent GPU host (or any CUDA image) often has torch, transformers and numpy but not the project's
environment, and nothing can be installed there. ``benchmarks/gpu.sh --pack`` copies audiocraft and
its pure-Python dependencies into ``.gpu/site`` to carry along; five compiled ones that audiocraft
imports at module level but never calls on the decoding path measured here are replaced, only
when absent, by placeholder modules (:func:`install_placeholders`):

* ``xformers``: ``modules/transformer.py`` imports ``ops`` and, with the default 'torch' attention
  backend, calls only ``ops.unbind`` (that is ``torch.unbind``) and builds an
  ``ops.LowerTriangularMask()`` whose only use is a test for ``None``.
* ``spacy`` (the 'whitespace' text tokenizer), ``av``, ``soundfile``, ``soxr`` (audio file I/O):
  unused by the benchmark, which conditions on a lookup-table text embedding and never reads files.

Any other use of a placeholder raises, naming the package; the results file lists which were used.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from typing import Any

PLACEHOLDERS: tuple[str, ...] = ("xformers", "spacy", "av", "soundfile", "soxr")


class _Absent(types.ModuleType):
    """A module of a package that is not installed: any attribute is another placeholder; calls raise."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        # a placeholder submodule, through the finder (so ``from xformers import ops`` gets ops' attributes)
        return importlib.import_module(f"{self.__name__}.{attr}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"{self.__name__} is not installed on this host (benchmarks/gpu_env.py)")


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(
        self, fullname: str, path: Any, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.split(".")[0] not in self.names:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = _Absent(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        if module.__name__ == "xformers.ops":
            import torch

            module.unbind = torch.unbind  # type: ignore[attr-defined]
            # the non-streaming causal forward only tests this mask for None (torch attention backend)
            module.LowerTriangularMask = type("LowerTriangularMask", (), {})  # type: ignore[attr-defined]


def install_placeholders() -> list[str]:
    """Placeholder modules for the absent packages of :data:`PLACEHOLDERS`; returns their names."""
    absent = {name for name in PLACEHOLDERS if importlib.util.find_spec(name) is None}
    if absent:
        sys.meta_path.append(_Finder(absent))
    return sorted(absent)
