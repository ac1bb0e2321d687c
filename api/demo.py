"""`spanqa demo`: index a collection, get a reader, answer questions with their sources.

Offline and on 2 cores: the collection defaults to the shared SQuAD dev articles, and
when no trained reader is cached the offline MiniLM encoder is fine-tuned on SQuAD
for a fixed number of steps (about ten minutes), calibrated on SQuAD 2.0 dev questions
asked over the index, and cached for later runs and for `spanqa serve`.
"""

from __future__ import annotations

import argparse
import random
import shutil
import time
from pathlib import Path

DEMO_STEPS = 110  # optimizer steps of 16 windows; ~9 minutes on 2 cores
CALIBRATION_QUESTIONS = 100


def add_parser(sub: argparse._SubParsersAction) -> None:
    from reader.paths import data_home

    p = sub.add_parser("demo", help="index documents, train a reader if none is cached, "
                       "then answer questions with their sources")
    p.add_argument("--docs", nargs="*", default=None,
                   help="files or folders to index (default: the shared SQuAD dev articles)")
    p.add_argument("--index", default=str(data_home() / "demo-index"))
    p.add_argument("--reader", default=None,
                   help="use this reader instead of the demo's cached one")
    p.add_argument("--question", action="append", default=[],
                   help="ask this (repeatable; default: a few SQuAD dev questions)")
    p.add_argument("--retrain", action="store_true", help="train the demo reader again")
    p.add_argument("--steps", type=int, default=DEMO_STEPS, help="training steps")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from api.ask_cli import format_result
    from api.cli import squad_dir
    from api.qa import QA
    from indexer.build import update_index
    from reader.paths import demo_reader_dir
    from reader.squad import load_squad

    began = time.perf_counter()
    squad = squad_dir()
    docs = args.docs or [str(squad / "dev-v1.1.json")]
    for doc in docs:
        if not Path(doc).exists():
            raise FileNotFoundError(f"{doc} does not exist (set SPANQA_SQUAD_DIR or pass --docs)")
    print(f"[1/3] Indexing {', '.join(docs)} into {args.index} (unchanged files are skipped)")
    report = update_index(args.index, add=docs)
    print(report.table())

    reader = Path(args.reader) if args.reader else demo_reader_dir()
    trained_now = False
    if args.reader is None and (args.retrain or not (reader / "best").is_dir()):
        print(f"[2/3] No trained reader cached in {reader}: fine-tuning the offline MiniLM "
              f"encoder on SQuAD v1.1 train for {args.steps} steps (about ten minutes on "
              "2 cores; cached for later runs)")
        if reader.is_dir():
            shutil.rmtree(reader)  # its calibration belongs to the old weights
        train_demo_reader(reader, squad, args.steps)
        trained_now = True
    else:
        print(f"[2/3] Using the reader in {reader} (--retrain to train the demo reader again)")
    qa = QA(args.index, reader)
    if trained_now and (squad / "dev-v2.0.json").is_file() and not args.docs:
        from api.calibrate import calibrate

        print(f"      Calibrating confidences on {CALIBRATION_QUESTIONS} SQuAD 2.0 dev "
              "questions asked over the index")
        examples, _ = load_squad(squad / "dev-v2.0.json")
        _, cal = calibrate(qa, examples, reader, limit=CALIBRATION_QUESTIONS,
                           source=f"dev-v2.0 ({CALIBRATION_QUESTIONS} questions)")
        print(f"      top-1 accuracy {cal['top1_accuracy']:.1%}, ECE {cal['ece_uncalibrated']}"
              f" -> {cal['ece_fitted']}, abstain below confidence {cal['threshold']:.2f}")

    questions = args.question
    golds: dict[str, list[str]] = {}
    if not questions and not args.docs:
        examples, _ = load_squad(squad / "dev-v1.1.json")
        for e in random.Random(7).sample(examples, 3):
            questions.append(e.question)
            golds[e.question] = [a.text for a in e.answers]
    if not questions:
        questions = ["What is this collection about?"]
    print("[3/3] Answering")
    for q in questions:
        result = qa.ask(q, top_k=2)
        print()
        print(format_result(result))
        if q in golds:
            print(f"   (SQuAD gold answers: {' | '.join(sorted(set(golds[q])))})")
    print(f"\nDone in {time.perf_counter() - began:.0f} s. Serve it: spanqa serve --index "
          f"{args.index}" + (f" --reader {args.reader}" if args.reader else ""))
    return 0


def train_demo_reader(out: Path, squad: Path, steps: int) -> dict:
    from reader.train import TrainConfig, train

    return train(TrainConfig(
        train=str(squad / "train-v1.1.json"), dev=str(squad / "dev-v1.1.json"), out=str(out),
        model="minilm", max_seq_length=256, doc_stride=64, batch_size=16, lr=2e-4,
        epochs=1, max_steps=steps, evals_per_epoch=1, max_dev_examples=300, warmup=0.1,
        log_every=10))
