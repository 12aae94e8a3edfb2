"""``maxine bench http``'s bookkeeping: rounds of one workload merge into one
result, the POST endpoints are compared with both references, and bad
arguments are refused before anything starts; the references are sent the
same requests as the workloads they are compared with."""

import argparse
import math

from maxine.bench.http import (PERCENT_GRID, Result, _lua, bench_http_main, discover_paths, merge,
                               paired_ratios, reference_workloads, register_population, round_sequence, run_wrk,
                               summarise, write_workloads)
from maxine.bench.process import maxine_server


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
    assert "MISS POST /heartbeat 0.78x POST reference (target >= 0.8; of whole-run means); 0.44x GET reference; " \
           "CPU/request 0.80x POST reference" in verdicts
    assert "MISS POST /record-response-time 0.44x POST reference (target >= 0.8; of whole-run means); " \
           "0.25x GET reference; CPU/request 1.00x POST reference" in verdicts
    results[3] = _result("POST /heartbeat", 14400.0)
    assert "PASS POST /heartbeat 0.80x POST reference (target >= 0.8; of whole-run means); 0.45x GET reference; " \
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


def test_wrk_runs_the_workload_scripts_without_errors_and_reports_percentiles():
    """The Lua scripts are real wrk scripts: a broken one would send plain ``GET /``."""
    args = argparse.Namespace(threads=1, connections=4, duration=1)
    with maxine_server() as srv:
        population = register_population(srv.url, 2, 2)
        script = _lua("GET", discover_paths("round-robin", 2))
        discover = run_wrk(srv, "GET /discover round-robin", "/", args, script)
        heartbeat = dict((name, script) for name, _, script in write_workloads(srv, population, ["heartbeat"]))
        beat = run_wrk(srv, "POST /heartbeat", "/", args, heartbeat["POST /heartbeat"])
    for result in (discover, beat):
        assert result.requests > 100 and result.errors == 0
        percents = [p for p, _ in result.percentiles]
        latencies = [ms for _, ms in result.percentiles]
        assert percents == [float(p) for p in PERCENT_GRID]
        assert latencies == sorted(latencies) and latencies[-1] > 0


def test_a_workload_with_failed_requests_is_an_error():
    results = [_result("reference", 30000.0), Result("GET /discover round-robin", 27000.0, 1.0, 2.0, 50.0, 54000, 54000)]
    verdicts = summarise(results)[1]
    assert "ERROR GET /discover round-robin: 54000 of 54000 requests failed" in " ".join(verdicts)


def test_a_strategy_is_judged_against_the_round_robin_runs_beside_it():
    """Round-robin before and after each strategy in the same round; the verdict uses the
    median of those paired ratios, so a slow spell covering a pair cancels out."""
    def run(name, rps):
        return Result(name, rps, 1.0, 2.0, 50.0, int(rps), 0)
    rr, s1, s2, ref = "GET /discover round-robin", "GET /discover a", "GET /discover b", "reference"
    sequence, control_of = round_sequence(("reference", None, None), ("reference POST (reads body)", None, None),
                                          [(rr, None, None), (s1, None, None), (s2, None, None)],
                                          [("POST /heartbeat", None, None)])
    assert [w[0] for w in sequence] == [ref, rr, s1, rr, s2, rr, ref, "reference POST (reads body)",
                                        "POST /heartbeat", "reference POST (reads body)"]
    # round 1 fast, round 2 slowed to half from s2 on: whole-run means would blame s2
    rounds = [[run(ref, 40000), run(rr, 36000), run(s1, 36000), run(rr, 36000), run(s2, 34200), run(rr, 36000),
               run(ref, 40000)],
              [run(ref, 40000), run(rr, 36000), run(s1, 36000), run(rr, 18000), run(s2, 17100), run(rr, 18000),
               run(ref, 20000)]]
    ratios = paired_ratios(rounds, control_of)
    assert ratios[s1] == [1.0, (36000 / ((36000 + 18000) / 2))]
    assert ratios[s2] == [0.95, 0.95]
    assert ratios[rr] == [0.9, 0.9, 0.9, 0.9]  # only the round-robin runs next to the reference
    merged = [merge([r for runs in rounds for r in runs if r.name == name]) for name in (ref, rr, s1, s2)]
    verdicts = " ".join(summarise(merged, ratios)[1])
    assert "PASS /discover round-robin 0.90x reference" in verdicts
    assert "MISS" not in verdicts.replace("MISS /discover round-robin p99", "")
    assert "PASS 2 of 2 strategies >= 0.85x round-robin; slowest: b at 0.95x" in verdicts


def test_pooled_p99_is_of_all_the_runs_requests():
    grid = tuple(float(p) for p in PERCENT_GRID)
    fast = Result("x", 1000.0, 1.0, 2.0, 50.0, 9000, 0, tuple(zip(grid, (1, 1.5, 1.8, 1.9, 1.95, 2, 2.1, 2.5, 3))))
    slow = Result("x", 1000.0, 10.0, 20.0, 50.0, 1000, 0, tuple(zip(grid, (10, 15, 18, 19, 19.5, 20, 21, 25, 30))))
    merged = merge([fast, slow])
    # 90 % of all requests are the fast run's (all within 3 ms); the slowest 10 % are the slow run's,
    # so the pooled p99 is the slow run's p90 (18 ms), between the two runs' own p99s
    assert math.isclose(merged.p99_ms, 18.0, rel_tol=1e-3)
