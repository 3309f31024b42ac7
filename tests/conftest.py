"""Shared fixtures: the reference label text of the real challenge, read in place (never copied).

``../shared/data`` lives outside the repository: a test that reads it skips where it is absent, but
fails under CI (``CI`` set, as .ci/run sets it), where it is always there, so that a moved or
renamed file cannot turn those tests into silent skips.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# No per-example deadline: a property's examples are timed on whatever the machine is doing, and a
# loaded CI runner made correct examples fail as too slow.
settings.register_profile("traffic-retrieval", deadline=None)
settings.load_profile("traffic-retrieval")

@pytest.fixture(scope="module")
def one_faiss_thread():
    """faiss's OpenMP at one thread for a module's tests (the engine tests), restored after it."""
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _absent(what: Path) -> None:
    message = f"reference data {what} is absent (it lives outside the repository)"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; under CI it must be there")
    pytest.skip(message)


def shared_file(name: str) -> Path:
    """A file of ``../shared/data``: skips where absent, fails under CI."""
    path = SHARED_DATA / name
    if not path.is_file():
        _absent(path)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repository: skips where absent, fails under CI."""
    if not SHARED_DATA.is_dir():
        _absent(SHARED_DATA)
    return SHARED_DATA


@pytest.fixture(scope="session")
def drawn_dataset(tmp_path_factory):
    """A factory of small drawn datasets, each with one random initialisation of the tiny model saved
    beside it (every command of a test must rank with the same weights): ``make(name, seed, **sizes)``
    returns (data folder, checkpoint)."""
    import torch

    from traffic_retrieval.retrieval.models import ModelSettings, load_model
    from traffic_retrieval.synthetic.generate import generate

    def make(name: str, seed: int, **sizes: int) -> tuple[Path, Path]:
        root = tmp_path_factory.mktemp(name)
        generate(root / "data", seed=seed, workers=1, progress=False, **sizes)
        torch.manual_seed(0)
        checkpoint = root / "random.pt"
        torch.save(load_model(ModelSettings()).model.state_dict(), checkpoint)
        return root / "data", checkpoint

    return make
