"""The ``maxine`` command: ``serve``, ``bench ...`` and the training tools."""

from __future__ import annotations

import argparse
import sys

from .settings import Settings


def serve(settings: Settings) -> int:
    from .api import create_app
    from .server import run

    run(create_app(settings), settings)
    return 0


def _bench(argv: list[str]) -> int:
    commands = {
        "lb": ("maxine.training.lab_cli", "bench_lb_main"),
        "live": ("maxine.training.lab_cli", "bench_live_main"),
        "http": ("maxine.bench.http", "bench_http_main"),
        "events": ("maxine.bench.events", "bench_events_main"),
        "scale": ("maxine.bench.scale", "bench_scale_main"),
    }
    if not argv or argv[0] not in commands:
        print(f"usage: maxine bench {{{','.join(commands)}}} [options]", file=sys.stderr)
        return 2
    module_name, function = commands[argv[0]]
    import importlib

    return getattr(importlib.import_module(module_name), function)(argv[1:])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "bench":
        return _bench(argv[1:])
    parser = argparse.ArgumentParser(prog="maxine", description="Maxine service registry")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the registry server")
    Settings.add_arguments(serve_parser)
    commands.add_parser("bench", help="benchmarks: maxine bench {lb,live} --help")
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
