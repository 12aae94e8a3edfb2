"""The feature row is one definition: the trainer's (vectorised, from the
telemetry log) and the server's (per node, live NodeState) rows are equal."""

from __future__ import annotations

import random

import numpy as np

from maxine.models.features import FEATURES, RAW, feature_matrix, node_features, node_row, raw_row
from maxine.telemetry import NodeState
from maxine.training.telemetry_log import COLUMNS, TelemetryLogWriter, read_log


def random_states(n: int, seed: int = 0):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = NodeState()
        t = 0.0
        for _ in range(rng.randint(0, 40)):
            t += rng.random()
            r = rng.random()
            if r < 0.4:
                s.on_dispatch(t)
            elif r < 0.8:
                s.on_result(rng.expovariate(0.02), rng.random() > 0.1, t)
            else:
                s.on_load_report(t, in_flight=rng.randint(0, 9), cpu=rng.random(), qps=rng.random() * 50,
                                 error_rate=rng.random() * 0.1,
                                 latency_ms=rng.random() * 100 if rng.random() > 0.2 else None)
        out.append((s, t + rng.random() * (200 if rng.random() < 0.1 else 5)))  # some reports go stale
    return out


def test_server_row_equals_trainer_row_through_the_log(tmp_path):
    states = random_states(400)
    writer = TelemetryLogWriter(str(tmp_path), segment_rows=150)
    for k, (s, now) in enumerate(states):
        writer.append(raw_row(s, now) + [k, 0, 1, 50.0, np.nan, np.nan, 0])
    writer.close()
    cols = read_log(str(tmp_path))
    assert len(cols["now"]) == 400 and set(COLUMNS) <= set(cols)
    trainer = feature_matrix(cols)
    server = np.array([node_row(s, now) for s, now in states])
    assert trainer.shape == (400, len(FEATURES))
    assert np.all(np.isfinite(trainer))
    np.testing.assert_allclose(server, trainer, rtol=1e-12, atol=1e-12)
    # node_features is literally feature_matrix on one row
    s, now = states[7]
    np.testing.assert_array_equal(node_features(s, now), feature_matrix({k: [v] for k, v in zip(RAW, raw_row(s, now))})[0])


def test_features_respond_to_dispatches_and_staleness():
    s = NodeState()
    s.on_load_report(0.0, in_flight=2, cpu=0.5, qps=10.0, error_rate=0.0, latency_ms=40.0)
    before = dict(zip(FEATURES, node_row(s, 0.5)))
    s.on_dispatch(0.5)
    after = dict(zip(FEATURES, node_row(s, 0.5)))
    assert after["rif_est"] > before["rif_est"] and after["dispatched_since"] > before["dispatched_since"]
    stale = dict(zip(FEATURES, node_row(s, 500.0)))
    assert stale["has_report"] == 0.0 and stale["age_s"] == 10.0
