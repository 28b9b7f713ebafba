"""Where outputs land: whole files or nothing, with the mode a normal write would give, links written
through, and `-` meaning standard output."""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

from anoncli.io.sources import is_stream

# Half-written files are named `.NAME.RANDOM.anoncli-tmp` beside their target until they are complete.
TEMPORARY_SUFFIX = ".anoncli-tmp"


def temporary_beside(path: Path) -> Path:
    """A new, empty temporary file in `path`'s folder (created, with its parents), to be renamed onto `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
    os.close(handle)
    os.chmod(name, new_file_mode())
    return Path(name)


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` so readers never see half a file.

    A regular file (or a link to one) is written beside its real path and renamed into place; `-` goes to
    standard output; a device or pipe (such as /dev/stdout) is written to as it is, never replaced.
    """
    if is_stream(path):
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    real = Path(os.path.realpath(path))
    if real.exists() and not stat.S_ISREG(real.stat().st_mode):
        with open(real, "wb") as stream:
            stream.write(data)
        return
    temporary = temporary_beside(real)
    try:
        temporary.write_bytes(data)
        os.replace(temporary, real)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@lru_cache(maxsize=1)
def new_file_mode() -> int:
    """0666 less the process's umask: what `open()` would give a new file (mkstemp gives 0600)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    current = os.umask(0o022)  # no /proc: read the umask the only other way, and put it back at once
    os.umask(current)
    return 0o666 & ~current
