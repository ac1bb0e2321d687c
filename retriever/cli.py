"""`spanqa search`: top-k passages for a question, from the command line."""

from __future__ import annotations

import argparse

from ..core.paths import default_index


def add_parser(sub: argparse._SubParsersAction) -> None:
    search = sub.add_parser("search", help="top-k passages for a question")
    search.add_argument("question")
    search.add_argument("--index", default=str(default_index()), help="index directory")
    search.add_argument("--top-k", type=int, default=10)
    search.add_argument("--mode", default="hybrid", choices=("bm25", "dense", "hybrid"))
    search.add_argument("--fusion", default="convex", choices=("convex", "rrf"),
                        help="hybrid: add normalised scores (convex) or reciprocal ranks (rrf)")
    search.add_argument("--bm25-share", type=_share, default=0.25,
                        help="convex fusion: the weight of BM25 (the cosine gets the rest)")
    search.add_argument("--rrf-k", type=int, default=60, help="reciprocal rank fusion constant")
    search.add_argument("--path-prefix")
    search.add_argument("--title")
    search.add_argument("--tag", action="append", default=[])
    search.add_argument("--json", action="store_true")
    search.set_defaults(func=_run_search)


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {text}")
    return value


def _run_search(args: argparse.Namespace) -> int:
    from .search import Filters, Fusion, Retriever, hits_json

    fusion = Fusion(args.fusion, bm25_share=args.bm25_share, rrf_k=args.rrf_k)
    retriever = Retriever(args.index, fusion=fusion)
    filters = Filters(args.path_prefix, args.title, tuple(args.tag))
    hits = retriever.search(args.question, args.top_k, args.mode, filters)
    if args.json:
        print(hits_json(hits))
        return 0
    for rank, hit in enumerate(hits, 1):
        page = f" p.{hit.page}" if hit.page else ""
        print(f"{rank:>2}. [{hit.score:.4f}] {hit.title}{page} ({hit.path})")
        print(f"    {hit.text[:200]}{'…' if len(hit.text) > 200 else ''}")
    return 0
