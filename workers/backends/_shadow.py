"""Shadow an object's methods with instance attributes for the length of a ``with`` block.

The token tap (``_audiocraft_stream``) and the static decoder (``_audiocraft_fast``) both replace
methods of audiocraft's shared ``LMModel`` while one generation runs; nesting works because each
restores exactly what was there before it, also when the block raises (cancellation).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

_MISSING = object()


@contextlib.contextmanager
def shadowed(obj: Any, **methods: Callable[..., Any]) -> Iterator[None]:
    """While active, ``obj.<name>`` is ``methods[name]``; the previous instance attributes come back after."""
    saved = {name: obj.__dict__.get(name, _MISSING) for name in methods}
    for name, fn in methods.items():
        object.__setattr__(obj, name, fn)
    try:
        yield
    finally:
        for name, previous in saved.items():
            if previous is _MISSING:
                obj.__dict__.pop(name, None)
            else:
                object.__setattr__(obj, name, previous)
