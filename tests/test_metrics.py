import math

import pytest

from traffic_retrieval.core.metrics import METRIC_KEYS, ap_official, ap_strict, hit_at, score

NAMES = [f"{i}.jpg" for i in range(20)]


def ranking_with_hits(ranks, relevant_prefix="r"):
    """Ten names, relevant ones (r0.jpg, r1.jpg, ...) at the given 1-based ranks."""
    out, hits = [], iter(f"{relevant_prefix}{i}.jpg" for i in range(10))
    for rank in range(1, 11):
        out.append(next(hits) if rank in ranks else f"miss{rank}.jpg")
    return out


def test_hits_at_ranks_2_and_5_with_three_relevant():
    ranking = ranking_with_hits({2, 5})
    relevant = {"r0.jpg", "r1.jpg", "r2.jpg"}
    assert ap_official(ranking, relevant) == pytest.approx((1 / 2 + 2 / 5) / 2)  # 0.45
    assert ap_strict(ranking, relevant) == pytest.approx((1 / 2 + 2 / 5) / 3)  # 0.3


def test_one_hit_at_rank_one_is_perfect_officially_but_not_strictly():
    ranking = ranking_with_hits({1})
    relevant = {"r0.jpg", "other1.jpg", "other2.jpg", "other3.jpg"}
    assert ap_official(ranking, relevant) == 1.0
    assert ap_strict(ranking, relevant) == pytest.approx(1 / 4)


def test_no_hits_scores_zero():
    ranking = ranking_with_hits(set())
    assert ap_official(ranking, {"r0.jpg"}) == 0.0
    assert ap_strict(ranking, {"r0.jpg"}) == 0.0
    assert ap_strict(ranking, set()) == 0.0  # no relevant images: no division by zero


def test_more_than_ten_relevant_normalises_strict_by_ten():
    ranking = ranking_with_hits({1, 3, 10})
    relevant = {f"r{i}.jpg" for i in range(15)}
    total = 1 / 1 + 2 / 3 + 3 / 10
    assert ap_official(ranking, relevant) == pytest.approx(total / 3)
    assert ap_strict(ranking, relevant) == pytest.approx(total / 10)


def test_hits_below_rank_ten_are_ignored():
    ranking = ranking_with_hits(set()) + ["r0.jpg"]
    assert ap_official(ranking, {"r0.jpg"}) == 0.0
    assert hit_at(ranking, {"r0.jpg"}, 10) == 0.0


def test_duplicate_names_are_not_double_counted():
    ranking = ["a.jpg", "a.jpg", "b.jpg"] + NAMES[:7]
    relevant = {"a.jpg", "b.jpg"}
    # hits at ranks 1 and 3 (the repeat at rank 2 is a miss)
    assert ap_official(ranking, relevant) == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert ap_strict(ranking, relevant) == pytest.approx((1 / 1 + 2 / 3) / 2)


def test_recall_at_k_is_any_hit_in_top_k():
    ranking = ranking_with_hits({4})
    relevant = {"r0.jpg", "x.jpg"}
    assert [hit_at(ranking, relevant, k) for k in (1, 3, 4, 5, 10)] == [0.0, 0.0, 1.0, 1.0, 1.0]


def test_score_means_and_per_kind():
    rankings = [ranking_with_hits({2, 5}), ranking_with_hits({1}), ranking_with_hits(set())]
    relevant = [{"r0.jpg", "r1.jpg", "r2.jpg"}, {"r0.jpg", "x.jpg"}, {"r0.jpg"}]
    result = score(rankings, relevant, ["vehicle", "pedestrian", "vehicle"])
    assert set(result) == {*METRIC_KEYS, "queries", "per_kind"}
    assert result["queries"] == 3
    assert result["map_official"] == pytest.approx((0.45 + 1.0 + 0.0) / 3)
    assert result["map_strict"] == pytest.approx((0.3 + 0.5 + 0.0) / 3)
    assert result["recall@1"] == pytest.approx(1 / 3)
    assert result["recall@5"] == pytest.approx(2 / 3)
    assert result["recall@10"] == pytest.approx(2 / 3)
    vehicle = result["per_kind"]["vehicle"]
    assert vehicle["queries"] == 2 and vehicle["map_official"] == pytest.approx(0.45 / 2)
    assert result["per_kind"]["pedestrian"]["map_strict"] == pytest.approx(0.5)


def test_score_per_kind_only_for_kinds_present():
    result = score([ranking_with_hits({1})], [{"r0.jpg"}], ["vehicle"])
    assert list(result["per_kind"]) == ["vehicle"]
    assert score([ranking_with_hits({1})], [{"r0.jpg"}])["per_kind"] == {}


def test_perfect_ranking_scores_one():
    relevant = [{f"q{q}_{i}.jpg" for i in range(n)} for q, n in enumerate((1, 3, 10, 25))]
    rankings = [sorted(rel)[:10] + [f"pad{i}.jpg" for i in range(10 - min(len(rel), 10))] for rel in relevant]
    result = score(rankings, relevant)
    for key in METRIC_KEYS:
        assert math.isclose(result[key], 1.0), key


def test_score_rejects_mismatched_lengths_and_no_queries():
    with pytest.raises(ValueError, match="2 rankings but 1"):
        score([["a.jpg"], ["b.jpg"]], [{"a.jpg"}])
    with pytest.raises(ValueError, match="kinds"):
        score([["a.jpg"]], [{"a.jpg"}], ["vehicle", "pedestrian"])
    with pytest.raises(ValueError, match="no queries"):
        score([], [])
