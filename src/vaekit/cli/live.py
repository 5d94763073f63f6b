"""``vaekit explore RUN``: the live latent explorer in the browser (see :mod:`vaekit.app`)."""

from __future__ import annotations

import argparse

from vaekit.cli.options import add_data_options, add_runtime_options


def cmd_explore(args: argparse.Namespace) -> int:
    from vaekit.app import serve

    serve(args.run, host=args.host, port=args.port, limit=args.limit, open_browser=args.open,
          device=args.device, precision=args.precision, data_dir=args.data_dir)
    return 0


def register(commands) -> None:
    """Add ``explore`` to the ``vaekit`` command."""
    from vaekit.app.server import DEFAULT_HOST, DEFAULT_LIMIT, DEFAULT_PORT

    parser = commands.add_parser(
        "explore", help="the live latent explorer: a local web page that decodes any point of the latent space")
    parser.add_argument("run", help="run directory (or a model name Run.open accepts)")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default: {DEFAULT_HOST}, this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port to listen on; 0 picks a free one (default: {DEFAULT_PORT})")
    add_data_options(parser, split=False, dataset=False, limit_default=DEFAULT_LIMIT,
                     limit=f"test images on the scatter, the first N (default: {DEFAULT_LIMIT})")
    browser = parser.add_mutually_exclusive_group()
    browser.add_argument("--open", dest="open", action="store_true",
                         help="open the page in the default web browser")
    browser.add_argument("--no-browser", dest="open", action="store_false",
                         help="only print the page's URL (the default)")
    add_runtime_options(parser)
    parser.set_defaults(func=cmd_explore, open=False)
