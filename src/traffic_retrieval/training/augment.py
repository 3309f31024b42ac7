"""augment: complete partial vehicle training labels with zero-shot CLIP (A3R's first key idea).

Training labels say "white Audi" or "Truck"; test queries say "This is a grey Chery Sedan.". For
each vehicle label missing its colour and/or type, every completion (missing colours x missing
types, known parts kept; brands only with ``complete_brand``, CLIP being poor at fine-grained
brands) is phrased "{prefix} {colour} {brand} {type}" in the original caption's style, scored
against the image, and the best kept as the label's fourth field.

Unlike the seed (model reloaded per batch, images one by one, candidates re-encoded per image)
the model is loaded once, images stream through a DataLoader, and every distinct candidate text
is encoded once. Work is written in chunks, each atomically, so an interrupted run continues
where it stopped and ends with the same file as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import itertools
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..core.attributes import Vehicle
from ..core.captions import parse_vehicle_caption, vehicle_caption
from ..core.fileio import InputError, atomic_write_text, read_text_lines, require_writable
from ..core.images import unreadable_summary
from ..core.labels import Label, format_labels, read_labels
from ..core.layout import Layout, image_folder
from ..core.vocab import Vocabulary
from ..retrieval.device import free_gpu_memory
from ..retrieval.encode import EncodeSettings, encode_images, encode_texts
from ..retrieval.models import LoadedModel, ModelSettings, load_model
from ..retrieval.store import weights_digest


def candidates(vehicle: Vehicle, vocab: Vocabulary, complete_brand: bool = False) -> list[Vehicle]:
    """Every completion of a partial vehicle; the known parts are kept."""
    colours = [vehicle.colour] if vehicle.colour else list(vocab.colours)
    types = [vehicle.type] if vehicle.type else list(vocab.types)
    brands = [vehicle.brand] if vehicle.brand or not complete_brand else list(vocab.brands)
    return [Vehicle(c, b, t) for c, b, t in itertools.product(colours, brands, types)]


def needs_completion(label: Label, vocab: Vocabulary) -> Optional[tuple[str, Vehicle]]:
    """(caption style, partial vehicle) of a vehicle label that is not complete, else None."""
    if label.kind != "vehicle":
        return None
    vehicle = vocab.parse(label.attribute)
    if vehicle is None:
        raise ValueError(f"vehicle attribute {label.attribute!r} of {label.image} is not in the vocabulary")
    if vehicle.colour and vehicle.type:
        return None
    parsed = parse_vehicle_caption(label.caption, vocab)
    return (parsed[0] if parsed else "This is a"), vehicle


class TextCache:
    """Candidate prompts repeat across images: encode each distinct text once."""

    def __init__(self, loaded: LoadedModel):
        self.loaded, self.index, self.rows = loaded, {}, []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        new = [t for t in dict.fromkeys(texts) if t not in self.index]
        if new:
            for t in new:
                self.index[t] = len(self.index)
            self.rows.append(encode_texts(self.loaded, new))
        table = np.concatenate(self.rows)
        return table[[self.index[t] for t in texts]]


def complete_chunk(
    loaded: LoadedModel, labels: Sequence[Label], image_dir: Path, vocab: Vocabulary, texts: TextCache,
    encode: EncodeSettings = EncodeSettings(), complete_brand: bool = False,
) -> list[Label]:
    """The labels with the completed field set on vehicles (complete ones keep their attribute).
    A vehicle whose image is unreadable keeps three fields (no completion), or, ``strict``, raises."""
    todo = [(i, needs_completion(l, vocab)) for i, l in enumerate(labels)]
    todo = [(i, need) for i, need in todo if need is not None]
    out = [Label(l.image, l.attribute, l.caption, l.attribute if l.kind == "vehicle" else None) for l in labels]
    if not todo:
        return out
    image_emb, ok = encode_images(loaded, [image_dir / labels[i].image for i, _ in todo], encode,
                                  desc="augment: encode images")
    options = [candidates(vehicle, vocab, complete_brand) for _, (_, vehicle) in todo]
    prompts = [vehicle_caption(v, style) for (_, (style, _)), opts in zip(todo, options) for v in opts]
    table = texts.embed(prompts)  # every distinct prompt of the chunk, encoded in large batches
    start = 0
    for row, ((i, _), opts) in enumerate(zip(todo, options)):
        scores = table[start:start + len(opts)] @ image_emb[row]
        start += len(opts)
        best = opts[int(np.argmax(scores))].to_text() if ok[row] else None  # unreadable: no completion
        out[i] = Label(labels[i].image, labels[i].attribute, labels[i].caption, best)
    return out


def _run_key(loaded: LoadedModel, label_file: Path, complete_brand: bool, strict: bool) -> str:
    checkpoint = Path(loaded.pretrained) if loaded.pretrained and Path(loaded.pretrained).is_file() else None
    parts = [loaded.name, str(loaded.pretrained), str(weights_digest(loaded)), str(complete_brand), str(strict),
             repr(loaded.preprocess), hashlib.sha256(label_file.read_bytes()).hexdigest()]
    if checkpoint:
        parts += [str(checkpoint.stat().st_size), str(checkpoint.stat().st_mtime_ns)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Workload:
    """What completing a label file costs: one image per label to complete, one text per distinct prompt."""

    labels: int
    vehicles: int
    to_complete: int
    prompts: int  # candidate prompts, summed over the labels to complete
    distinct_prompts: int

    def describe(self) -> str:
        return (f"{self.to_complete:,} of {self.vehicles:,} vehicle labels to complete ({self.labels:,} labels), "
                f"{self.prompts:,} candidate prompts ({self.distinct_prompts:,} distinct): "
                f"{self.to_complete:,} images and {self.distinct_prompts:,} texts to encode")


def workload(labels: Sequence[Label], vocab: Vocabulary, complete_brand: bool = False) -> Workload:
    todo = [need for need in (needs_completion(l, vocab) for l in labels) if need is not None]
    prompts = [vehicle_caption(v, style) for style, vehicle in todo for v in candidates(vehicle, vocab, complete_brand)]
    return Workload(len(labels), sum(l.kind == "vehicle" for l in labels), len(todo), len(prompts),
                    len(set(prompts)))


def estimate_seconds(loaded: LoadedModel, work: Workload, sample_images: Sequence[Path], sample_prompts: Sequence[str],
                     encode: EncodeSettings) -> float:
    """Seconds the work should take, from timing one batch of images and one batch of prompts."""
    images = list(sample_images)[:encode.batch_size]
    texts = list(dict.fromkeys(sample_prompts))[:256]
    start = time.perf_counter()
    encode_images(loaded, images, EncodeSettings(batch_size=encode.batch_size, workers=0, progress=False))
    per_image = (time.perf_counter() - start) / max(len(images), 1)
    start = time.perf_counter()
    encode_texts(loaded, texts)
    per_text = (time.perf_counter() - start) / max(len(texts), 1)
    return work.to_complete * per_image + work.distinct_prompts * per_text


def check_inputs(label_file: Path, image_dir: Path, out: Path, vocab: Vocabulary) -> list[Label]:
    """The labels to complete, every input and the output checked first, not hours in: a vehicle
    outside the vocabulary names its line; an empty label file, a missing image folder or an
    ``out`` that cannot be written are InputErrors too. Callers run it before loading a model."""
    require_writable(out, "the completed labels")
    image_folder(image_dir)
    labels = read_labels(label_file, allow_empty=False)
    for (number, _), label in zip(read_text_lines(label_file), labels):
        try:
            needs_completion(label, vocab)
        except ValueError as e:
            raise InputError(label_file, number, str(e)) from None
    return labels


def augment(
    loaded: LoadedModel, label_file: Path, image_dir: Path, out: Path, vocab: Vocabulary,
    encode: EncodeSettings = EncodeSettings(), complete_brand: bool = False,
) -> list[Label]:
    """Complete a label file into ``out`` (4-field vehicle lines), resumably, ``encode.chunk`` labels a
    part. Vehicles whose image is unreadable keep three fields (see :func:`unreadable`), or, with
    ``encode.strict``, abort the run."""
    labels = check_inputs(label_file, image_dir, out, vocab)
    parts = out.with_name(f".{out.name}.parts-{_run_key(loaded, label_file, complete_brand, encode.strict)}")
    if encode.progress and not parts.exists():
        work = workload(labels, vocab, complete_brand)
        print(f"augment: {work.describe()}", flush=True)
        todo = [(l, need) for l in labels if (need := needs_completion(l, vocab))]
        if todo:
            sample = [vehicle_caption(v, style) for _, (style, vehicle) in todo[:64] for v in candidates(vehicle, vocab)]
            seconds = estimate_seconds(loaded, work, [image_dir / l.image for l, _ in todo[:encode.batch_size]],
                                       sample, encode)
            print(f"augment: about {seconds / 60:.1f} min on {loaded.device.type} ({loaded.precision})", flush=True)
    parts.mkdir(parents=True, exist_ok=True)
    texts = TextCache(loaded)
    done: list[Label] = []
    for n, start in enumerate(range(0, len(labels), encode.chunk)):
        part = parts / f"{n:06d}.txt"
        if not part.is_file():
            completed = complete_chunk(loaded, labels[start:start + encode.chunk], image_dir, vocab, texts, encode,
                                       complete_brand)
            atomic_write_text(part, format_labels(completed))
        done += read_labels(part)
    atomic_write_text(out, format_labels(done))
    shutil.rmtree(parts, ignore_errors=True)
    return done


def augment_split(model: ModelSettings, data: Path, split: str, out: Path, vocab: Vocabulary,
                  encode: EncodeSettings = EncodeSettings(), complete_brand: bool = False) -> list[Label]:
    """``augment`` a split of the challenge layout with a model loaded for it, and released afterwards
    (its GPU memory back to the device before training starts)."""
    layout = Layout(Path(data))
    check_inputs(layout.labels(split), layout.images(split), out, vocab)  # before the model loads
    loaded = load_model(model)
    try:
        return augment(loaded, layout.labels(split), layout.images(split), out, vocab, encode, complete_brand)
    finally:
        del loaded
        free_gpu_memory()


def unreadable(labels: Sequence[Label], done: Sequence[Label], image_dir: Path, vocab: Vocabulary) -> Optional[str]:
    """The summary of the images augmentation could not read (labels left without completion)."""
    todo = [(label, after) for label, after in zip(labels, done) if needs_completion(label, vocab)]
    return unreadable_summary([image_dir / l.image for l, _ in todo], np.array([a.completed is not None for _, a in todo]),
                              "images to complete")


def augmented_path(data: Path, split: str) -> Path:
    """Where augment writes by default: beside the split's label file."""
    return Path(data) / split / f"{split}_label_augmented.txt"


def completion_accuracy(predicted: Sequence[Label], truth: Sequence[Label], vocab: Vocabulary) -> dict:
    """Accuracy of the completed colour and type, over the labels that missed them, overall and
    per true class. ``truth`` holds the same labels with their true completion (synthetic data)."""
    true_by_image = {l.image: vocab.parse(l.completed) for l in truth if l.completed}
    result: dict = {}
    for part in ("colour", "type"):
        hits: dict[str, list[bool]] = {}
        for label in predicted:
            partial, guess = vocab.parse(label.attribute), vocab.parse(label.completed or "")
            true = true_by_image.get(label.image)
            if label.kind != "vehicle" or true is None or partial is None or getattr(partial, part):
                continue
            hits.setdefault(getattr(true, part), []).append(guess is not None and getattr(guess, part) == getattr(true, part))
        every = [h for v in hits.values() for h in v]
        result[part] = {
            "accuracy": float(np.mean(every)) if every else float("nan"), "labels": len(every),
            "per_class": {c: float(np.mean(v)) for c, v in sorted(hits.items())},
        }
    return result
