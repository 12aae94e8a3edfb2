"""The feature row is one definition: the trainer's (vectorised, from the
telemetry log) and the server's (per node, live NodeState) rows are equal."""

from __future__ import annotations

import random

import numpy as np
import pytest

from maxine.models.features import (FEATURES, RAW, RELATIVE_FEATURES, feature_matrix, node_features, node_row,
                                   raw_row, relative_matrix, relative_row)
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


def test_scale_free_row_is_one_definition_too():
    states = random_states(400, seed=3)
    rows = [node_row(s, now) for s, now in states]
    scales = [s.scale_ms for s, _ in states]
    trainer, trainer_log_s = relative_matrix(np.array(rows), np.array([np.nan if v is None else v for v in scales]))
    server = [relative_row(r, v) for r, v in zip(rows, scales)]
    assert trainer.shape == (400, len(RELATIVE_FEATURES)) and np.all(np.isfinite(trainer))
    np.testing.assert_allclose(np.array([r for r, _ in server]), trainer, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose([log_s for _, log_s in server], trainer_log_s, rtol=1e-12, atol=1e-12)
    # every scale source occurs in these states
    assert set(trainer[:, RELATIVE_FEATURES.index("scale_source")]) >= {0.0, 1.0, 3.0}


def test_scale_free_row_is_the_same_at_any_time_scale():
    """Two nodes whose every time is k times the other's (service times, report ages, latencies; rates
    1/k) give the same row, and log scales k apart: the model sees them alike. (Peak-EWMA's decay
    has a fixed time constant, so that one feature differs a little; the two ages in seconds are
    absolute by design.)"""
    def node(k):
        s = NodeState()
        s.on_load_report(0.0, in_flight=3, cpu=0.6, qps=60.0 / k, error_rate=0.01, latency_ms=8.0 * k)
        s.on_dispatch(0.001 * k)
        s.on_result(11.0 * k, True, 0.002 * k)
        return node_row(s, 0.004 * k), s.scale_ms
    (fast, log_fast), (slow, log_slow) = relative_row(*node(1.0)), relative_row(*node(10.0))
    absolute = len(RELATIVE_FEATURES) - 2  # age_s, since_result_s
    assert fast[absolute:] != slow[absolute:]
    fast, slow = fast[:absolute], slow[:absolute]
    peak = RELATIVE_FEATURES.index("peak_ewma_rel")
    assert abs(fast.pop(peak) - slow.pop(peak)) < 0.01
    np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-9)
    assert abs((log_slow - log_fast) - np.log(10.0)) < 1e-9


def test_the_latency_scale_averages_the_first_reports_then_follows_slowly():
    from maxine.telemetry import SCALE_REPORTS

    s = NodeState()
    assert s.scale_ms is None
    reports = [100.0] + [10.0] * (SCALE_REPORTS - 1)  # one noisy first report does not set it for long
    for k, latency in enumerate(reports, 1):
        s.on_load_report(float(k), latency_ms=latency)
        assert s.scale_ms == pytest.approx(sum(reports[:k]) / k)
    before = s.scale_ms
    s.on_load_report(30.0, latency_ms=1000.0)  # from then on a step of 1/SCALE_REPORTS of the difference
    assert s.scale_ms == pytest.approx(before + (1000.0 - before) / SCALE_REPORTS)
    s.on_load_report(31.0, in_flight=2)  # a report without a latency leaves it alone
    assert s.scale_ms == pytest.approx(before + (1000.0 - before) / SCALE_REPORTS)


def test_features_respond_to_dispatches_and_staleness():
    s = NodeState()
    s.on_load_report(0.0, in_flight=2, cpu=0.5, qps=10.0, error_rate=0.0, latency_ms=40.0)
    before = dict(zip(FEATURES, node_row(s, 0.5)))
    s.on_dispatch(0.5)
    after = dict(zip(FEATURES, node_row(s, 0.5)))
    assert after["rif_est"] > before["rif_est"] and after["dispatched_since"] > before["dispatched_since"]
    stale = dict(zip(FEATURES, node_row(s, 500.0)))
    assert stale["has_report"] == 0.0 and stale["age_s"] == 10.0
