"""The ``maxine`` command: ``serve``, ``bench ...``, ``train``, ``models`` and ``settings``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .settings import Settings

# Subcommands that parse their own arguments: name -> {subname: (module, function)} or (module, function).
DELEGATED = {
    "bench": {
        "lb": ("maxine.training.lab_cli", "bench_lb_main"),
        "live": ("maxine.training.lab_cli", "bench_live_main"),
        "http": ("maxine.bench.http", "bench_http_main"),
        "scale": ("maxine.bench.scale", "bench_scale_main"),
        "events": ("maxine.bench.events", "bench_events_main"),
        "client": ("maxine.bench.client", "bench_client_main"),
        "picks": ("maxine.bench.picks", "main"),
    },
    "train": ("maxine.training.models_cli", "train_main"),
    "models": ("maxine.training.models_cli", "models_main"),
}


def _delegate(command: str, argv: list[str]) -> int:
    target = DELEGATED[command]
    if isinstance(target, dict):
        if not argv or argv[0] not in target:
            print(f"usage: maxine {command} {{{','.join(target)}}} [options]  (each has --help)", file=sys.stderr)
            return 2
        target, argv = target[argv[0]], argv[1:]
    module_name, function = target
    return getattr(importlib.import_module(module_name), function)(argv)


def serve(settings: Settings) -> int:
    from .api import create_app
    from .server import run

    if settings.models_dir:  # the artifact loader reads it from the environment (maxine.models.artifacts)
        os.environ["MAXINE_MODELS_DIR"] = settings.models_dir
    run(create_app(settings), settings)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in DELEGATED:
        return _delegate(argv[0], argv[1:])
    parser = argparse.ArgumentParser(prog="maxine", description="Maxine service registry")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the registry server")
    Settings.add_arguments(serve_parser)
    commands.add_parser("bench", help="benchmarks: maxine bench {lb,live,http,scale,events,client,picks} --help")
    commands.add_parser("train", help="train a model: maxine train advanced-ml --help")
    commands.add_parser("models", help="model artifacts: maxine models {list,show,promote,eval} --help")
    commands.add_parser("settings", help="print the settings table (markdown)")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(Settings.from_args(args))
    if args.command == "settings":
        print("| flag | environment | default | meaning |\n|---|---|---|---|")
        for row in Settings.table():
            print("| " + " | ".join(f"`{c}`" if i < 3 else c for i, c in enumerate(row)) + " |")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
