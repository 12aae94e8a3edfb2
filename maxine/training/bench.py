"""``maxine bench lb``: every scenario × every strategy × every seed, in parallel.

Each run is one :func:`maxine.training.simulator.simulate` call in a worker
process; results are averaged over seeds per (scenario, strategy) and printed
as one table per scenario, with the best classical strategy and the oracle
marked and every row's p99 ratio to both.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
import time

from ..progress import Progress
from . import scenario as scenarios
from .simulator import ORACLE, simulate, strategy_names

# Placement strategies pick by key or location, not by load: they are not
# load balancers and are left out of the default run (name them to include them).
PLACEMENT = ("consistent-hash", "ip-hash", "geo-aware", "cost-aware")
# Strategies that count as "classical" for the best-classical mark; anything
# registered later (learned strategies, plugins) is compared but not marked.
CLASSICAL = (
    "round-robin", "random", "weighted-random", "least-connections", "weighted-least-connections",
    "power-of-two-choices", "least-response-time", "c3", "prequal", "orca-wrr", "p2c-peak-ewma",
    "least-request", "least-connections-stale",
)
METRICS = ("p50_ms", "p99_ms", "p999_ms", "error_rate", "goodput", "imbalance", "decision_us")
# best classical = lowest p99 among classical strategies whose error rate is
# within this many percentage points of the lowest classical error rate
# (a strategy that fails requests fast can otherwise "win" on latency).
ERROR_SLACK = 0.005


def default_strategies() -> list[str]:
    return [s for s in strategy_names() if s not in PLACEMENT]


def _run(job):
    sc, strategy, seed = job
    t0 = time.perf_counter()
    result = simulate(sc, strategy, seed)
    result["wall_s"] = time.perf_counter() - t0
    return result


def run_matrix(scs: list[dict], strategies: list[str], seeds_override=None, processes: int | None = None,
               progress: bool = True) -> list[dict]:
    """All runs, one result dict per (scenario, strategy, seed)."""
    jobs = []
    for sc in scs:
        for seed in (seeds_override or sc["seeds"]):
            for strategy in strategies:
                jobs.append((sc, strategy, seed))
    # longest first (the overloaded scenarios run long queues), for better packing
    processes = processes or os.cpu_count() or 1
    bar = Progress(len(jobs), "runs", enabled=progress)
    results = []
    if processes <= 1 or len(jobs) == 1:
        for job in jobs:
            results.append(_run(job))
            bar.step(f"{job[0]['name']} {job[1]}")
    else:
        ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        with ctx.Pool(processes) as pool:
            for result in pool.imap_unordered(_run, jobs, chunksize=1):
                results.append(result)
                bar.step(f"{result['scenario']} {result['strategy']}")
    order = {(sc["name"], st, sd): k for k, (sc, st, sd) in enumerate(jobs)}
    results.sort(key=lambda r: order[(r["scenario"], r["strategy"], r["seed"])])
    return results


def aggregate(results: list[dict]) -> list[dict]:
    """Mean over seeds per (scenario, strategy), in first-seen order."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["scenario"], r["strategy"]), []).append(r)
    rows = []
    for (scenario, strategy), rs in groups.items():
        row = {"scenario": scenario, "strategy": strategy, "seeds": [r["seed"] for r in rs]}
        for m in METRICS:
            row[m] = sum(r[m] for r in rs) / len(rs)
        row["timeline_p99_ms"] = rs[0]["timeline_p99_ms"]
        row["timeline_t_s"] = rs[0]["timeline_t_s"]
        rows.append(row)
    return rows


def mark(rows: list[dict]) -> dict[str, dict]:
    """Per scenario: the best classical strategy and the oracle's row, plus ratios on every row."""
    marks: dict[str, dict] = {}
    by_scenario: dict[str, list[dict]] = {}
    for row in rows:
        by_scenario.setdefault(row["scenario"], []).append(row)
    for scenario, rs in by_scenario.items():
        classical = [r for r in rs if r["strategy"] in CLASSICAL]
        best = None
        if classical:
            floor = min(r["error_rate"] for r in classical)
            eligible = [r for r in classical if r["error_rate"] <= floor + ERROR_SLACK]
            best = min(eligible, key=lambda r: r["p99_ms"])
        oracle = next((r for r in rs if r["strategy"] == ORACLE), None)
        for r in rs:
            r["vs_best_p99"] = r["p99_ms"] / best["p99_ms"] if best else None
            r["vs_oracle_p99"] = r["p99_ms"] / oracle["p99_ms"] if oracle else None
        marks[scenario] = {"best": best["strategy"] if best else None, "oracle": oracle is not None}
    return marks


def format_tables(rows: list[dict], marks: dict[str, dict], descriptions: dict[str, str] | None = None) -> str:
    out = []
    by_scenario: dict[str, list[dict]] = {}
    for row in rows:
        by_scenario.setdefault(row["scenario"], []).append(row)
    header = (f"{'strategy':<28}{'p50 ms':>9}{'p99 ms':>9}{'p99.9 ms':>10}{'errors':>8}{'goodput/s':>11}"
              f"{'imbal':>7}{'pick µs':>9}{'p99/best':>10}{'p99/orc':>9}")
    for scenario, rs in by_scenario.items():
        m = marks[scenario]
        seeds = rs[0]["seeds"]
        out.append(f"\n== {scenario}  (seeds {','.join(map(str, seeds))}; * best classical, "
                   f"† oracle) ==")
        if descriptions and descriptions.get(scenario):
            out.append(f"   {descriptions[scenario]}")
        out.append(header)
        for r in sorted(rs, key=lambda r: (r["strategy"] == ORACLE, r["p99_ms"])):
            tag = "*" if r["strategy"] == m["best"] else ("†" if r["strategy"] == ORACLE else " ")
            vb = f"{r['vs_best_p99']:.2f}x" if r.get("vs_best_p99") else "-"
            vo = f"{r['vs_oracle_p99']:.2f}x" if r.get("vs_oracle_p99") else "-"
            out.append(f"{tag}{r['strategy']:<27}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['p999_ms']:>10.1f}"
                       f"{100 * r['error_rate']:>7.2f}%{r['goodput']:>11.1f}{r['imbalance']:>7.2f}"
                       f"{r['decision_us']:>9.2f}{vb:>10}{vo:>9}")
    return "\n".join(out) + "\n"


