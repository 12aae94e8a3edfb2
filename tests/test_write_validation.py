"""The hot writes' validators: the inline check of the common case accepts exactly
what the general number check accepts, and everything else gets its message."""

import pytest

from maxine.api import validation
from maxine.api.validation import Invalid

BOUNDS = {key: (lo, hi) for key, _, lo, hi in validation.LOAD_FIELDS}


@pytest.mark.parametrize("key", sorted(BOUNDS))
def test_heartbeat_load_fields(key):
    lo, hi = BOUNDS[key]
    field = dict((k, n) for k, n, *_ in validation.LOAD_FIELDS)[key]
    for good in (lo, hi, int(lo), (lo + hi) / 2):
        assert validation.heartbeat({"nodeId": "a:b:1", key: good}) == ("a:b:1", {field: good})
    assert validation.heartbeat({"nodeId": "a:b:1", key: None}) == ("a:b:1", {})  # null: not reported
    for bad in (True, False, "1", [1], {"v": 1}, lo - 1, hi * 2 + 1, 10 ** 30, float("inf"), float("nan")):
        with pytest.raises(Invalid) as caught:
            validation.heartbeat({"nodeId": "a:b:1", key: bad})
        assert caught.value.details == [f"{key}: must be a number >= {lo:g} and <= {hi:g}"], bad


def test_heartbeat_reports_every_bad_field_and_the_node_id():
    with pytest.raises(Invalid) as caught:
        validation.heartbeat({"nodeId": " x", "cpu": 2, "qps": "many", "inFlight": 3})
    assert [d.split(":")[0] for d in caught.value.details] == ["nodeId", "cpu", "qps"]


def test_response_time():
    assert validation.response_time({"nodeId": "n", "responseTime": 0}) == ("n", 0.0, True)
    assert validation.response_time({"nodeId": "n", "responseTime": 12.5, "statusCode": 503}) == ("n", 12.5, False)
    for bad in (None, True, "12", -0.5, 86_400_001, float("inf"), float("nan")):
        with pytest.raises(Invalid) as caught:
            validation.response_time({"nodeId": "n", "responseTime": bad})
        assert caught.value.details[0].startswith("responseTime: "), bad
    with pytest.raises(Invalid):
        validation.response_time({"nodeId": "n"})
