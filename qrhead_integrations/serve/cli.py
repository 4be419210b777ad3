"""``qrhead serve``: the rerank HTTP server (Cohere's and TEI's APIs) on one model.

    qrhead serve --port 8000                                   # the embedded default model, on 127.0.0.1
    qrhead serve --model Qwen/Qwen2.5-7B-Instruct --device cuda --host 0.0.0.0 --api-key "$KEY"

Also runnable as ``python -m qrhead_integrations.serve.cli``. Needs the ``serve`` extra.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..cli_options import add_load_args, add_option_args, load_from_args, options_from_args
from .config import API_KEY_ENV, Limits, ScorerSettings

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _optional(value: int) -> int | None:
    return None if value == 0 else value


def add_serve_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand to ``qrhead``'s subparsers."""
    p = sub.add_parser("serve", help="serve re-ranking over HTTP (Cohere /v1|/v2/rerank, TEI /rerank)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_serve_arguments(p)
    p.set_defaults(func=cmd_serve)
    return p


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    m = p.add_argument_group("model")
    add_load_args(m, only=("model",), helps={"model": "hub id, local folder, .gguf file or packaged model name "
                                                      "(default: the embedded default model)"})
    m.add_argument("--heads", default=None, help="head set (default: the one registered for the model)")
    add_load_args(m, skip=("model",))  # every loading setting, as for `qrhead rank` (generated from LoadOptions)
    add_option_args(p)  # every scoring option, as for `qrhead rank` (generated from ScoringOptions)

    s = p.add_argument_group("server")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 for all)")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--api-key", default=None,
                   help=f"require 'Authorization: Bearer KEY' (default: ${API_KEY_ENV} if set, else no key)")
    s.add_argument("--no-docs", action="store_true", help="turn off /docs, /redoc and /openapi.json")
    s.add_argument("--public-docs", action="store_true",
                   help="serve /docs, /redoc and /openapi.json without the API key (by default they need it)")
    s.add_argument("--graceful-timeout", type=int, default=30,
                   help="on SIGTERM/SIGINT: stop accepting, wait this many seconds for requests in flight, "
                        "then cancel what is left (default 30)")
    s.add_argument("--access-log", action="store_true", help="log one line per request (method, path, status, "
                                                             "client address; never request content)")
    s.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])

    d = Limits()
    lim = p.add_argument_group("limits (0 switches a limit off)")
    lim.add_argument("--max-documents", type=int, default=d.max_documents, help="documents per request")
    lim.add_argument("--max-request-tokens", type=int, default=d.max_request_tokens,
                     help="tokens of query + documents per request")
    lim.add_argument("--max-body-bytes", type=int, default=d.max_body_bytes, help="request body size")
    lim.add_argument("--max-queue", type=int, default=d.max_queue,
                     help="requests queued or in progress; more get 503")
    lim.add_argument("--max-group", type=int, default=d.max_group,
                     help="requests the model worker takes at once (same documents: one encoding)")


def settings_from_args(args: argparse.Namespace) -> ScorerSettings:
    return ScorerSettings.from_load(load_from_args(args), heads=args.heads, options=options_from_args(args))


def limits_from_args(args: argparse.Namespace) -> Limits:
    return Limits(
        max_documents=_optional(args.max_documents), max_request_tokens=_optional(args.max_request_tokens),
        max_query_tokens=None, max_body_bytes=_optional(args.max_body_bytes),  # queries: --max-query-tokens
        max_queue=args.max_queue, max_group=args.max_group,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from .config import require_extra

    try:
        require_extra("serve", "qrhead serve")
    except ImportError as exc:
        raise SystemExit(f"qrhead: error: {exc}") from None
    from .app import create_app
    from .server import run_server

    limits = limits_from_args(args)
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    if args.host not in _LOOPBACK and api_key is None:
        print(f"qrhead serve: warning: listening on {args.host} without an API key (--api-key or "
              f"${API_KEY_ENV}): anyone who can reach the port can use the model", file=sys.stderr)
    scorer = settings_from_args(args).load()
    print(f"qrhead serve: {scorer.model_name} | heads: {scorer.heads.name} ({len(scorer.heads)}) | "
          f"http://{args.host}:{args.port} (docs: {'off' if args.no_docs else '/docs'})", file=sys.stderr)
    app = create_app(scorer, limits, api_key=api_key, docs=not args.no_docs, public_docs=args.public_docs)
    run_server(app, args.host, args.port, log_level=args.log_level, access_log=args.access_log,
               timeout_graceful_shutdown=args.graceful_timeout)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qrhead serve", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_serve_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return cmd_serve(args)
    except ValueError as exc:
        print(f"qrhead: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
