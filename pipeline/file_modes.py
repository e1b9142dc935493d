"""The modes of what the pipeline writes: the user's umask decides, except that nothing is ever world-writable.

Files and folders created the ordinary way (`open`, `mkdir`, and TensorFlow, TFX, Beam and the ML Metadata
store, which all do so) get their mode from the process umask. The few places that must set a mode
themselves (a `mkstemp` file is 0600, a copied folder has its source's mode) take it from here.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

WORLD_WRITABLE = 0o002


def _shown_umask() -> int | None:
    """The umask as Linux shows it in /proc, without changing it; None elsewhere (macOS) or on kernels before 4.7."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    return None


@functools.cache
def umask() -> int:
    """The process umask, read once (`forbid_world_writes` reads it again after changing it)."""
    shown = _shown_umask()
    if shown is not None:
        return shown
    # Reading it means setting it; a thread creating a file in between gets 0o077, the safe side.
    current = os.umask(0o077)
    os.umask(current)
    return current


def file_mode() -> int:
    """The mode `open()` would give a new file: 0o666 less the umask."""
    return 0o666 & ~umask()


def folder_mode() -> int:
    """The mode `mkdir` would give a new folder: 0o777 less the umask."""
    return 0o777 & ~umask()


def forbid_world_writes() -> None:
    """Adds others' write permission to the process umask, for this process and the ones it starts.

    The serving folder holds what a model server loads and runs, and the ML Metadata store decides what is
    pushed: under a umask of 000 anyone on the machine could replace either. Group write, if the umask
    allows it, is kept: a team may share an output folder through its group.
    """
    os.umask(umask() | WORLD_WRITABLE)
    umask.cache_clear()


def write_whole(path: Path, text: str) -> None:
    """Writes `text` to `path` whole or not at all: a reader, or a crash, never sees half a file."""
    partial = path.with_suffix(".partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
