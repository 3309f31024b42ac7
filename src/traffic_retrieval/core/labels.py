"""Label files of the challenge: ``image$attribute$caption`` (and ``$completed`` once augmented)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from .attributes import Kind, kind_of
from .fileio import InputError, atomic_write_text, read_text_lines

SEP = "$"
LABEL_FILE = "a label file (image$attribute$caption, one a line)"  # what a user is told to give
QUERY_FILE = "a query file (one query a line)"


@dataclass(frozen=True)
class Label:
    image: str
    attribute: str
    caption: str
    completed: Optional[str] = None  # the zero-shot completed vehicle attribute text

    @property
    def kind(self) -> Kind:
        return kind_of(self.attribute)

    def to_line(self) -> str:
        fields = [self.image, self.attribute, self.caption]
        if self.completed is not None:
            fields.append(self.completed)
        return SEP.join(fields)


def parse_label_line(text: str) -> Label:
    """One label line; ValueError names the defect."""
    fields = text.split(SEP)
    if len(fields) not in (3, 4):
        raise ValueError(f"expected 3 or 4 '$'-separated fields (image$attribute$caption[$completed]), got {len(fields)}")
    fields = [f.strip() for f in fields]
    if not fields[0]:
        raise ValueError("empty image name")
    if not fields[1]:
        raise ValueError("empty attribute field")
    if not fields[2]:
        raise ValueError("empty caption")
    if len(fields) == 4 and not fields[3]:
        raise ValueError("empty completed field")
    label = Label(*fields)
    kind_of(label.attribute)  # a malformed flag vector is an error, not a vehicle
    return label


def read_labels(path: str | Path, allow_empty: bool = True) -> list[Label]:
    """Every label of a file, in order; a malformed line raises InputError (file:line: defect), and so
    does a file without labels unless ``allow_empty`` (a split must have some; a per-kind part may not)."""
    lines = read_text_lines(path, LABEL_FILE)
    if not lines and not allow_empty:
        raise InputError(path, None, f"no labels (the file is empty or blank); expected {LABEL_FILE}")
    return parse_label_lines(path, lines)


def parse_label_lines(path: str | Path, lines: Iterable[tuple[int, str]]) -> list[Label]:
    """The labels of numbered lines of ``path``; InputError names the first malformed one."""
    labels = []
    for number, text in lines:
        try:
            labels.append(parse_label_line(text))
        except ValueError as e:
            raise InputError(path, number, str(e)) from None
    return labels


def format_labels(labels: Iterable[Label]) -> str:
    lines = []
    for label in labels:
        if any(SEP in f or "\n" in f for f in (label.image, label.attribute, label.caption, label.completed or "")):
            raise ValueError(f"label of {label.image!r} has a field containing '$' or a newline")
        lines.append(label.to_line() + "\n")
    return "".join(lines)


def write_labels(path: str | Path, labels: Iterable[Label]) -> None:
    """Write atomically, LF line ends, UTF-8 without BOM."""
    atomic_write_text(path, format_labels(labels))


def read_queries(path: str | Path) -> list[str]:
    """The query file (``test_text.txt``): one query a line, in order; InputError when it has none."""
    queries = [text for _, text in read_text_lines(path, QUERY_FILE)]
    if not queries:
        raise InputError(path, None, f"no queries (the file is empty or blank); expected {QUERY_FILE}")
    return queries

