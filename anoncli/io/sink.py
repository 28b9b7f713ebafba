"""Where outputs land: whole files or nothing, with the mode a normal write would give, links written
through, and `-` meaning standard output."""

from __future__ import annotations

import os
import re
import socket
import stat
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

from anoncli.io.sources import is_stream

# Half-written files are named `.NAME.HOST-PID.RANDOM.anoncli-tmp` beside their target until they are
# complete; the host and process say whether the writer still lives.
TEMPORARY_SUFFIX = ".anoncli-tmp"
_TEMPORARY_NAME = re.compile(r"\.(?P<target>.+)\.(?P<host>[^.]*)-(?P<pid>\d+)\.[^.]+" + re.escape(TEMPORARY_SUFFIX))
# A temporary file from another host (a shared disk) is left to its writer unless it is this old.
STALE_ELSEWHERE_SECONDS = 24 * 3600


def _this_host() -> str:
    return socket.gethostname().replace(".", "_")


def temporary_beside(path: Path) -> Path:
    """A new, empty temporary file in `path`'s folder (created, with its parents), to be renamed onto `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.{_this_host()}-{os.getpid()}."
    handle, name = tempfile.mkstemp(prefix=prefix, suffix=TEMPORARY_SUFFIX, dir=path.parent)
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


def is_stale_temporary(path: Path) -> bool:
    """Whether `path` is a temporary file of this tool whose writer is gone: a process of this host that no
    longer runs, or a writer elsewhere that has not touched it for STALE_ELSEWHERE_SECONDS."""
    match = _TEMPORARY_NAME.fullmatch(path.name)
    if match is None:
        return False
    if match["host"] == _this_host():
        try:
            os.kill(int(match["pid"]), 0)
        except ProcessLookupError:
            return True
        except OSError:  # alive, under another user
            return False
        return False
    try:
        return time.time() - path.lstat().st_mtime > STALE_ELSEWHERE_SECONDS
    except OSError:
        return False


def remove_stale_temporaries(folder: Path, names: set[str] | None = None) -> list[Path]:
    """Remove what interrupted runs left half-written: with `names`, the stale temporary files of those
    outputs directly in `folder`; without, every stale temporary file in `folder`'s tree. Returns them."""
    if names is None:
        candidates = (Path(top) / name for top, _, files in os.walk(folder) for name in files)
    else:
        try:
            candidates = (entry for entry in folder.iterdir() if entry.name.startswith("."))
        except OSError:
            return []
    removed = []
    for path in candidates:
        match = _TEMPORARY_NAME.fullmatch(path.name)
        if match and (names is None or match["target"] in names) and is_stale_temporary(path):
            try:
                path.unlink()
                removed.append(path)
            except OSError:
                pass  # gone already, or not ours to remove: the run goes on
    return removed
