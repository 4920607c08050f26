"""`teuthology-maas metrics`: the metrics the processes of this host recorded, as Prometheus
scrapes them: printed once, or served over HTTP (docs/metrics.md)."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path
from typing import Any

from teuthology_maas.cli._common import Context, ExitCode, add_common_options


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "metrics",
        help="print or serve the Prometheus metrics recorded on this host",
        description="Print the teuthology_maas_* metrics every process of this host recorded "
        "(Prometheus text format), read from --dir; with --serve, serve them on /metrics "
        "until Ctrl-C. Not needed where teuthology-exporter runs: it serves them already.",
    )
    add_common_options(parser, top_level=False)
    parser.add_argument(
        "--dir", type=Path, metavar="DIR", dest="directory",
        help="the multiprocess directory (default: $PROMETHEUS_MULTIPROC_DIR, else "
        "~/.cache/teuthology-exporter, where teuthology's processes record)",
    )  # fmt: skip
    parser.add_argument("--serve", type=int, metavar="PORT", help="serve /metrics on PORT")
    parser.add_argument(
        "--bind", default="0.0.0.0", metavar="ADDRESS",
        help="with --serve: the address to listen on (default: 0.0.0.0)",
    )  # fmt: skip
    parser.set_defaults(handler=run)


def run(ctx: Context, args: argparse.Namespace) -> int:
    from teuthology_maas import metrics_export

    directory = args.directory or metrics_export.default_directory()
    if args.serve is None:
        ctx.out(metrics_export.exposition(directory).decode().rstrip("\n"))
        return int(ExitCode.OK)
    metrics_export.registry_for(directory)  # a missing directory or extra: said before serving
    server = metrics_export.serve(directory, args.serve, args.bind)
    ctx.err(f"serving {directory} on http://{args.bind}:{server.server_port}/metrics")
    try:
        threading.Event().wait()
    finally:
        server.shutdown()
    return int(ExitCode.OK)
