"""``maxine train`` and ``maxine models``.

The CLI wires ``maxine train ARGS`` to :func:`train_main` and ``maxine models
ARGS`` to :func:`models_main`; each parses its own arguments, prints a clear
one-line error (no traceback) on bad input, and returns an exit code.

    maxine train advanced-ml|anomaly|forecast --data DIR [--from-sim SCENARIO ...] [--sim-seeds 0-7]
                 [--sim-behaviours a,b] [--epochs N] [--hidden N] [--threads N] [--max-seconds S]
                 [--out models/] [--version V] [--promote]
    maxine models list | show NAME | promote NAME VERSION | eval NAME VERSION --data DIR

Each trainable model is a module with ``train(data_dir, ...)``, ``summary(metadata)``,
``replay(loaded, columns)`` and ``SIM`` (what ``--from-sim default`` records):
:data:`TRAINERS`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

TRAINERS = {"advanced-ml": "train", "anomaly": "train_anomaly", "forecast": "train_forecast"}  # model -> module
TRAINABLE = tuple(TRAINERS)
DEFAULT_SIM_SCENARIOS = ("homogeneous", "speed-spread-10x", "slow-server-middle", "rotating-slow",
                         "speed-spread-multi", "speed-spread-fresh")
DEFAULT_BEHAVIOURS = ("least-response-time", "p2c-peak-ewma", "c3", "prequal")
HELD_OUT = ("bursty-mmpp", "overload-0.9", "overload-1.0", "overload-1.1", "fast-failure")
SIM_SCENARIO_DIR = os.path.join(os.path.dirname(__file__), "sim_scenarios")  # training-only scenarios (not the lab's)


def trainer(model: str):
    """The training module of ``model`` (imported on use: torch comes with it)."""
    import importlib

    return importlib.import_module(f".{TRAINERS[model]}", __package__)


def sim_defaults(model: str) -> dict:
    """What ``--from-sim default`` records for ``model``."""
    if model == "advanced-ml":
        return {"scenarios": DEFAULT_SIM_SCENARIOS, "behaviours": DEFAULT_BEHAVIOURS, "seeds": "10-14",
                "every": 20, "requests": None, "time_scales": "0.1,0.3,1,3",
                "report_losses": "0,0.05"}
    return trainer(model).SIM


def scenario_by_name(name: str) -> dict:
    """A lab scenario, a training-only one (``maxine/training/sim_scenarios``), or a path."""
    from . import scenario as scenarios

    own = os.path.join(SIM_SCENARIO_DIR, f"{name}.json")
    return scenarios.by_name(own if os.path.exists(own) else name)


def _variants(scs: list[dict], values: list[float], neutral: float, tag: str, apply) -> list[dict]:
    """Each scenario at each value: ``apply(copy, value)`` on a copy named
    ``name@<tag><value>``; the ``neutral`` value is the scenario itself."""
    import copy

    out = []
    for value in values:
        for sc in scs:
            if value == neutral:
                out.append(sc)
                continue
            variant = copy.deepcopy(sc)
            variant["name"] = f"{sc['name']}@{tag}{value:g}"
            apply(variant, value)
            out.append(variant)
    return out


def time_scaled(scs: list[dict], scales: list[float]) -> list[dict]:
    """Each scenario at each time scale K: service times, timeouts and network delays × K
    (the arrival rate follows the capacity, so the utilisation is unchanged; heartbeats stay
    as they are, as in a real fleet of faster services); K = 1 is the scenario itself."""
    if not scales or any(not (0.01 <= k <= 100.0) for k in scales):
        raise ValueError("each scale must be between 0.01 and 100")

    def scale(sc, k):
        sc["service_time"]["mean_ms"] = float(sc["service_time"]["mean_ms"]) * k
        sc["timeout_ms"] = float(sc["timeout_ms"]) * k
        net = sc["network_ms"]
        for key in ("base", "jitter"):
            if key in net:
                net[key] = float(net[key]) * k
    return _variants(scs, scales, 1.0, "x", scale)


def with_report_losses(scs: list[dict], losses: list[float]) -> list[dict]:
    """Each scenario with each fraction of client reports lost (``info.report_loss``):
    callers that never report leave dispatches unanswered, which the model must
    not read as queued requests. 0 is the scenario itself."""
    if not losses or any(not (0.0 <= x < 1.0) for x in losses):
        raise ValueError("each loss must be in [0, 1)")

    def lose(sc, x):
        sc["info"]["report_loss"] = x
    return _variants(scs, losses, 0.0, "loss", lose)


def _err(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def _seeds(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-", 1)
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


def train_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="maxine train", description="Train a learned model and write a "
                                     "versioned artifact under --out/<model>/<version>/.")
    parser.add_argument("model", choices=TRAINABLE)
    parser.add_argument("--data", required=True, metavar="DIR", help="telemetry log directory (read; with "
                        "--from-sim, simulator runs are recorded into it first)")
    parser.add_argument("--from-sim", action="append", default=[], metavar="SCENARIO",
                        help="record simulator runs of this scenario into --data first (repeatable, or "
                             "comma-separated; 'default' = the tuning scenarios)")
    parser.add_argument("--sim-seeds", default=None, help="tuning seeds for --from-sim (default: the model's, "
                        "10-14 for advanced-ml, 10-12 for the others; must be tuning seeds 0-127)")
    parser.add_argument("--sim-behaviours", default=None,
                        help="strategies whose decisions are recorded (default: the model's; advanced-ml: "
                             + ",".join(DEFAULT_BEHAVIOURS) + ")")
    parser.add_argument("--sim-time-scales", default=None, metavar="K,...",
                        help="also record each scenario with its service times, timeouts and network delays multiplied "
                             "by K (the arrival rate follows, so the load is the same; heartbeats keep their "
                             "length), so the model meets services slower and faster than the lab's (default: the "
                             "model's; advanced-ml: 0.1,0.3,1,3)")
    parser.add_argument("--sim-report-losses", default=None, metavar="L,...",
                        help="also record each scenario with this fraction of client reports lost (default: the "
                             "model's; advanced-ml: 0,0.05)")
    parser.add_argument("--sim-every", type=int, default=None,
                        help="record every N-th decision (default: the model's; 20 for advanced-ml)")
    parser.add_argument("--sim-requests", type=int, default=None, help="override the scenarios' request count "
                        "(default: the scenario's for advanced-ml, 60000 for the others)")
    parser.add_argument("--epochs", type=int, default=None, help="default: 8 (advanced-ml, forecast), 6 (anomaly)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1; see train.py)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="stop optimising each net after this many seconds (0 = no limit; default: 45 for "
                             "advanced-ml, 35 for anomaly, 30 for forecast, whose reading, features and evaluation "
                             "take longer — so each net's training stays under 60 s on 1,000,000 rows)")
    parser.add_argument("--hidden", type=int, default=None, help="hidden width (default: 64 for advanced-ml, "
                        "32 for the others)")
    parser.add_argument("--members", type=int, default=None,
                        help="advanced-ml: nets trained from seeds SEED, SEED+1, ... and served as their mean "
                             "(default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-rows", type=int, default=None)
    parser.add_argument("--out", default=None, help="models root (default: $MAXINE_MODELS_DIR or ./models)")
    parser.add_argument("--version", default=None, help="version name (default: UTC timestamp)")
    parser.add_argument("--promote", action="store_true", help="promote the new version")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    progress = not args.no_progress
    if args.epochs is not None and args.epochs < 1:
        return _err("--epochs must be >= 1")
    if args.members is not None and (args.members < 1 or args.model != "advanced-ml"):
        return _err("--members must be >= 1, and is for advanced-ml only")

    from ..models import artifacts
    from . import scenario as scenarios
    from .telemetry_log import TelemetryLogError, record_runs
    from .train import TrainError

    module = trainer(args.model)
    sim = sim_defaults(args.model)
    args.sim_seeds = args.sim_seeds or sim["seeds"]
    args.sim_time_scales = args.sim_time_scales or sim.get("time_scales", "1")
    args.sim_report_losses = args.sim_report_losses or sim.get("report_losses", "0")
    args.sim_behaviours = args.sim_behaviours or ",".join(sim["behaviours"])
    args.sim_every = args.sim_every or sim["every"]
    args.sim_requests = args.sim_requests or sim["requests"]
    if args.from_sim:
        names = []
        for item in args.from_sim:
            for name in item.split(","):
                name = name.strip()
                if name == "default":
                    names.extend(sim["scenarios"])
                elif name:
                    names.append(name)
        try:
            seeds = _seeds(args.sim_seeds)
            scs = [scenario_by_name(n) for n in names]
        except (ValueError, scenarios.ScenarioError) as exc:
            return _err(str(exc))
        if args.sim_requests:
            for sc in scs:
                sc["requests"] = args.sim_requests
        try:
            scs = time_scaled(scs, [float(k) for k in args.sim_time_scales.split(",")])
        except ValueError as exc:
            return _err(f"--sim-time-scales: {exc}")
        try:
            scs = with_report_losses(scs, [float(x) for x in args.sim_report_losses.split(",")])
        except ValueError as exc:
            return _err(f"--sim-report-losses: {exc}")
        bad = [s for s in seeds if s not in scenarios.TUNING_SEEDS]
        if bad:
            return _err(f"--sim-seeds must be tuning seeds (0-127), not {bad[:5]}")
        held = sorted({sc["name"].split("@")[0] for sc in scs} & set(HELD_OUT))
        if held:
            print(f"warning: {held} are held-out evaluation scenarios; training on them invalidates "
                  "the lab's measured bar", file=sys.stderr)
        from ..balancers import factories

        behaviours = [b.strip() for b in args.sim_behaviours.split(",") if b.strip()]
        unknown = [b for b in behaviours if b not in factories()]
        if unknown:
            return _err(f"unknown behaviour strategies {unknown}")
        rows = record_runs(scs, behaviours, seeds, args.data, every=args.sim_every, progress=progress)
        print(f"recorded {rows} rows from {len(scs)} scenarios × {len(behaviours)} strategies × "
              f"{len(seeds)} seeds into {args.data}")
    elif not os.path.isdir(args.data):
        return _err(f"telemetry log directory {args.data!r} does not exist")

    options = {k: v for k, v in (("epochs", args.epochs), ("hidden", args.hidden), ("members", args.members))
               if v is not None}
    if args.max_seconds is not None:
        options["max_seconds"] = args.max_seconds or None
    try:
        result = module.train(args.data, seed=args.seed, max_rows=args.max_rows, progress=progress,
                              threads=args.threads, **options)
    except (TrainError, TelemetryLogError) as exc:
        return _err(str(exc))
    meta = result["metadata"]
    if args.from_sim:
        meta["data"]["simulator"] = {"scenarios": names, "seeds": args.sim_seeds,
                                     "time_scales": args.sim_time_scales,
                                     "report_losses": args.sim_report_losses,
                                     "behaviours": args.sim_behaviours, "every": args.sim_every,
                                     "requests": args.sim_requests}
    root = args.out or str(artifacts.default_root())
    version = args.version or artifacts.new_version()
    try:
        path = artifacts.write_artifact(root, args.model, version, result["arrays"], meta, result["state_dict"])
    except (artifacts.ArtifactError, OSError) as exc:
        return _err(str(exc))
    secs = meta["training"]["seconds"]
    print(f"wrote {path}  rows={meta['data']['rows']} {module.summary(meta)} "
          f"train {secs['train']:.1f}s total {secs['total']:.1f}s")
    if args.promote:
        try:
            artifacts.promote(root, args.model, version)
        except artifacts.ArtifactError as exc:
            return _err(f"not promoted: {exc}")
        print(f"promoted {args.model} {version}")
    return 0


def models_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="maxine models", description="List, inspect, promote and "
                                     "evaluate model artifacts.")
    parser.add_argument("--root", default=None, help="models root (default: $MAXINE_MODELS_DIR or ./models)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list")
    p = sub.add_parser("show")
    p.add_argument("name")
    p.add_argument("version", nargs="?")
    p = sub.add_parser("promote")
    p.add_argument("name")
    p.add_argument("version")
    p = sub.add_parser("eval")
    p.add_argument("name")
    p.add_argument("version")
    p.add_argument("--data", metavar="DIR", help="telemetry log to replay (prediction metrics)")
    p.add_argument("--scenario", action="append", default=[], help="also simulate these scenarios with the "
                   "version and report `maxine bench lb` metrics")
    p.add_argument("--seeds", default=None, help="seeds for --scenario (default: evaluation seeds)")
    args = parser.parse_args(argv)

    from ..models import artifacts

    root = args.root or str(artifacts.default_root())
    if args.cmd == "list":
        names = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))) \
            if os.path.isdir(root) else []
        if not names:
            print(f"no models under {root}")
            return 0
        for name in names:
            current = artifacts.promoted(root, name)
            for v in artifacts.versions(root, name):
                try:
                    meta = json.loads(open(os.path.join(root, name, v, artifacts.METADATA)).read())
                    info = f"rows={meta.get('data', {}).get('rows')} {_headline(name, meta)}"
                except (OSError, ValueError):
                    info = "(unreadable metadata)"
                print(f"{'*' if v == current else ' '} {name:<16} {v:<22} {info}")
        return 0
    if args.cmd == "show":
        version = args.version or artifacts.promoted(root, args.name)
        if version is None:
            return _err(f"no versions of {args.name!r} under {root}")
        try:
            loaded = artifacts.load_artifact(os.path.join(root, args.name, version), args.name)
        except artifacts.ArtifactError as exc:
            return _err(str(exc))
        meta = dict(loaded.metadata)
        meta.pop("scaling", None)
        meta["promoted"] = version == artifacts.promoted(root, args.name)
        print(json.dumps(meta, indent=1, default=str))
        return 0
    if args.cmd == "promote":
        try:
            artifacts.promote(root, args.name, args.version)
        except artifacts.ArtifactError as exc:
            return _err(f"refused: {exc}")
        print(f"promoted {args.name} {args.version} (a running server reloads it within its watch "
              "interval, or on POST /models/reload)")
        return 0
    # eval
    try:
        loaded = artifacts.load_artifact(os.path.join(root, args.name, args.version), args.name)
    except artifacts.ArtifactError as exc:
        return _err(str(exc))
    if not args.data and not args.scenario:
        return _err("eval needs --data DIR and/or --scenario NAME")
    if args.name not in TRAINERS:
        return _err(f"cannot evaluate {args.name!r}: trainable models are {', '.join(TRAINABLE)}")
    module = trainer(args.name)
    from .telemetry_log import TelemetryLogError, read_log
    from .train import TrainError

    if args.data:
        try:
            print(json.dumps({"replay": module.replay(loaded, read_log(args.data))}, indent=1))
        except (TelemetryLogError, TrainError) as exc:
            return _err(f"{args.data}: {exc}")
    if args.scenario and args.name != "advanced-ml":
        return _eval_on_simulator(module, loaded, args)
    if args.scenario:
        tmp_root = _eval_root(root, args.name, args.version)
        os.environ["MAXINE_MODELS_DIR"] = tmp_root
        from . import lab_cli

        argv2 = []
        for s in args.scenario:
            argv2 += ["--scenario", s]
        argv2 += ["--strategies", "advanced-ml,least-response-time,least-connections,c3,p2c-peak-ewma,oracle"]
        if args.seeds:
            argv2 += ["--seeds", args.seeds]
        return lab_cli.bench_lb_main(argv2)
    return 0


def _headline(name: str, meta: dict) -> str:
    """The one-line metrics of a version (its trainer's summary), or what can be read of them."""
    try:
        return trainer(name).summary(meta) if name in TRAINERS else ""
    except (KeyError, TypeError, ValueError):
        return f"rmse={meta.get('metrics', {}).get('test_rmse_log', float('nan')):.3f}"


def _eval_on_simulator(module, loaded, args) -> int:
    """Record simulator runs of ``--scenario`` (evaluation seeds unless ``--seeds``) and replay them."""
    import tempfile

    from . import scenario as scenarios
    from .telemetry_log import record_runs
    from .train import TrainError

    sim = sim_defaults(args.name)
    try:
        scs = [scenario_by_name(n) for n in args.scenario]
        seeds = _seeds(args.seeds) if args.seeds else list(scenarios.EVALUATION_SEEDS)
    except (ValueError, scenarios.ScenarioError) as exc:
        return _err(str(exc))
    for sc in scs:
        sc["requests"] = sim["requests"] or sc["requests"]
    with tempfile.TemporaryDirectory(prefix="maxine-eval-") as tmp:
        record_runs(scs, list(sim["behaviours"]), seeds, tmp, every=sim["every"])
        from .telemetry_log import read_log

        try:
            result = module.replay(loaded, read_log(tmp))
        except TrainError as exc:
            return _err(str(exc))
    print(json.dumps({"simulated": {"scenarios": [sc["name"] for sc in scs], "seeds": seeds, **result}}, indent=1))
    return 0


def _eval_root(root: str, name: str, version: str) -> str:
    """A scratch models root where ``version`` is the promoted one (symlinked, nothing copied)."""
    import tempfile

    tmp = tempfile.mkdtemp(prefix="maxine-eval-")
    os.makedirs(os.path.join(tmp, name))
    os.symlink(os.path.abspath(os.path.join(root, name, version)), os.path.join(tmp, name, version))
    with open(os.path.join(tmp, name, "PROMOTED"), "w") as f:
        f.write(version + "\n")
    return tmp


if __name__ == "__main__":  # python -m maxine.training.models_cli train|models ...
    if len(sys.argv) < 2 or sys.argv[1] not in ("train", "models"):
        print("usage: python -m maxine.training.models_cli train|models [options]", file=sys.stderr)
        sys.exit(2)
    sys.exit((train_main if sys.argv[1] == "train" else models_main)(sys.argv[2:]))