def write_json(path: str, rows: list[dict], results: list[dict], marks: dict, meta: dict) -> None:
    keys = ("scenario", "strategy", "seeds") + METRICS + ("vs_best_p99", "vs_oracle_p99")
    doc = {
        "results": [{k: r.get(k) for k in keys} for r in rows],
        "runs": [{k: r[k] for k in ("scenario", "strategy", "seed") + METRICS} for r in results],
        "best_classical": {s: m["best"] for s, m in marks.items()},
        "meta": meta,
    }
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


def plot(path: str, rows: list[dict], marks: dict, timeline_scenario: str | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_scenario: dict[str, list[dict]] = {}
    for row in rows:
        by_scenario.setdefault(row["scenario"], []).append(row)
    names = list(by_scenario)
    strategies = sorted({r["strategy"] for r in rows}, key=lambda s: (s == ORACLE, s))
    has_timeline = timeline_scenario in by_scenario
    fig_rows = 2 if has_timeline else 1
    fig, axes = plt.subplots(fig_rows, 1, figsize=(15, 6 * fig_rows), squeeze=False)
    ax = axes[0][0]
    width = 0.85 / max(len(strategies), 1)
    cmap = plt.get_cmap("tab20")
    for k, strategy in enumerate(strategies):
        xs, ys = [], []
        for j, scenario in enumerate(names):
            r = next((r for r in by_scenario[scenario] if r["strategy"] == strategy), None)
            if r:
                xs.append(j + (k - len(strategies) / 2) * width)
                ys.append(r["p99_ms"])
        ax.bar(xs, ys, width, label=strategy, color="black" if strategy == ORACLE else cmap(k % 20))
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=20, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("p99 latency (ms, log)")
    ax.set_title("p99 per strategy per scenario (mean over seeds; errors and timeouts included)")
    ax.legend(ncol=5, fontsize=8)
    if has_timeline:
        ax2 = axes[1][0]
        for k, strategy in enumerate(strategies):
            r = next((r for r in by_scenario[timeline_scenario] if r["strategy"] == strategy), None)
            if not r:
                continue
            ts = [t for t, v in zip(r["timeline_t_s"], r["timeline_p99_ms"]) if v is not None]
            vs = [v for v in r["timeline_p99_ms"] if v is not None]
            ax2.plot(ts, vs, label=strategy, lw=2.5 if strategy == ORACLE else 1.2,
                     color="black" if strategy == ORACLE else cmap(k % 20))
        ax2.set_yscale("log")
        ax2.set_xlabel("simulated time (s)")
        ax2.set_ylabel("p99 latency per time bin (ms, log)")
        ax2.set_title(f"{timeline_scenario}: p99 over time (first seed; the slow window is the middle half)")
        ax2.legend(ncol=5, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- decision cost at scale ------------------------------------------------------------


class _Timed:
    """Delegates to ``inner`` and records each pick's wall time (ns)."""

    def __init__(self, inner, out: list):
        self.inner = inner
        self.name = inner.name
        self.out = out
        if hasattr(inner, "learn_one"):
            self.learn_one = inner.learn_one
        if hasattr(inner, "refresh_pending"):  # the background re-scoring job's entry point
            self.refresh_pending = inner.refresh_pending

    def pick(self, pool, ctx):
        t = time.perf_counter_ns()
        node = self.inner.pick(pool, ctx)
        self.out.append(time.perf_counter_ns() - t)
        return node


def decision_cost(strategies: list[str], instances: int = 100, requests: int = 20000, seed: int = 0) -> list[dict]:
    """Per-pick cost (µs: mean, p50, p99, p99.9) of each strategy inside a simulator run
    with ``instances`` servers (homogeneous, 80 % load, heartbeats every 1 s, client
    reports 20 ms late: every telemetry path is exercised between picks)."""
    import numpy as np

    from ..balancers import _factories, factories
    from .simulator import Simulation

    sc = scenarios.load({"name": f"decision-cost-{instances}", "requests": int(requests),
                         "servers": [{"count": int(instances), "speed": 1.0, "workers": 1}]})
    out = []
    for strategy in strategies:
        costs: list[int] = []
        name = f"__timed__:{strategy}"
        inner = factories()[strategy]
        _factories[name] = lambda inner=inner, costs=costs: _Timed(inner(), costs)
        try:
            Simulation(sc, name, seed).run()
        finally:
            _factories.pop(name, None)
        us = np.asarray(costs[len(costs) // 10:], dtype=np.float64) / 1000.0  # skip warm-up
        p50, p99, p999 = np.percentile(us, [50, 99, 99.9]).tolist()
        out.append({"strategy": strategy, "instances": instances, "picks": len(us), "mean_us": float(us.mean()),
                    "p50_us": p50, "p99_us": p99, "p999_us": p999})
    return out
