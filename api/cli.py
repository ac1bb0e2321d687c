"""The `spanqa` command: one entry point for every part of SpanQA."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from indexer.cli import add_parser as add_index_parser
from reader.cli import add_parser as add_reader_parser

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("SPANQA_DATA", REPO / "data"))


def squad_dir() -> Path:
    """Where the shared SQuAD files live: $SPANQA_SQUAD_DIR, else ../shared/squad."""
    return Path(os.environ.get("SPANQA_SQUAD_DIR", REPO.parent / "shared" / "squad"))


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="fine-tune a small reader on the SQuAD sample, then answer")
    p.add_argument("--out", default=str(DATA_DIR / "readers" / "demo-sample"))
    p.add_argument("--retrain", action="store_true", help="train again even if cached")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    import json

    from reader.reader import Reader
    from reader.squad import load_squad
    from reader.train import TrainConfig, train

    sample = squad_dir() / "sample-v1.1.json"
    if not sample.is_file():
        raise SystemExit(f"SQuAD sample not found at {sample}; set SPANQA_SQUAD_DIR")
    out = Path(args.out)
    if args.retrain or not (out / "best").is_dir():
        print(f"Fine-tuning the offline MiniLM encoder on {sample} (cached in {out}) ...")
        train(TrainConfig(train=str(sample), dev=str(sample), out=str(out), model="minilm",
                          max_seq_length=256, doc_stride=64, batch_size=8, lr=1.5e-4,
                          epochs=12, evals_per_epoch=1, warmup=0.1, log_every=5))
    else:
        print(f"Using the cached reader in {out} (--retrain to train again)")
    reader = Reader.from_pretrained(out)
    examples, _ = load_squad(sample)
    for example in examples[:: max(1, len(examples) // 3)][:3]:
        answers = reader.answer(example.question, [example.context], top_k=1)
        best = answers[0] if answers else None
        print(json.dumps({
            "question": example.question,
            "answer": best.text if best else None,
            "probability": round(best.probability, 3) if best else None,
            "source": {"title": example.title, "start": best.start if best else None,
                       "end": best.end if best else None},
            "gold": [a.text for a in example.answers],
        }, ensure_ascii=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spanqa",
        description="Retrieval-augmented question answering with exact answer spans.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    add_reader_parser(sub)
    add_index_parser(sub)
    _add_demo(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("faiss.loader", "sentence_transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one clear line for errors the user can fix
        from indexer.layout import IndexBusyError
        from reader.models import ModelLoadError
        from reader.squad import SquadFormatError

        if isinstance(exc, ModelLoadError | SquadFormatError | IndexBusyError | ValueError
                      | FileNotFoundError):
            print(f"spanqa: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
