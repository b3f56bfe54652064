"""``edge``: run the edge server, or check its configuration.

    edge -c edge.yaml                      serve a YAML config
    edge -t -c edge.yaml                   check it: "ok", or one "FILE: key: message" line per error
    edge --listen 127.0.0.1:8080 --proxy uwsgi://127.0.0.1:3031 [--proxy ...]
    edge --listen 127.0.0.1:8080 --root ./dist
    edge --listen 127.0.0.1:8080 --proxy http://127.0.0.1:8000 --static /static=./static

The quick-mode flag names (``--listen``, ``--proxy``, ``--root``, ``--static``)
are an interface other tooling relies on: never rename them.

Exit codes: 0 stopped normally (or ``-t`` found no error); 1 configuration
error; 2 bad usage; 3 could not start (a listen address cannot be bound, a
worker cannot boot).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from edge import __version__
from edge.config.load import ConfigErrors, load_config, quick_config
from edge.config.schema import EdgeConfig
from edge.server import EXIT_CONFIG, EXIT_OK

DEFAULT_LISTEN = "127.0.0.1:8080"


def _workers(text: str) -> int | None:
    if text == "auto":
        return None
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError(f"expected a number of processes or auto, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge",
        description="An nginx-class edge server: static files, uwsgi/HTTP reverse proxy, limits.",
    )
    parser.add_argument("-c", "--config", metavar="FILE", help="the YAML configuration")
    parser.add_argument(
        "-t", "--test", action="store_true", help="check the configuration and exit (like nginx -t)"
    )
    quick = parser.add_argument_group("quick mode (no YAML)")
    quick.add_argument(
        "--listen", metavar="HOST:PORT", help=f"address to serve on (default {DEFAULT_LISTEN})"
    )
    quick.add_argument(
        "--proxy",
        metavar="URL",
        action="append",
        default=[],
        help="uwsgi://HOST:PORT or http://HOST:PORT backend for '/'; repeat for several",
    )
    quick.add_argument("--root", metavar="DIR", help="serve '/' as static files from DIR")
    quick.add_argument(
        "--static",
        metavar="PREFIX=DIR",
        action="append",
        default=[],
        help="serve PREFIX from DIR (e.g. /static=./static); repeatable",
    )
    parser.add_argument(
        "--workers",
        metavar="N",
        type=_workers,
        default=argparse.SUPPRESS,
        help="worker processes, overriding worker_processes (a number or auto)",
    )
    parser.add_argument("-v", "--version", action="version", version=f"edge {__version__}")
    return parser


def load(args: argparse.Namespace, parser: argparse.ArgumentParser) -> EdgeConfig:
    """The config the arguments describe; ConfigErrors lists every problem."""
    quick = args.listen is not None or args.proxy or args.root is not None or args.static
    if args.config and quick:
        parser.error("-c FILE cannot be combined with --listen/--proxy/--root/--static")
    if args.config:
        return load_config(args.config)
    if not quick:
        parser.error("give -c FILE, or --proxy URL / --root DIR / --static PREFIX=DIR")
    return quick_config(
        listen=args.listen or DEFAULT_LISTEN,
        proxies=args.proxy,
        root=args.root,
        statics=args.static,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = load(args, parser)
    except ConfigErrors as exc:
        for line in exc.lines(args.config):
            print(line, file=sys.stderr)
        if not args.test:
            print("edge: the configuration has errors; not starting", file=sys.stderr)
        return EXIT_CONFIG
    if args.test:
        print("ok")
        return EXIT_OK
    from edge.master import Master

    workers = getattr(args, "workers", None)
    return Master(config, workers=workers).run()
