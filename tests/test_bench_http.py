"""``maxine bench http``'s bookkeeping: rounds of one workload merge into one
result, and bad arguments are refused before anything starts."""

import math

from maxine.bench.http import Result, bench_http_main, merge


def test_rounds_merge_into_one_result():
    a = Result("GET /discover x", 1000.0, 2.0, 5.0, 40.0, 5000, 0)
    b = Result("GET /discover x", 3000.0, 1.0, 9.0, 20.0, 15000, 2)
    m = merge([a, b])
    assert m.name == a.name and m.requests == 20000 and m.errors == 2
    assert m.requests_per_s == 2000.0 and m.p50_ms == 1.5 and m.p99_ms == 9.0
    assert math.isclose(m.cpu_us_per_request, (40.0 * 5000 + 20.0 * 15000) / 20000)
    assert merge([a]) is a


def test_bad_rounds_are_refused(capsys):
    assert bench_http_main(["--rounds", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err
