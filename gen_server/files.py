"""Writing a local file so that readers never see a part of it: :func:`atomic_write`; reading one in
chunks for a streamed answer: :func:`iter_chunks`.

The one helper for the API's artifact folder, the keys file, batch outputs and the UI's downloads:
a temp file in the same folder, fsync, then ``os.replace``. Written by hand because the maintained
options do not fit: ``atomicwrites`` is archived by its author, and ``safer``/``filelock`` solve other
problems; this is a dozen lines over the standard library.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def _umask_mode() -> int:
    """The mode ``open()`` gives a new file under the process' umask (``mkstemp`` would give 0600)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


UMASK_MODE = _umask_mode()
"""Read once at import, while single-threaded (the umask is process-wide and reading it sets it)."""


def atomic_write(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path``: readers see the old file or the whole new one, never a part.

    Args:
        path: The file; its folder is created if missing.
        data: The bytes.
        mode: The file's permission bits; ``None``: what the umask gives (as ``open()`` would).

    Raises:
        OSError: The folder or the file could not be written (no temp file is left behind).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, UMASK_MODE if mode is None else mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def iter_chunks(fh: IO[bytes], size: int = 1 << 20) -> Iterator[bytes]:
    """``fh``'s bytes in chunks of ``size``, for a streamed answer (zips); closes ``fh`` at the end."""
    try:
        while chunk := fh.read(size):
            yield chunk
    finally:
        fh.close()
