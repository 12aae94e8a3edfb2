"""Entry points for ``maxine bench lb`` and ``maxine bench live``.

The CLI wires ``maxine bench lb ARGS`` to :func:`bench_lb_main` and
``maxine bench live ARGS`` to :func:`bench_live_main`; each parses its own
arguments and returns an exit code.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time


def _strategy_list(text: str | None, default: list[str]) -> list[str]:
    if not text:
        return default
    return [s.strip() for s in text.split(",") if s.strip()]


def bench_lb_main(argv: list[str]) -> int:
    from . import bench
    from . import scenario as scenarios
    from .simulator import strategy_names

    parser = argparse.ArgumentParser(
        prog="maxine bench lb",
        description="Simulate every scenario × strategy × seed with the production balancers "
                    "and print p50/p99/p99.9, errors, goodput, imbalance and decision cost.")
    parser.add_argument("--scenario", action="append", default=[], metavar="FILE",
                        help="a scenario JSON file or built-in name (repeatable; default: all built-ins)")
    parser.add_argument("--strategies", help="comma-separated strategies (default: every load-based "
                        "strategy + oracle; 'all' adds the placement strategies)")
    parser.add_argument("--seeds", help="comma-separated seeds overriding the scenarios' evaluation seeds")
    parser.add_argument("--requests", type=int, help="override every scenario's request count")
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON")
    parser.add_argument("--plot", metavar="OUT.png", help="draw p99 per strategy per scenario (matplotlib)")
    parser.add_argument("--decision-cost", type=int, metavar="N", help="only measure the per-pick cost "
                        "(mean/p50/p99/p99.9 µs) of --strategies with N instances inside a simulator run, then exit")
    parser.add_argument("--record", metavar="DIR", help="also write every decision to a telemetry log in DIR "
                        "(the format `maxine train advanced-ml --data DIR` reads; runs in one process)")
    parser.add_argument("--record-every", type=int, default=1, metavar="N", help="with --record: log every "
                        "N-th decision (all nodes of the pool, with the simulator's true delay)")
    parser.add_argument("--processes", type=int, default=None, help="worker processes (default: all cores)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--list", action="store_true", help="list scenarios and strategies, then exit")
    args = parser.parse_args(argv)

    if args.list:
        for path in scenarios.builtin_paths():
            sc = scenarios.load(path)
            print(f"{sc['name']:<24} {sc.get('description', '')}")
        print("strategies:", ", ".join(strategy_names()))
        return 0
    try:
        scs = [scenarios.by_name(s) for s in args.scenario] if args.scenario else scenarios.builtin()
    except scenarios.ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    known = strategy_names()
    if args.strategies == "all":
        strategies = known
    else:
        strategies = _strategy_list(args.strategies, bench.default_strategies())
    unknown = [s for s in strategies if s not in known]
    if unknown:
        print(f"error: unknown strategies {unknown}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    if args.requests:
        for sc in scs:
            sc["requests"] = args.requests
    if args.decision_cost:
        chosen = [s for s in strategies if s != "oracle"] if args.strategies else \
            ["advanced-ml", "p2c-peak-ewma", "least-response-time", "round-robin"]
        print(f"{'strategy':<28}{'instances':>10}{'mean µs':>9}{'p50 µs':>9}{'p99 µs':>9}{'p99.9 µs':>10}")
        for r in bench.decision_cost(chosen, args.decision_cost, args.requests or 20000):
            print(f"{r['strategy']:<28}{r['instances']:>10}{r['mean_us']:>9.1f}{r['p50_us']:>9.1f}"
                  f"{r['p99_us']:>9.1f}{r['p999_us']:>10.1f}")
        print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
        return 0
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None

    t0 = time.perf_counter()
    if args.record:
        from .telemetry_log import record_runs

        used = set(seeds) if seeds else {s for sc in scs for s in sc["seeds"]}
        if not used <= set(scenarios.TUNING_SEEDS):
            print(f"warning: recording evaluation seeds {sorted(used - set(scenarios.TUNING_SEEDS))[:5]}; "
                  "train only on tuning seeds 0-127 (e.g. --seeds 0,1,2,3)", file=sys.stderr)
        results = []
        written = record_runs(scs, strategies, seeds, args.record, every=args.record_every,
                              progress=not args.no_progress, results=results)
        print(f"recorded {written} rows into {args.record}")
    else:
        results = bench.run_matrix(scs, strategies, seeds, args.processes, progress=not args.no_progress)
    wall = time.perf_counter() - t0
    rows = bench.aggregate(results)
    marks = bench.mark(rows)
    descriptions = {sc["name"]: sc.get("description", "") for sc in scs}
    sys.stdout.write(bench.format_tables(rows, marks, descriptions))
    meta = {
        "wall_s": round(wall, 2), "runs": len(results), "processes": args.processes or os.cpu_count(),
        "cpu_count": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine(),
        "argv": ["maxine", "bench", "lb", *argv],
    }
    print(f"\n{len(results)} runs in {wall:.1f}s wall on {meta['processes']} processes")
    if args.json:
        bench.write_json(args.json, rows, results, marks, meta)
        print(f"wrote {args.json}")
    if args.plot:
        timeline = next((sc["name"] for sc in scs if sc["name"] == "slow-server-middle"), None)
        try:
            bench.plot(args.plot, rows, marks, timeline)
        except ImportError:
            print("error: --plot needs matplotlib (pip install matplotlib)", file=sys.stderr)
            return 1
        print(f"wrote {args.plot}")
    return 0


def bench_live_main(argv: list[str]) -> int:
    from .live import main

    return main(argv)


if __name__ == "__main__":  # python -m maxine.training.lab_cli lb|live ...
    if len(sys.argv) < 2 or sys.argv[1] not in ("lb", "live"):
        print("usage: python -m maxine.training.lab_cli lb|live [options]", file=sys.stderr)
        sys.exit(2)
    fn = bench_lb_main if sys.argv[1] == "lb" else bench_live_main
    sys.exit(fn(sys.argv[2:]))
