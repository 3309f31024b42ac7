"""Atomic writes and tolerant text reading: nothing half-written is ever trusted."""

from __future__ import annotations

import os
import tempfile
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


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it over ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for a library that writes files by name; renamed over ``path``
    only when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def read_text_lines(path: str | Path) -> list[tuple[int, str]]:
    """(line number, text) of each non-blank line: UTF-8 with or without BOM, LF or CRLF,
    trailing whitespace stripped. Bytes that are not UTF-8 raise InputError naming the line."""
    data = Path(path).read_bytes()
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
