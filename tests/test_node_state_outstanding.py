"""A load report bounds this registry's unanswered dispatches (NodeState.outstanding)."""

from __future__ import annotations

from maxine.telemetry import NodeState, OutstandingCounter


def _state_with_reports(now: float) -> NodeState:
    state = NodeState()
    state.on_load_report(now, in_flight=0, cpu=0.0, qps=0.0)
    return state


def test_an_idle_nodes_report_forgets_dispatches_that_were_never_reported():
    state = _state_with_reports(0.0)
    state.on_dispatch(0.1)
    state.on_dispatch(0.2)  # two callers that never report back
    assert state.outstanding.count(0.5) == 2
    state.on_load_report(1.0, in_flight=0, cpu=0.0, qps=0.0)  # they may still be on the wire
    assert state.outstanding.count(1.0) == 2
    # a whole window with nothing sent, nothing at the node and nothing answered
    state.on_load_report(2.0, in_flight=0, cpu=0.0, qps=0.0)
    assert state.outstanding.count(2.0) == 0


def test_dispatches_at_the_node_or_answered_in_the_window_are_kept():
    state = _state_with_reports(0.0)
    for k in range(5):
        state.on_dispatch(0.1 * (k + 1))
    state.on_load_report(1.0, in_flight=0, cpu=0.5, qps=0.0)  # all five may still be on the wire
    assert state.outstanding.count(1.0) == 5
    state.on_load_report(2.0, in_flight=2, cpu=0.5, qps=1.0)  # none sent since: at most 2 + 1 are ours
    assert state.outstanding.count(2.0) == 3
    state.on_result(50.0, True, 2.1)  # reports retire the oldest as before
    assert state.outstanding.count(2.1) == 2


def test_a_report_without_qps_or_the_first_report_trims_nothing():
    state = NodeState()
    state.on_dispatch(0.1)
    state.on_load_report(1.0, in_flight=0, qps=0.0)  # first report: no window to judge by
    state.on_load_report(2.0, in_flight=0)  # no qps: unknown how many were answered
    assert state.outstanding.count(2.0) == 1


def test_dispatches_older_than_the_ttl_leave_bucket_by_bucket():
    counter = OutstandingCounter(ttl=16.0)  # sixteen 1 s buckets
    counter.add(0.5)
    counter.add(1.5)
    counter.add(1.9)
    assert counter.count(1.99) == 3
    assert counter.count(16.0) == 2  # the bucket [0, 1) left the window
    assert counter.count(17.0) == 0
    counter.add(40.2)  # after a long silence the ring starts afresh
    assert counter.count(40.3) == 1


def test_a_clock_that_steps_back_counts_in_the_newest_bucket():
    counter = OutstandingCounter(ttl=16.0)
    counter.add(5.5)
    counter.add(3.0)
    assert counter.count(5.9) == 2
    assert counter.remove(5.9) and counter.count(5.9) == 1
    assert counter.count(20.9) == 1  # both sat in the bucket [5, 6), inside the window until 21
    assert counter.count(21.0) == 0
