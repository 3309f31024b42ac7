"""A reproduce run opened for a diagnosis on its own test split: shared by the benchmark scripts that
read a run's attribute heads against the truth the synthetic data keeps (select_fusion.py,
headroom.py, attribute_loss.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from traffic_retrieval.core.attribute_groups import encode_subject
from traffic_retrieval.core.layout import Vocabulary, find_vocabulary, split_queries_and_gallery
from traffic_retrieval.retrieval.fusion import AttributeHeads
from traffic_retrieval.retrieval.models import LoadedModel, ModelSettings, load_model
from traffic_retrieval.synthetic.generate import drawn_subjects
from traffic_retrieval.training.runs import run_data


@dataclass
class StudyRun:
    """A run's model and data, and the test split's queries and gallery images."""

    folder: Path
    data: Path
    vocab: Vocabulary
    loaded: LoadedModel
    queries: list[str]
    paths: list[Path]

    @classmethod
    def open(cls, folder: Path) -> "StudyRun":
        data = run_data(folder)
        queries, paths = split_queries_and_gallery(data, "test")
        return cls(folder, data, find_vocabulary(data), load_model(ModelSettings(None, str(folder))), queries, paths)

    def heads(self) -> AttributeHeads:
        """The attribute heads the notebook fitted for this run."""
        return AttributeHeads.load(self.folder / "attribute_heads.safetensors")

    def truth(self, groups) -> np.ndarray:
        """Each gallery image's drawn attribute values, encoded as the heads' targets (images x groups)."""
        subjects = drawn_subjects(self.data, "test")
        return np.array([encode_subject(subjects[p.name], groups) for p in self.paths])


def official(metrics: dict) -> dict:
    """Official mAP@10 overall and per kind, from a scorer's metrics."""
    return {"all": metrics["map_official"],
            **{k: metrics["per_kind"][k]["map_official"] for k in ("vehicle", "pedestrian")}}
