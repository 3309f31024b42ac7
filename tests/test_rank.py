"""Blocked top-k search equals a brute-force full sort."""

from __future__ import annotations

import numpy as np
import pytest

from traffic_retrieval.retrieval.rank import topk_blocked

N_QUERIES, N_GALLERY, DIM = 10, 50, 16


def random_data(seed: int, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian queries and gallery whose scores have no near-ties (within float32 error),
    so that the expected order is unambiguous."""
    rng = np.random.default_rng(seed)
    while True:
        queries, gallery = rng.standard_normal((N_QUERIES, DIM)), rng.standard_normal((N_GALLERY, DIM))
        gaps = np.diff(np.sort(queries @ gallery.T, axis=1), axis=1)
        if gaps.min() > 1e-4:
            return queries.astype(dtype), gallery.astype(dtype)


def brute_force(queries, gallery, k, valid=None) -> tuple[np.ndarray, np.ndarray]:
    scores = queries.astype(np.float64) @ gallery.astype(np.float64).T
    if valid is not None:
        scores[:, ~valid] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, : min(k, N_GALLERY if valid is None else int(valid.sum()))]
    return np.take_along_axis(scores, order, axis=1), order


@pytest.mark.parametrize("block", [1, 3, N_QUERIES, 64])
@pytest.mark.parametrize("k", [1, 5, N_GALLERY, N_GALLERY + 30])
def test_equals_brute_force(block, k):
    queries, gallery = random_data(seed=block * 100 + k)
    scores, indices = topk_blocked(queries, gallery, k, block=block)
    want_scores, want_indices = brute_force(queries, gallery, k)
    assert scores.shape == indices.shape == (N_QUERIES, min(k, N_GALLERY))
    assert scores.dtype == np.float32 and indices.dtype == np.int64
    np.testing.assert_array_equal(indices, want_indices)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("block", [3, N_QUERIES, 64])
@pytest.mark.parametrize("k", [5, N_GALLERY + 30])
def test_valid_mask_is_never_returned(block, k):
    queries, gallery = random_data(seed=7 + block + k)
    valid = np.random.default_rng(k).random(N_GALLERY) < 0.4
    scores, indices = topk_blocked(queries, gallery, k, block=block, valid=valid)
    want_scores, want_indices = brute_force(queries, gallery, k, valid)
    assert indices.shape == (N_QUERIES, min(k, int(valid.sum())))
    assert valid[indices].all()
    np.testing.assert_array_equal(indices, want_indices)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)


def test_float64_and_non_contiguous_inputs():
    queries, gallery = random_data(seed=3, dtype=np.float64)
    gallery_t = np.asfortranarray(gallery)
    scores, indices = topk_blocked(queries[::-1], gallery_t, 4, block=4)
    want_scores, want_indices = brute_force(queries[::-1], gallery, 4)
    np.testing.assert_array_equal(indices, want_indices)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)


def test_nothing_valid_gives_empty_rows():
    queries, gallery = random_data(seed=5)
    scores, indices = topk_blocked(queries, gallery, 10, valid=np.zeros(N_GALLERY, bool))
    assert scores.shape == indices.shape == (N_QUERIES, 0)


@pytest.mark.parametrize("budget", [1, 7 * (DIM * 4 + 3 * 4), 10**9])
def test_row_blocks_of_any_size_equal_brute_force(budget):
    """Budgets of one row, of 7 rows (blocks of 50 = 7 x 7 + 1), and of the whole gallery; query blocks
    of 3 (the last one shorter): every pair of blocks shares one score buffer."""
    queries, gallery = random_data(5)
    scores, indices = topk_blocked(queries, gallery, 10, block=3, budget=budget)
    expected_scores, expected_indices = brute_force(queries, gallery, 10)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5, atol=1e-6)


MEASURE = """
import numpy as np
from pathlib import Path
from traffic_retrieval.retrieval.rank import topk_blocked
rng = np.random.default_rng(0)
gallery = rng.standard_normal((200_000, 64), dtype=np.float32)
queries = rng.standard_normal((1024, 64), dtype=np.float32)
topk_blocked(queries[:8], gallery[:1000], 10)  # torch's own first-use allocations
def kib(key):
    return next(int(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(key))
Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
before = kib("VmRSS:")
topk_blocked(queries, gallery, 10, budget=BUDGET)
print((kib("VmHWM:") - before) * 1024)
"""


def test_a_search_holds_no_more_than_its_budget():
    """Peak RSS growth of a search of 1,024 queries over 200,000 in-memory rows with a 256 MiB budget
    (a score block of about 250 MB): within the budget. Holding two score blocks at once, as a new
    matrix per block did, grew by twice the budget."""
    import subprocess
    import sys

    budget = 256 * 2**20
    done = subprocess.run([sys.executable, "-c", MEASURE.replace("BUDGET", str(budget))],
                          capture_output=True, text=True, check=True)
    growth = int(done.stdout.strip().splitlines()[-1])
    assert growth <= 1.1 * budget, f"grew {growth / 2**20:.0f} MiB for a budget of {budget / 2**20:.0f} MiB"
