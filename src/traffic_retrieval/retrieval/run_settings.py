"""A run folder's query settings: how its submission was ranked, recorded beside its weights.

A run is the unit a user hands around (DESIGN.md): the reproduce notebook ranks its submission with
attribute fusion, gallery centring, re-ranking and flip TTA, and before this record ``infer``,
``search`` and ``serve`` given the same run used none of them unless each was typed again (0.582
against the run's own 0.641). ``RUN/query.json`` holds every ``QuerySettings`` field and the square
padding, the heads as a path relative to the run folder (the folder can move); the commands start
from it, as OpenCLIP's pretrained configs carry their preprocessing, and a flag overrides one field
(``apps/arguments.py``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Optional

from ..core.fileio import InputError, UserError, atomic_write_text
from .balance import Balance
from .cross_encoder import CrossEncoding, Matcher
from .fusion import AttributeHeads, Fusion
from .pipeline import QuerySettings
from .rerank import RerankSettings

RECORD = "query.json"
FORMAT = 1


def _named(source: Optional[Path], run: Path, what: str) -> str:
    """A file a record names: relative to the run folder when inside it (the folder can move)."""
    if source is None:
        raise ValueError(f"{what} not loaded from a file cannot be recorded: save them first")
    source = Path(source).resolve()
    return str(source.relative_to(run.resolve())) if source.is_relative_to(run.resolve()) else str(source)


def to_record(settings: QuerySettings, run: Path, square_pad: bool = True) -> dict:
    """The JSON of ``settings`` for the run folder ``run`` (files inside it named relative to it)."""
    fusion, cross = settings.fusion, settings.cross
    return {"format": FORMAT, "square_pad": square_pad, "topk": settings.topk, "vehicle_prompt": settings.vehicle_prompt,
            "rerank": asdict(settings.rerank) if settings.rerank else None, "candidates": settings.candidates,
            "flip_tta": settings.flip_tta,
            "fusion": None if fusion is None else {"heads": _named(fusion.heads.source, run, "attribute heads"),
                                                   "weight": fusion.weight, "candidates": fusion.candidates,
                                                   "adapt": fusion.adapt},
            "balance": asdict(settings.balance) if settings.balance else None,
            "cross": None if cross is None else {"matcher": _named(cross.matcher.source, run, "a cross-encoder"),
                                                 "candidates": cross.candidates, "weight": cross.weight}}


def from_record(record: dict, path: Path) -> tuple[QuerySettings, bool]:
    """(settings, square padding) of the record read from ``path`` (its heads loaded from beside it);
    InputError naming ``path`` for one it cannot read."""
    run = path.parent
    try:
        if record.get("format") != FORMAT:
            raise ValueError(f"format {record.get('format')!r}, expected {FORMAT}")
        fusion = record["fusion"]
        if fusion is not None:
            heads = AttributeHeads.load(run / fusion["heads"])  # an absolute path stays as it is
            fusion = Fusion(heads, float(fusion["weight"]), int(fusion["candidates"]), bool(fusion["adapt"]))
        rerank = RerankSettings(**record["rerank"]) if record["rerank"] else None
        balance = Balance(**record["balance"]) if record.get("balance") else None  # absent in the first records
        cross = record.get("cross")
        if cross is not None:
            cross = CrossEncoding(Matcher.load(run / cross["matcher"]), int(cross["candidates"]), float(cross["weight"]))
        settings = QuerySettings(int(record["topk"]), str(record["vehicle_prompt"]), rerank, int(record["candidates"]),
                                 bool(record["flip_tta"]), fusion, balance, cross)
        return settings, bool(record["square_pad"])
    except InputError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(path, None, f"not a query-settings record ({type(e).__name__}: {e})") from None


def record_query_settings(run: str | Path, settings: QuerySettings, square_pad: bool = True) -> Path:
    """Write ``RUN/query.json`` atomically (the notebook does, right after ranking its submission)."""
    path = Path(run) / RECORD
    atomic_write_text(path, json.dumps(to_record(settings, Path(run), square_pad), indent=1) + "\n")
    return path


def read_record(pretrained: Optional[str | Path]) -> Optional[tuple[dict, Path]]:
    """(the record as JSON, its path) of a run folder given as ``--pretrained``, or None when it is not a
    folder holding one; nothing is loaded (``from_record`` loads the heads)."""
    if not pretrained or not Path(pretrained).is_dir() or not (Path(pretrained) / RECORD).is_file():
        return None
    path = Path(pretrained) / RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise InputError(path, None, f"unreadable query-settings record: {e}") from None
    if not isinstance(record, dict):
        raise InputError(path, None, "not a query-settings record (expected a JSON object)")
    return record, path


@dataclass(frozen=True)
class Overrides:
    """The query settings a user gave (a flag, a notebook parameter); None keeps the recorded value."""

    topk: Optional[int] = None
    vehicle_prompt: Optional[str] = None
    rerank: Optional[str] = None  # a method of rerank.METHODS, or "none"
    candidates: Optional[int] = None  # re-ranking's first candidates
    rerank_top_k: Optional[int] = None
    rerank_weight: Optional[float] = None
    flip_tta: Optional[bool] = None
    attributes: Optional[str] = None  # a heads file, or "" / "none" for no fusion
    attribute_weight: Optional[float] = None
    attribute_adapt: Optional[bool] = None  # the heads read the gallery centred on its own mean
    attribute_candidates: Optional[int] = None
    balance: Optional[bool] = None
    balance_temperature: Optional[float] = None
    matcher: Optional[str] = None  # a cross-encoder file, or "" / "none" for no cross-encoder
    matcher_weight: Optional[float] = None
    matcher_candidates: Optional[int] = None
    square_pad: Optional[bool] = None

    def given(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


def _changed(part, given: dict, what: str, switch: str):
    """``part`` (a RerankSettings or Fusion) with the given overrides ({override: (its field, value)});
    UserError naming them when ``part`` is off."""
    given = {name: field_value for name, field_value in given.items() if field_value[1] is not None}
    if not given:
        return part
    if part is None:
        raise UserError(f"{', '.join(given)}: the {what} is off here; turn it on with {switch}")
    return replace(part, **dict(given.values()))


@dataclass(frozen=True)
class Resolved:
    """The settings a command applies, with where they came from."""

    query: QuerySettings
    square_pad: bool
    record: Optional[Path]  # the run's record they start from (None: the package's defaults)
    given: dict

    def line(self) -> str:
        source = f"recorded by the run ({self.record})" if self.record else "the package's defaults"
        changed = f", with {', '.join(f'{k}={v!r}' for k, v in self.given.items())}" if self.given else ""
        return f"query settings: {source}{changed}: {describe(self.query, self.square_pad)}"


def resolve(pretrained: Optional[str | Path], given: Overrides = Overrides()) -> Resolved:
    """The query settings of ``pretrained`` (a run folder's record, else the package's defaults) with the
    ``given`` overrides applied, each changing one field."""
    found = read_record(pretrained)
    s, pad = from_record(*found) if found else (QuerySettings(), True)
    g = given
    plain = {"topk": g.topk, "vehicle_prompt": g.vehicle_prompt, "candidates": g.candidates, "flip_tta": g.flip_tta}
    s = replace(s, **{k: v for k, v in plain.items() if v is not None})
    if g.rerank is not None:
        s = replace(s, rerank=None if g.rerank == "none" else replace(s.rerank or RerankSettings(), method=g.rerank))
    s = replace(s, rerank=_changed(s.rerank, {"rerank_top_k": ("top_k", g.rerank_top_k),
                                              "rerank_weight": ("weight", g.rerank_weight)},
                                   "re-ranking", "a re-ranking method"))
    if g.attributes is not None:
        heads = None if g.attributes.strip().lower() in ("", "none") else AttributeHeads.load(g.attributes)
        s = replace(s, fusion=heads and (Fusion(heads) if s.fusion is None else replace(s.fusion, heads=heads)))
    fusion = {"attribute_weight": ("weight", g.attribute_weight), "attribute_adapt": ("adapt", g.attribute_adapt),
              "attribute_candidates": ("candidates", g.attribute_candidates)}
    s = replace(s, fusion=_changed(s.fusion, fusion, "attribute fusion", "attribute heads"))
    if g.balance is not None:
        s = replace(s, balance=(s.balance or Balance()) if g.balance else None)
    s = replace(s, balance=_changed(s.balance, {"balance_temperature": ("temperature", g.balance_temperature)},
                                    "gallery balance", "the balance switch"))
    if g.matcher is not None:
        matcher = None if g.matcher.strip().lower() in ("", "none") else Matcher.load(g.matcher)
        s = replace(s, cross=matcher and (CrossEncoding(matcher) if s.cross is None else replace(s.cross, matcher=matcher)))
    s = replace(s, cross=_changed(s.cross, {"matcher_weight": ("weight", g.matcher_weight),
                                            "matcher_candidates": ("candidates", g.matcher_candidates)},
                                  "cross-encoder", "a matcher file"))
    return Resolved(s, pad if g.square_pad is None else g.square_pad, found[1] if found else None, g.given())


def describe(settings: QuerySettings, square_pad: bool = True) -> str:
    """What the settings apply, in one line."""
    parts = [f"vehicle prompt {settings.vehicle_prompt!r}" if settings.vehicle_prompt else "no vehicle prompt"]
    f = settings.fusion
    if f is not None:
        parts.append(f"attribute heads {f.heads.source} at weight {f.weight:g} over {f.candidates} candidates"
                     + (", gallery centring" if f.adapt else ", training centre"))
    else:
        parts.append("no attribute fusion")
    r = settings.rerank
    parts.append(f"re-ranking {r.method} (top {r.top_k}, weight {r.weight:g}) of {settings.candidates} candidates"
                 if r else "no re-ranking")
    parts.append("flip TTA" if settings.flip_tta else "no flip TTA")
    b = settings.balance
    parts.append(f"gallery balance (T {b.temperature:g}, {b.iterations} iterations)" if b else "no gallery balance")
    c = settings.cross
    parts.append(f"cross-encoder {c.matcher.source} at weight {c.weight:g} over {c.candidates} candidates" if c
                 else "no cross-encoder")
    parts.append("square padding" if square_pad else "no square padding")
    return f"top {settings.topk}, " + ", ".join(parts)
