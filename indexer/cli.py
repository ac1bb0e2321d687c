"""`spanqa index ...`: build, update, inspect and verify an index."""

from __future__ import annotations

import argparse
import json
import sys

from ..core.paths import default_index
from ..runtime.embedder import EMBEDDER_BACKENDS
from .limits import DEFAULT_LIMITS, MiB, ParseLimits


def _index_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", default=str(default_index()), help="index directory")


def add_limit_arguments(p: argparse.ArgumentParser) -> None:
    """What one file may cost to parse (indexer/limits.py); `spanqa serve` takes them too."""
    d = DEFAULT_LIMITS
    p.add_argument("--parse-timeout", type=float, default=d.seconds, metavar="S",
                   help="seconds one file may take to parse; slower files are skipped "
                        f"(default {d.seconds:g})")
    p.add_argument("--parse-memory-mb", type=int, default=d.memory_bytes // MiB, metavar="MB",
                   help="address space of the parse worker process; a file needing more is "
                        f"skipped (default {d.memory_bytes // MiB})")
    p.add_argument("--max-unpacked-mb", type=int, default=d.max_member_bytes // MiB,
                   metavar="MB", help="unpacked size of one DOCX (zip) member "
                                      f"(default {d.max_member_bytes // MiB})")
    p.add_argument("--max-unpacked-total-mb", type=int, default=d.max_unpacked_bytes // MiB,
                   metavar="MB", help="unpacked size of all members of one DOCX (zip) "
                                      f"(default {d.max_unpacked_bytes // MiB})")
    p.add_argument("--max-depth", type=int, default=d.max_depth, metavar="N",
                   help=f"element nesting of an HTML page (default {d.max_depth}; the parser "
                        "stops at 2047 whatever this says)")
    p.add_argument("--max-records", type=int, default=d.max_records, metavar="N",
                   help="documents in one JSON, JSON lines or SQuAD file; files with more are "
                        f"skipped (default {d.max_records})")
    p.add_argument("--max-reply-mb", type=int, default=d.max_reply_bytes // MiB, metavar="MB",
                   help="what the parse worker may send back for one file (its documents as "
                        "JSON); a file whose result is larger is skipped "
                        f"(default {d.max_reply_bytes // MiB})")
    p.add_argument("--parse-budget", type=float, default=d.job_seconds, metavar="S",
                   help="seconds one build (or server job) may spend parsing, all its files "
                        f"together; files after that are skipped (default {d.job_seconds:g})")
    p.add_argument("--no-parse-worker", action="store_true",
                   help="parse in this process (trusted files only): no memory or time limit")


def limits_from_args(args: argparse.Namespace) -> ParseLimits:
    return ParseLimits(
        max_member_bytes=args.max_unpacked_mb * MiB,
        max_unpacked_bytes=args.max_unpacked_total_mb * MiB, max_depth=args.max_depth,
        seconds=args.parse_timeout, memory_bytes=args.parse_memory_mb * MiB,
        max_records=args.max_records, max_reply_bytes=args.max_reply_mb * MiB,
        job_seconds=args.parse_budget, isolated=not args.no_parse_worker)


def add_parser(sub: argparse._SubParsersAction) -> None:
    index = sub.add_parser("index", help="build and maintain a document index")
    isub = index.add_subparsers(dest="index_command", required=True)

    build = isub.add_parser("build", help="index files and folders from scratch")
    build.add_argument("paths", nargs="+")
    _index_arg(build)
    build.add_argument("--embedder", default="minilm",
                       help="sentence-transformers model name or path ('minilm': offline)")
    build.add_argument("--words", type=int, default=200, help="passage size in words")
    build.add_argument("--overlap", type=int, default=30, help="words shared by split passages")
    build.add_argument("--faiss", default="auto", choices=("auto", "flat", "hnsw", "ivf"))
    build.add_argument("--sentence-words", type=int, default=35,
                       help="also embed each passage's sentences in groups of about this many "
                       "words; a passage scores its best group (0: one vector per passage)")
    build.add_argument("--embedder-backend", default="auto",
                       choices=("auto", *EMBEDDER_BACKENDS),
                       help="auto: on a CPU OpenVINO (bf16 where the CPU has bf16 units; "
                            "else ONNX Runtime with int8 weights), PyTorch on a GPU")
    build.add_argument("--max-file-mb", type=float, default=50.0)
    add_limit_arguments(build)
    build.set_defaults(func=_run_update, rebuild=True)

    add = isub.add_parser("add", help="index new and changed files (unchanged ones are kept)")
    add.add_argument("paths", nargs="+")
    _index_arg(add)
    add.add_argument("--max-file-mb", type=float, default=50.0)
    add_limit_arguments(add)
    add.set_defaults(func=_run_update, rebuild=False)

    remove = isub.add_parser("remove", help="remove documents by id or path")
    remove.add_argument("documents", nargs="+")
    _index_arg(remove)
    remove.set_defaults(func=_run_remove)

    for name, func, text in (("stats", _run_stats, "counts and settings of the index"),
                             ("verify", _run_verify, "check SQLite, BM25 and FAISS agree")):
        p = isub.add_parser(name, help=text)
        _index_arg(p)
        p.set_defaults(func=func)


def _run_update(args: argparse.Namespace) -> int:
    from .build import IndexConfig, update_index

    config = None
    if args.rebuild:
        config = IndexConfig(embedder=args.embedder, words=args.words, overlap=args.overlap,
                             faiss=args.faiss, backend=args.embedder_backend,
                             sentence_words=args.sentence_words)
    report = update_index(args.index, add=args.paths, rebuild=args.rebuild, config=config,
                          max_file_bytes=int(args.max_file_mb * 1024 * 1024),
                          limits=limits_from_args(args))
    print(report.table())
    return 0


def _run_remove(args: argparse.Namespace) -> int:
    from .build import update_index

    report = update_index(args.index, remove=args.documents)
    print(report.table())
    return 1 if report.not_found else 0


def _run_stats(args: argparse.Namespace) -> int:
    from ..index.files import describe
    from ..index.layout import IndexDir

    print(json.dumps(describe(IndexDir(args.index).current()), indent=2, allow_nan=False))
    return 0


def _run_verify(args: argparse.Namespace) -> int:
    from ..index.verify import verify_index

    problems = verify_index(args.index)
    for problem in problems:
        print(f"problem: {problem}")
    print("index is consistent" if not problems else f"{len(problems)} problems",
          file=sys.stderr)
    return 1 if problems else 0


