"""``maxine bench http``'s bookkeeping: rounds of one workload merge into one
result, the POST endpoints are compared with both references, and bad
arguments are refused before anything starts; the references are sent the
same requests as the workloads they are compared with."""

import math

from maxine.bench.http import (Result, _lua, bench_http_main, discover_paths, merge, reference_workloads, summarise,
                                write_workloads)


def test_rounds_merge_into_one_result():
    a = Result("GET /discover x", 1000.0, 2.0, 5.0, 40.0, 5000, 0)
    b = Result("GET /discover x", 3000.0, 1.0, 9.0, 20.0, 15000, 2)
    m = merge([a, b])
    assert m.name == a.name and m.requests == 20000 and m.errors == 2
    assert m.requests_per_s == 2000.0 and m.p50_ms == 1.5 and m.p99_ms == 9.0
    assert math.isclose(m.cpu_us_per_request, (40.0 * 5000 + 20.0 * 15000) / 20000)
    assert merge([a]) is a


def _result(name: str, rps: float, cpu: float = 50.0) -> Result:
    return Result(name, rps, 1.0, 2.0, cpu, int(rps * 2), 0)


def test_posts_are_compared_with_both_references():
    results = [_result("reference", 30000.0), _result("reference POST (reads body)", 16000.0),
               _result("GET /discover round-robin", 27000.0),
               _result("POST /heartbeat", 14000.0, cpu=62.5), _result("POST /record-response-time", 8000.0),
               _result("reference (after)", 34000.0), _result("reference POST (after)", 20000.0)]
    rows, verdicts = summarise(results)
    by_name = {row["name"]: row for row in rows}
    heartbeat = by_name["POST /heartbeat"]
    assert math.isclose(heartbeat["vs_post_reference"], 14000.0 / 18000.0)  # mean of the two POST references
    assert math.isclose(heartbeat["vs_reference"], 14000.0 / 32000.0)  # mean of the two GET references
    assert by_name["GET /discover round-robin"]["vs_post_reference"] is None
    assert math.isclose(by_name["GET /discover round-robin"]["vs_reference"], 27000.0 / 32000.0)
    assert math.isclose(heartbeat["cpu_vs_post_reference"], 50.0 / 62.5)
    assert "MISS POST /heartbeat 0.78x POST reference (target >= 0.8); 0.44x GET reference; " \
           "CPU/request 0.80x POST reference" in verdicts
    assert "MISS POST /record-response-time 0.44x POST reference (target >= 0.8); 0.25x GET reference; " \
           "CPU/request 1.00x POST reference" in verdicts
    results[3] = _result("POST /heartbeat", 14400.0)
    assert "PASS POST /heartbeat 0.80x POST reference (target >= 0.8); 0.45x GET reference; " \
           "CPU/request 1.00x POST reference" in summarise(results)[1]


def test_bad_arguments_are_refused(capsys):
    assert bench_http_main(["--rounds", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err
    assert bench_http_main(["--writes", "heartbeat,nope"]) == 2
    assert "unknown --writes nope" in capsys.readouterr().err


def test_references_get_the_same_requests_as_what_they_are_compared_with():
    population = [{"serviceName": f"svc-{s}", "host": "127.0.0.1", "port": 20000 + s, "nodeId": f"svc-{s}:127.0.0.1"}
                  for s in range(3)]
    get, post = reference_workloads("ref", "reference", "reference POST", 3, [b["nodeId"] for b in population])
    assert get[:2] == ("reference", "ref") and get[2] == _lua("GET", discover_paths("round-robin", 3))
    writes = {name: script for name, _, script in write_workloads("srv", population, ["record-response-time"])}
    assert post[:2] == ("reference POST", "ref") and post[2] == writes["POST /record-response-time"]
