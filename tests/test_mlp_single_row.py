"""The single-row forward (``NumpyMLP.predict_one``, advanced-ml's path on every
client report) and the batched one (``predict``) are one model: the same arrays,
equal outputs to rounding — on random rows, on the shipped model over real node
states, and through advanced-ml's cache (one reported node vs a batch)."""

from __future__ import annotations

import math
import random
import pathlib
import threading

import numpy as np
import pytest

from maxine.balancers import PickContext
from maxine.balancers.learned import CACHE_KEY, AdvancedML
from maxine.models.features import RAW, RELATIVE_FEATURES, feature_matrix, node_row, raw_row, relative_matrix, relative_row
from maxine.models.mlp import MLPError, NumpyMLP, diagonal_blocks, ensemble_arrays
from maxine.registry import Pool

from test_learned_features import random_states
from test_learned_strategy import fleet, make_store

MODELS = pathlib.Path(__file__).resolve().parents[1] / "models" / "advanced-ml"
SHIPPED = MODELS / (MODELS / "PROMOTED").read_text().strip() / "weights.npz"


def random_mlp(sizes, seed=0):
    return NumpyMLP(random_arrays(sizes, seed))


def random_arrays(sizes, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {"mean": rng.normal(size=sizes[0]), "scale": rng.uniform(0.5, 3.0, size=sizes[0])}
    for k, (a, b) in enumerate(zip(sizes, sizes[1:])):
        arrays[f"W{k}"] = rng.normal(size=(a, b)) / math.sqrt(a)
        arrays[f"b{k}"] = rng.normal(size=b) * 0.1
    return arrays


@pytest.mark.parametrize("sizes", [(19, 64, 64, 1), (5, 1), (7, 3, 2), (4, 8, 8, 8, 3)])
def test_single_row_equals_batched_on_random_rows(sizes):
    mlp = random_mlp(sizes, seed=len(sizes))
    rows = np.random.default_rng(1).normal(scale=3.0, size=(300, sizes[0]))
    batched = mlp.predict(rows)
    single = np.array([mlp.predict_one(row.tolist()) for row in rows])
    np.testing.assert_allclose(single, batched, rtol=1e-12, atol=1e-12)
    assert np.ptp(single) > 0.1  # the rows reach different outputs (not all ReLU-dead)
    # ints and tuples are rows too
    assert mlp.predict_one(tuple(range(sizes[0]))) == pytest.approx(float(mlp.predict(np.arange(sizes[0])[None])[0]),
                                                                    rel=1e-12, abs=1e-12)


def test_single_row_equals_batched_on_real_node_states():
    mlp = NumpyMLP(dict(np.load(SHIPPED)))
    assert mlp.n_in == len(RELATIVE_FEATURES)
    states = random_states(400, seed=3)
    raw = [raw_row(s, now) for s, now in states]
    cols = {k: np.array([r[i] for r in raw]) for i, k in enumerate(RAW)}
    batched = mlp.predict(relative_matrix(feature_matrix(cols), cols["scale_ms"])[0])
    single = np.array([mlp.predict_one(relative_row(node_row(s, now), s.scale_ms)[0]) for s, now in states])
    assert np.all(np.isfinite(single))
    np.testing.assert_allclose(single, batched, rtol=1e-12, atol=1e-12)


def test_both_paths_read_the_same_weights():
    mlp = random_mlp((6, 5, 2))
    row = [0.3, -1.0, 2.0, 0.0, 1.5, -0.2]
    before = mlp.predict_one(row)
    w, b = mlp.layers[-1]
    b += 1.0  # the batched path's bias, in place: the single-row path must see it too
    assert mlp.predict_one(row) == pytest.approx(before + 1.0, rel=1e-12)
    assert float(mlp.predict(np.array([row]))[0]) == pytest.approx(before + 1.0, rel=1e-12)


def test_single_row_while_another_thread_holds_the_buffers():
    mlp = random_mlp((19, 64, 64, 1))
    row = np.random.default_rng(2).normal(size=19).tolist()
    expected = float(mlp.predict(np.array([row]))[0])
    assert mlp._lock.acquire()
    try:  # the buffers are busy: the batched pass answers, unchanged
        assert mlp.predict_one(row) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    finally:
        mlp._lock.release()
    results = []

    def worker():
        results.extend(mlp.predict_one(row) for _ in range(200))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_allclose(results, expected, rtol=1e-12, atol=1e-12)


def test_a_reported_node_is_scored_as_in_a_batch(tmp_path):
    """learn_one re-scores one node with the single-row pass; refresh_pending a batch:
    the cached predictions agree."""
    store = make_store(tmp_path)
    one, batch = AdvancedML(store=store), AdvancedML(store=store)
    nodes = fleet(12)
    for k, node in enumerate(nodes):
        node.state.on_load_report(0.0, in_flight=k % 5, cpu=0.1 * (k % 9), qps=5.0 + k, error_rate=0.0,
                                  latency_ms=10.0 + 3 * k)
        for j in range(k % 4):
            node.state.on_dispatch(0.1 + 0.01 * j)
    pool = Pool("svc", tuple(nodes))
    one.pick(pool, PickContext(now=0.4, rng=random.Random(0)))  # the pool's book watches them while it lives
    got = []
    for node in nodes:
        node.state.on_result(25.0, True, 0.5)
        one.learn_one(node, 25.0, True, 0.5)
        got.append(node.state.extra.pop(CACHE_KEY)[3])
    batch._pending.update({id(n): n for n in nodes})
    assert batch.refresh_pending(0.5, limit=1000) == len(nodes)
    want = [node.state.extra[CACHE_KEY][3] for node in nodes]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert len(set(got)) > 1 and pool.nodes == tuple(nodes)


def test_a_report_reaches_the_cost_books_through_on_result(tmp_path):
    """learn_one re-scores the reported node without telling the cost books again:
    on_result, which always runs just before it, marked the node in every book
    watching it, so the next pick recomputes its entry from the new score."""
    s = AdvancedML(store=make_store(tmp_path), refresh_s=1e9)  # no sweeps: only marked entries are recomputed
    nodes = fleet(4)
    for node in nodes:
        node.state.on_load_report(0.0, in_flight=1, cpu=0.5, qps=10.0, error_rate=0.0, latency_ms=40.0)
    pool = Pool("svc", tuple(nodes))
    s.pick(pool, PickContext(now=0.1, rng=random.Random(0)))  # builds the book, scores every node
    book = pool.cache[s._key]
    node = nodes[2]
    before = node.state.extra[CACHE_KEY]
    node.state.on_result(500.0, True, 0.2)
    s.learn_one(node, 500.0, True, 0.2)
    assert node.state.extra[CACHE_KEY] is not before and node.state.extra[CACHE_KEY][2] == 0.2  # re-scored
    assert node.state in book.dirty
    s.pick(pool, PickContext(now=0.21, rng=random.Random(1)))
    assert book.stamp[2] == 0.21 and book.stamp[0] < 0.21  # only the reported node's entry was recomputed


def test_an_ensemble_is_one_net_that_outputs_its_members_mean():
    members = [random_arrays([6, 8, 8, 1], seed=s) for s in range(3)]
    for m in members[1:]:  # trained on the same rows: the same standardisation
        m["mean"], m["scale"] = members[0]["mean"], members[0]["scale"]
    ensemble = NumpyMLP(ensemble_arrays(members))
    nets = [NumpyMLP(m) for m in members]
    rows = np.random.default_rng(9).normal(size=(50, 6)) * 3
    assert np.allclose(ensemble.predict(rows), np.mean([n.predict(rows) for n in nets], axis=0))
    assert ensemble.predict_one(rows[0].tolist()) == pytest.approx(np.mean([n.predict_one(rows[0].tolist()) for n in nets]))
    assert ensemble.layers[1][0].shape == (3, 8, 8)  # the hidden layers side by side, kept as their blocks


def test_block_diagonal_layers_are_multiplied_by_blocks_as_the_dense_product():
    members = [random_arrays([6, 8, 5, 5, 1], seed=s) for s in range(3)]
    for m in members[1:]:
        m["mean"], m["scale"] = members[0]["mean"], members[0]["scale"]
    arrays = ensemble_arrays(members)
    mlp = NumpyMLP(arrays)
    assert [w.shape for w, _ in mlp.layers] == [(6, 24), (3, 8, 5), (3, 5, 5), (15, 1)]
    rows = np.random.default_rng(4).normal(size=(40, 6)) * 3
    dense = (rows - arrays["mean"]) / arrays["scale"]
    for k in range(4):
        dense = dense @ arrays[f"W{k}"] + arrays[f"b{k}"]
        if k < 3:
            dense = np.maximum(dense, 0.0)
    np.testing.assert_allclose(mlp.predict(rows), dense[:, 0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose([mlp.predict_one(r) for r in rows.tolist()], dense[:, 0], rtol=1e-12, atol=1e-12)
    assert np.ptp(dense[:, 0]) > 0.1
    assert mlp.forward(rows[0]).shape == (1,)  # a 1-D row still gives (n_out,)


def test_diagonal_blocks_finds_the_members_and_only_them():
    rng = np.random.default_rng(5)
    assert diagonal_blocks(rng.normal(size=(12, 12))) == 1
    w = np.zeros((12, 8))
    w[:6, :4], w[6:, 4:] = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    assert diagonal_blocks(w) == 2
    w[0, 7] = 1e-300  # anything off the diagonal: dense
    assert diagonal_blocks(w) == 1
    assert diagonal_blocks(np.eye(6)) == 6


def test_an_ensemble_refuses_members_standardised_differently():
    members = [random_arrays([6, 8, 1], seed=s) for s in range(2)]
    members[1]["scale"] = members[1]["scale"] * 2
    with pytest.raises(MLPError, match="standardised differently"):
        ensemble_arrays(members)
