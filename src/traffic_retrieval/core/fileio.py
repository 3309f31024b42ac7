"""Atomic writes, tolerant text reading, and the checks on paths that every step makes before its
work starts: nothing half-written is ever trusted, and a wrong path is one line, not a traceback."""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


_UMASK = os.umask(0)
os.umask(_UMASK)


class UserError(Exception):
    """Something the user can fix (an input, a setting, the machine): the command line prints it as
    one line and exits 2, never as a traceback."""


class InputError(UserError, ValueError):
    """A defect in an input file, named by file and (where it applies) line number."""

    def __init__(self, path: str | Path, line: int | None, defect: str):
        self.path, self.line, self.defect = str(path), line, defect
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {defect}")


class DiskFull(OSError):
    """A write that ran out of space, naming the file it was writing: the command line prints it as
    ``error: PATH: the disk is full ...`` and exits 2, and nothing half-written is kept."""

    def __init__(self, path: str | Path):
        free = shutil.disk_usage(Path(path).parent).free if Path(path).parent.exists() else 0
        super().__init__(errno.ENOSPC, f"the disk holding it is full (no space left on device, {free / 2**20:.1f} MiB "
                                       f"free): nothing half-written was kept; free some space or write elsewhere, "
                                       f"and run again", str(path))


_SHORT_WRITE = re.compile(r"^\d+ requested and \d+ written$")  # numpy's tofile, where write() stopped short


def out_of_space(e: BaseException) -> bool:
    """Whether ``e`` is a write that ran out of space: ENOSPC or a quota, or numpy's short write (a
    regular file takes fewer bytes than asked only when its disk is full), which names no errno."""
    return isinstance(e, OSError) and (e.errno in (errno.ENOSPC, errno.EDQUOT) or
                                       (e.errno is None and bool(_SHORT_WRITE.match(str(e)))))


def require_file(path: str | Path, what: str) -> Path:
    """``path`` when it is a regular file, else InputError saying what was expected there."""
    path = Path(path)
    if path.is_file():
        return path
    found = "is a folder" if path.is_dir() else "is not a regular file" if path.exists() else "not found"
    raise InputError(path, None, f"{found}; expected {what}")


def require_folder(path: str | Path, what: str) -> Path:
    """``path`` when it is a folder, else InputError saying what was expected there."""
    path = Path(path)
    if path.is_dir():
        return path
    raise InputError(path, None, f"{'is a file' if path.exists() else 'not found'}; expected {what}")


def require_writable(path: str | Path, what: str, folder: bool = False) -> Path:
    """``path`` when ``what`` (a file, or with ``folder`` a folder) can be written there: checked before
    the work that produces it, so a wrong output path costs nothing. InputError otherwise."""
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise InputError(path, None, f"is a file; expected a folder to write {what} into")
    if not folder and path.is_dir():
        raise InputError(path, None, f"is a folder; expected a file name to write {what} to")
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(path, None, f"cannot be written: {parent} is a file, not a folder; choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(path, None, f"cannot be written: no permission to write in {parent}; choose another path")
    return path


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it over ``path`` only on success. A write that runs
    out of space is a DiskFull naming ``path``, and the temporary file goes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temporary(path)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if out_of_space(e) and not isinstance(e, DiskFull):
            raise DiskFull(path) from e
        raise


def _temporary(path: Path) -> tuple[int, str]:
    """``mkstemp`` beside ``path``; DiskFull when not even an empty file fits."""
    try:
        return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        if out_of_space(e):
            raise DiskFull(path) from e
        raise


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for a library that writes files by name; renamed over ``path``
    only when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temporary(path)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if out_of_space(e) and not isinstance(e, DiskFull):
            raise DiskFull(path) from e
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    at_fdcwd, rename_exchange = -100, 2
    return renameat2 is not None and renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b),
                                               rename_exchange) == 0


def folder_beside(target: str | Path) -> Path:
    """A new empty hidden folder beside ``target`` (the same file system, so that ``swap_in_folder`` can
    rename it into place), with the usual permissions."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.new-"))
    folder.chmod(0o777 & ~_UMASK)  # mkdtemp makes 0700
    return folder


def swap_in_folder(new: str | Path, target: str | Path) -> None:
    """Put the complete folder ``new`` at ``target`` (same file system), replacing what was there: one
    atomic exchange where the system has it, else two renames with the old folder kept aside until
    the new one is in place."""
    new, target = Path(new), Path(target)
    if not target.exists():
        new.rename(target)
        return
    if _exchange(new, target):
        shutil.rmtree(new)
        return
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    target.rename(old)
    new.rename(target)
    shutil.rmtree(old)


def read_text_lines(path: str | Path, what: str = "a text file") -> list[tuple[int, str]]:
    """(line number, text) of each non-blank line: UTF-8 with or without BOM, LF or CRLF,
    trailing whitespace stripped. Bytes that are not UTF-8 raise InputError naming the line, and a
    path that is not a file (``what`` says what was expected there) InputError naming it."""
    data = require_file(path, what).read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    out = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(path, number, f"bytes that are not UTF-8 at column {e.start + 1}") from None
        text = text.rstrip()
        if text:
            out.append((number, text))
    return out
