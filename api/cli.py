"""The `spanqa` command: one entry point for every part of SpanQA."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..indexer.cli import add_parser as add_index_parser
from ..pretrain.cli import add_parser as add_pretrain_parser
from ..reader.cli import add_parser as add_reader_parser
from ..retriever.cli import add_parser as add_search_parser
from .ask_cli import add_parser as add_ask_parser
from .demo import add_parser as add_demo_parser
from .jobs_cli import add_parser as add_jobs_parser
from .logs import quieten_libraries
from .serve_cli import add_parser as add_serve_parser

REPO = Path(__file__).resolve().parents[1]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spanqa",
        description="Retrieval-augmented question answering with exact answer spans.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    add_reader_parser(sub)
    add_index_parser(sub)
    add_search_parser(sub)
    add_ask_parser(sub)
    add_demo_parser(sub)
    add_serve_parser(sub)
    add_jobs_parser(sub)
    add_pretrain_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    quieten_libraries()
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one clear line for errors the user can fix
        from ..index.layout import IndexBusyError
        from ..reader.squad import SquadFormatError
        from ..runtime.hub import ModelLoadError

        if isinstance(exc, ModelLoadError | SquadFormatError | IndexBusyError | ValueError
                      | FileNotFoundError):
            print(f"spanqa: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
