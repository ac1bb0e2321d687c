"""`spanqa ask` and `spanqa calibrate`: the pipeline from the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..reader.cli import add_backend_argument

if TYPE_CHECKING:  # imported where used: `spanqa --help` stays fast
    from .qa import QA, AskResult


def add_reading_arguments(p: argparse.ArgumentParser) -> None:
    """How much of what was retrieved is read (`spanqa ask` and `spanqa serve`)."""
    reading = p.add_mutually_exclusive_group()
    reading.add_argument("--read-all", action="store_true",
                         help="read every retrieved passage (default, with a fitted "
                              "calibration: its first_read passages first, the rest only "
                              "when no answer there reaches its early_stop confidence)")
    reading.add_argument("--first-read", type=positive(int, 1), default=None,
                         help="passages adaptive reading reads before deciding whether to "
                              "read on (default: the calibration's choice)")


def positive(kind: type, minimum: float) -> object:
    """An argparse type: a number of `kind`, at least `minimum`."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
        return value
    return parse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ask", help="answer a question from an index")
    p.add_argument("question")
    p.add_argument("--index", default=None, help="index directory (default data/index)")
    p.add_argument("--reader", default=None,
                   help="reader run or checkpoint directory, or hub id (default: see README)")
    p.add_argument("--top-k", type=int, default=3, help="answers to show")
    p.add_argument("--retrieval-k", type=int, default=20, help="passages to read")
    p.add_argument("--mode", choices=("bm25", "dense", "hybrid"), default="hybrid")
    add_reading_arguments(p)
    p.add_argument("--path-prefix", help="only documents under this path")
    p.add_argument("--title", help="only documents with this title")
    p.add_argument("--tag", action="append", default=[], help="only documents with this tag")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_backend_argument(p, "--reader-backend")
    p.set_defaults(func=_run_ask)

    c = sub.add_parser("calibrate", help="fit answer confidences and the abstention "
                       "threshold on SQuAD questions asked over an index")
    c.add_argument("data", help="SQuAD JSON whose articles are in the index (v2.0 for "
                   "tuning abstention on unanswerable questions)")
    c.add_argument("--index", default=None)
    c.add_argument("--reader", default=None)
    c.add_argument("--limit", type=int, default=0, help="sample this many questions")
    c.add_argument("--retrieval-k", type=int, default=20)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--dry-run", action="store_true", help="report, do not save")
    add_backend_argument(c, "--reader-backend")
    c.set_defaults(func=_run_calibrate)


def open_qa(index: str | None, reader: str | None, **kwargs) -> QA:
    from ..core.paths import default_index
    from .default_reader import resolve_reader
    from .qa import QA

    return QA(index or default_index(), resolve_reader(reader), **kwargs)


def _run_ask(args: argparse.Namespace) -> int:
    from ..retriever.search import Filters

    qa = open_qa(args.index, args.reader, retrieval_k=args.retrieval_k, mode=args.mode,
                 adaptive=not args.read_all, first_read=args.first_read,
                 reader_backend=args.reader_backend)
    filters = Filters(path_prefix=args.path_prefix, title=args.title, tags=tuple(args.tag))
    result = qa.ask(args.question, top_k=args.top_k, filters=filters or None)
    print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2, allow_nan=False) if args.json
          else format_result(result))
    return 0


def format_result(result: AskResult) -> str:
    """Answers with their sources for a terminal; passages when SpanQA abstains."""
    lines = [f"Q: {result.question}"]
    for i, a in enumerate(result.answers, 1):
        where = a.title + (f", page {a.page}" if a.page else "")
        lines += [f"{i}. {a.text}   (confidence {a.confidence:.0%})",
                  f"   source: {where} - {a.path} [chars {a.document_start}-{a.document_end}]",
                  f"   {a.context.marked}"]
    if result.handoff:
        lines.append("No answer found with enough confidence (handoff: pass it to a person).")
        if result.best_guess is not None:
            g = result.best_guess
            lines.append(f"Best guess, below the confidence threshold: {g.text!r} "
                         f"(confidence {g.confidence:.0%}, {g.title})")
        lines.append("Best passages:")
        for h in result.passages[:3]:
            snippet = h.text[:200].replace("\n", " ")
            lines.append(f"  - {h.title} ({h.path}): {snippet}...")
    lines.append(f"({result.timing_ms.get('total', 0):.0f} ms)")
    return "\n".join(lines)


def _run_calibrate(args: argparse.Namespace) -> int:
    from ..core.paths import default_index
    from ..reader.squad import load_squad
    from .calibration_fit import calibrate
    from .default_reader import resolve_reader
    from .qa import QA

    reader = resolve_reader(args.reader)
    qa = QA(args.index or default_index(), reader, retrieval_k=args.retrieval_k,
            reader_backend=args.reader_backend)
    examples, _ = load_squad(args.data)
    target = None if args.dry_run else reader
    if target is not None and not Path(target).is_dir():
        raise ValueError(f"cannot save a calibration beside {target}: not a local directory")
    _, report = calibrate(qa, examples, target, limit=args.limit, seed=args.seed,
                          source=f"{args.data} ({args.limit or len(examples)} questions)")
    print(json.dumps(report, indent=2, allow_nan=False))
    return 0
