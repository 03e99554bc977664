"""Query strategies on hand-made arrays with hand-checked answers."""

from __future__ import annotations

import numpy as np
import pytest

import dlabel_lab as dl
from dlabel_lab.labeling.strategies import STRATEGIES, select

PROBS = np.array([
    [0.98, 0.01, 0.01],   # sure
    [0.40, 0.35, 0.25],   # ambiguous between two
    [0.34, 0.33, 0.33],   # uniform: most uncertain for every measure
    [0.70, 0.20, 0.10],
])


@pytest.mark.parametrize("strategy", ["entropy", "margin", "least_confidence"])
def test_uncertainty_strategies_rank_the_uniform_clip_first_and_the_sure_one_last(strategy):
    sel = select(strategy, 4, probabilities=PROBS)
    assert sel.indices.tolist()[0] == 2 and sel.indices.tolist()[-1] == 0
    assert list(sel.scores) == sorted(sel.scores, reverse=True)
    assert len(sel.reasons) == 4 and strategy in sel.reasons[0]


def test_margin_differs_from_entropy_where_it_should():
    probs = np.array([[0.5, 0.5, 0.0], [0.4, 0.3, 0.3]])  # a tie between two vs spread over three
    assert select("margin", 1, probabilities=probs).indices.tolist() == [0]
    assert select("entropy", 1, probabilities=probs).indices.tolist() == [1]


def test_random_is_seeded_and_without_repeats():
    a = select("random", 3, probabilities=PROBS, seed=1).indices.tolist()
    assert a == select("random", 3, probabilities=PROBS, seed=1).indices.tolist()
    assert len(set(a)) == 3
    assert select("random", 10, probabilities=PROBS).indices.size == 4  # never more than the pool


def test_balanced_random_takes_equal_numbers_per_predicted_class():
    probs = np.array([[0.9, 0.1]] * 8 + [[0.1, 0.9]] * 2)
    sel = select("balanced_random", 4, probabilities=probs, seed=0)
    predicted = probs[sel.indices].argmax(axis=1)
    assert sorted(predicted.tolist()) == [0, 0, 1, 1]


def test_bald_prefers_the_clip_the_passes_disagree_on():
    agree = np.tile([[0.5, 0.5]], (6, 1))                 # uncertain but every pass says the same
    disagree = np.array([[0.95, 0.05], [0.05, 0.95]] * 3)  # each pass is sure, but of different classes
    sure = np.tile([[0.99, 0.01]], (6, 1))
    mc = np.stack([agree, disagree, sure], axis=1)          # (T=6, N=3, K=2)
    sel = select("bald", 1, mc_probabilities=mc)
    assert sel.indices.tolist() == [1]
    assert sel.scores[0] > 0.4  # close to log(2) = 0.69 nats
    assert select("entropy", 1, probabilities=mc.mean(axis=0)).indices.tolist() in ([0], [1])


def test_coreset_covers_the_pool_far_from_what_is_labelled():
    emb = np.array([[0.1, 0.0], [5.0, 0.0], [0.0, 9.0], [0.2, 0.1]])
    sel = select("coreset", 2, embeddings=emb, labelled_embeddings=[[0.0, 0.0]])
    assert sel.indices.tolist() == [2, 1]
    assert sel.scores[0] == pytest.approx(9.0)


def test_typiclust_takes_one_typical_clip_from_each_dense_cluster():
    rng = np.random.default_rng(0)
    a = rng.normal([0, 0], 0.1, size=(20, 2))
    b = rng.normal([10, 10], 0.1, size=(20, 2))
    outliers = np.array([[5.0, -8.0], [-7.0, 6.0]])
    emb = np.vstack([a, b, outliers])
    sel = select("typiclust", 2, embeddings=emb, seed=0)
    assert sorted(j // 20 for j in sel.indices.tolist()) == [0, 1]  # one of each cluster, no outlier


def test_cluster_margin_spreads_its_picks_over_clusters_of_uncertain_clips():
    probs = np.array([[0.5, 0.5]] * 10 + [[0.52, 0.48]] * 10 + [[0.99, 0.01]] * 10)
    emb = np.vstack([np.zeros((10, 2)), np.full((10, 2), 10.0), np.full((10, 2), -10.0)])
    emb = emb + np.random.default_rng(0).normal(0, 0.01, emb.shape)
    sel = select("cluster_margin", 2, probabilities=probs, embeddings=emb, candidates_per_pick=10)
    assert sorted(j // 10 for j in sel.indices.tolist()) == [0, 1]
    assert select("margin", 2, probabilities=probs).indices.max() < 10  # plain margin takes both from one cluster


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"strategy": "nope", "budget": 1, "probabilities": PROBS}, "unknown strategy"),
    ({"strategy": "entropy", "budget": 0, "probabilities": PROBS}, "budget must be a positive int"),
    ({"strategy": "bald", "budget": 1, "probabilities": PROBS}, "needs mc_probabilities"),
    ({"strategy": "entropy", "budget": 1, "probabilities": [[0.5, 0.6]]}, "must sum to 1"),
    ({"strategy": "entropy", "budget": 1, "probabilities": [0.5, 0.5]}, "shape"),
    ({"strategy": "cluster_margin", "budget": 1, "probabilities": PROBS, "embeddings": np.zeros((3, 2))},
     "N = 4"),
    ({"strategy": "coreset", "budget": 1, "embeddings": np.zeros((3, 2)), "labelled_embeddings": np.zeros((1, 5))},
     "dimensions"),
])
def test_bad_inputs_raise_config_error(kwargs, message):
    with pytest.raises(dl.ConfigError, match=message):
        select(**kwargs)


def test_every_strategy_returns_distinct_pool_positions():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet([1, 1, 1], size=30)
    mc = rng.dirichlet([1, 1, 1], size=(4, 30))
    emb = rng.normal(size=(30, 4))
    for strategy in STRATEGIES:
        sel = select(strategy, 5, probabilities=probs, mc_probabilities=mc, embeddings=emb, seed=1)
        assert len(set(sel.indices.tolist())) == 5 and sel.indices.min() >= 0 and sel.indices.max() < 30, strategy
        assert len(sel.scores) == len(sel.reasons) == 5


def test_typiclust_falls_back_to_core_set_when_the_library_finds_too_few_clusters(monkeypatch):
    from skactiveml.pool import TypiClust

    def covered(*args, **kwargs):  # what scikit-activeml 1.0.1 raises when every cluster is covered
        raise UnboundLocalError("cannot access local variable 'cluster_id'")

    monkeypatch.setattr(TypiClust, "query", covered)
    emb = np.vstack([np.zeros((6, 2)), np.ones((6, 2)), np.full((6, 2), 5.0)])
    sel = select("typiclust", 3, embeddings=emb, labelled_embeddings=np.zeros((2, 2)), seed=0)
    assert sorted(j // 6 for j in sel.indices.tolist()) == [0, 1, 2] or len(set(sel.indices.tolist())) == 3
    assert "duplicate embeddings" in sel.reasons[0] and sel.strategy == "typiclust"
