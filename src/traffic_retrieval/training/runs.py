"""A run folder's record: the parameters that shape what the folder holds, written when the run starts
and checked when it is continued, so that a resumed run is the same run. Without it, training
``--resume`` over a finished run of another seed "resumed" it and rewrote ``params.txt`` to say the
new seed; now such a run stops, naming what differs, before anything is written.

``LOGS/NAME/run.json`` holds one entry per part of the run that records itself: ``train`` (the
training step's own parameters) and, in a notebook run, ``notebook`` (its parameters, which also
shape the data, the submission and the scores written beside the checkpoints).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from ..core.fileio import InputError, atomic_write_text

RECORD = "run.json"


def _as_stored(params: Mapping[str, Any]) -> dict:
    """The parameters as JSON gives them back (tuples as lists, paths as text), so that a record and
    the parameters of a re-run compare equal when they are."""
    return json.loads(json.dumps(dict(params), default=str))


def recorded(folder: str | Path) -> dict:
    """The record of a run folder ({} when there is none)."""
    path = Path(folder) / RECORD
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def differences(before: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """'name: BEFORE before, NOW now' for each parameter whose value differs (absent: None)."""
    return [f"{key}: {before.get(key)!r} before, {now.get(key)!r} now"
            for key in sorted(set(before) | set(now)) if before.get(key) != now.get(key)]


def claim_run(folder: str | Path, part: str, params: Mapping[str, Any]) -> None:
    """Start or continue the run in ``folder``: record ``params`` as its ``part``, or check them against
    the record of the run already there. InputError, before anything is written, when they differ, or
    when the folder holds files that no record of ``part`` describes (a run made before records, or
    by another step)."""
    folder, params = Path(folder), _as_stored(params)
    record = recorded(folder)
    advice = f"give this run another name, or delete {folder} to start it again"
    if part in record:
        changed = differences(record[part], params)
        if changed:
            raise InputError(folder, None, f"holds a run made with other parameters ({'; '.join(changed)}): {advice}")
        return
    unrecorded = sorted(p.name for p in folder.iterdir() if p.name != RECORD) if folder.is_dir() else []
    if unrecorded:
        raise InputError(folder, None, f"holds files of a run with no record of its {part} parameters "
                                       f"({', '.join(unrecorded[:4])}; no {RECORD}): {advice}")
    atomic_write_text(folder / RECORD, json.dumps({**record, part: params}, indent=1, sort_keys=True) + "\n")


def run_data(run: str | Path) -> Path:
    """The data folder a notebook run was trained and scored on, from its record: what a review of
    the run ranks unless told otherwise."""
    data = recorded(run).get("notebook", {}).get("data") if Path(run).is_dir() else None
    if data is None:
        raise InputError(run, None, f"not a run folder with a record of its data ({RECORD}): give the data folder")
    return Path(data)
