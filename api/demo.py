"""`spanqa demo`: index a collection, get a reader, answer questions with their sources.

Offline and on 2 cores, in a few minutes: the collection defaults to the shared SQuAD dev
articles, and when no trained reader is cached the offline MiniLM encoder is fine-tuned on
SQuAD v1.1 train with the short recipe below, calibrated on SQuAD 2.0 dev questions asked
over the index, and cached for later runs and for `spanqa serve`. Then it asks dev
questions it has never seen and says beside each answer whether it matches SQuAD's gold.
"""

from __future__ import annotations

import argparse
import random
import shutil
import time
from pathlib import Path

# The short recipe, chosen from the F1-per-minute curves of bench/demo_reader.py
# (bench/results/demo-reader.json): the reference optimiser (no warm-up, no weight decay,
# no clipping), batches of 8 windows and no dropout, which learn the most from the few
# thousand windows a CPU trains on in minutes. The schedule is fitted to a time budget, so
# the demo takes the same time on any machine and a faster one trains on more windows.
DEMO_RECIPE = dict(model="minilm", max_seq_length=256, doc_stride=64, batch_size=8, lr=2e-4,
                   warmup=0.0, weight_decay=0.0, max_grad_norm=0.0, dropout=0.0, epochs=1,
                   seed=42)
DEMO_TRAIN_SECONDS = 300
DEMO_MAX_STEPS = 400  # 3,200 windows, where a fast machine stops
DEV_QUESTIONS = 300  # the training run's dev evaluation, with their paragraphs
CALIBRATION_QUESTIONS = 100
CALIBRATION_DEPTH = 5  # passages read per calibration question
DEMO_QUESTIONS = 8
SHORT_ANSWER_WORDS = 3  # questions whose gold answers are all this short: names, dates, numbers
MIN_OVERLAP = 2 / 3  # and that share this much of their wording with the answer's sentence


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..core.paths import data_home

    p = sub.add_parser("demo", help="index documents, train a reader if none is cached, "
                       "then answer questions with their sources")
    p.add_argument("--docs", nargs="*", default=None,
                   help="files or folders to index (default: the shared SQuAD dev articles)")
    p.add_argument("--index", default=str(data_home() / "demo-index"))
    p.add_argument("--reader", default=None,
                   help="use this reader instead of the demo's cached one")
    p.add_argument("--question", action="append", default=[],
                   help="ask this (repeatable; default: SQuAD dev questions a short-trained "
                   "reader can be expected to answer)")
    p.add_argument("--questions", type=int, default=DEMO_QUESTIONS,
                   help="how many SQuAD dev questions to ask when no --question is given")
    p.add_argument("--retrain", action="store_true", help="train the demo reader again")
    p.add_argument("--train-seconds", type=float, default=DEMO_TRAIN_SECONDS,
                   help="training time the schedule is fitted to (evaluation not counted)")
    p.add_argument("--steps", type=int, default=DEMO_MAX_STEPS,
                   help="training steps at most (a fast machine stops here)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..core.paths import squad_dir
    from .qa import QA

    began = time.perf_counter()
    squad = squad_dir()
    docs = args.docs or [str(squad / "dev-v1.1.json")]
    for doc in docs:
        if not Path(doc).exists():
            raise FileNotFoundError(f"{doc} does not exist (set SPANQA_SQUAD_DIR or pass --docs)")
    index_documents(args.index, docs)
    reader, trained_now = demo_reader(args, squad)
    qa = QA(args.index, reader)
    calibrate_reader(qa, reader, squad, fit=trained_now and not args.docs)
    answer_questions(qa, questions_to_ask(args, squad))
    print(f"\nDone in {time.perf_counter() - began:.0f} s. Serve it: spanqa serve --index "
          f"{args.index}" + (f" --reader {args.reader}" if args.reader else ""))
    return 0


def index_documents(index: str, docs: list[str]) -> None:
    from ..indexer.build import update_index

    print(f"[1/4] Indexing {', '.join(docs)} into {index} (unchanged files are skipped)")
    print(update_index(index, add=docs).table())


def demo_reader(args: argparse.Namespace, squad: Path) -> tuple[Path, bool]:
    """The reader to answer with, and whether it was trained just now."""
    from ..core.paths import demo_reader_dir

    reader = Path(args.reader) if args.reader else demo_reader_dir()
    if args.reader is not None or ((reader / "best").is_dir() and not args.retrain):
        print(f"[2/4] Using the reader in {reader} (--retrain to train the demo reader again)")
        return reader, False
    print(f"[2/4] No trained reader cached in {reader}: fine-tuning the offline MiniLM "
          f"encoder on SQuAD v1.1 train for {args.train_seconds:.0f} s (at most "
          f"{args.steps} steps of {DEMO_RECIPE['batch_size']} windows; cached)")
    if reader.is_dir():
        shutil.rmtree(reader)  # its calibration belongs to the old weights
    summary = train_demo_reader(reader, squad, args.steps, args.train_seconds)
    best = summary["best"]
    print(f"      dev-v1.1, {DEV_QUESTIONS} questions with their paragraph: exact match "
          f"{best['exact_match']:.1f}, F1 {best['f1']:.1f} (after {summary['steps']} "
          f"steps, {summary['train_seconds']:.0f} s of training)")
    return reader, True


def calibrate_reader(qa, reader: Path, squad: Path, *, fit: bool) -> None:
    """Fit the confidences of a reader trained just now on SQuAD 2.0 questions asked over
    the index (the unanswerable ones set the abstention threshold)."""
    from ..reader.squad import load_squad
    from .calibration_fit import calibrate

    if not fit or not (squad / "dev-v2.0.json").is_file():
        print("[3/4] Calibration: " + ("fitted earlier" if qa.calibration.fitted
                                       else "none (confidences uncalibrated)"))
        return
    print(f"[3/4] Calibrating confidences on {CALIBRATION_QUESTIONS} SQuAD 2.0 dev "
          f"questions asked over the index (top {CALIBRATION_DEPTH} passages each)")
    examples, _ = load_squad(squad / "dev-v2.0.json")
    depth, qa.retrieval_k = qa.retrieval_k, CALIBRATION_DEPTH
    _, cal = calibrate(qa, examples, reader, limit=CALIBRATION_QUESTIONS,
                       source=f"dev-v2.0 ({CALIBRATION_QUESTIONS} questions, top "
                              f"{CALIBRATION_DEPTH} passages)")
    qa.retrieval_k = depth
    print(f"      top-1 accuracy {cal['top1_accuracy']:.1%}, ECE {cal['ece_uncalibrated']}"
          f" -> {cal['ece_fitted']}, abstain below confidence {cal['threshold']:.2f}")


def questions_to_ask(args: argparse.Namespace, squad: Path) -> list[tuple[str, list[str]]]:
    """(question, gold answers): the user's, else SQuAD dev questions with their golds."""
    from ..reader.squad import load_squad

    if args.question:
        return [(q, []) for q in args.question]
    if args.docs:
        return [("What is this collection about?", [])]
    examples, _ = load_squad(squad / "dev-v1.1.json")
    return answerable_questions(examples, args.questions)


def answer_questions(qa, questions: list[tuple[str, list[str]]]) -> None:
    from .ask_cli import format_result

    graded = any(golds for _, golds in questions)
    print("[4/4] Answering" + (" SQuAD dev questions the reader has never seen (short "
                               "answers, worded like their answer's sentence)" if graded else ""))
    verdicts = []
    for question, golds in questions:
        result = qa.ask(question, top_k=2)
        print()
        print(format_result(result))
        if golds:
            verdict = judge(result, golds)
            verdicts.append(verdict)
            print(f"   {MARKS[verdict]} {VERDICTS[verdict]} "
                  f"(SQuAD gold: {' | '.join(sorted(set(golds)))})")
    if verdicts:
        print("\n" + tally(verdicts))


def answerable_questions(examples: list, n: int, seed: int = 7) -> list[tuple[str, list[str]]]:
    """A seeded sample of dev questions an extractive reader can be expected to answer:
    every gold answer short (a name, a date, a number) and most of the question's words
    in the sentence that holds the answer (SQuAD's easy questions; where the wording
    differs, a reader trained for minutes mostly fails). Chosen by the data alone, never
    by how the reader does on them."""
    easy = [e for e in examples if e.answers
            and all(len(a.text.split()) <= SHORT_ANSWER_WORDS for a in e.answers)
            and question_overlap(e) >= MIN_OVERLAP]
    return [(e.question, [a.text for a in e.answers])
            for e in random.Random(seed).sample(easy, min(n, len(easy)))]


def question_overlap(example) -> float:
    """Share of the question's words (BM25's tokens: no stop words) found in the sentence
    of its context that holds the first gold answer."""
    from ..index.text import tokenize
    from ..indexer.chunking import sentence_spans

    at = example.answers[0].start
    sentence = next((example.context[a:b] for a, b in sentence_spans(example.context)
                     if a <= at < b), example.context)
    words = set(tokenize(example.question))
    return len(words & set(tokenize(sentence))) / max(1, len(words))


MARKS = {"right": "✓", "partly": "~", "withheld-right": "?", "wrong": "✗", "withheld": "-"}
VERDICTS = {"right": "right: matches a gold answer",
            "partly": "partly right: overlaps a gold answer",
            "withheld-right": "withheld, though the best guess matches a gold answer",
            "wrong": "wrong",
            "withheld": "withheld (handed off), and the best guess does not match"}


def judge(result, golds: list[str]) -> str:
    """How the top answer compares with SQuAD's gold answers, under the official
    normalisation: "right" (exact match), "partly" (token F1 at least 0.5), "wrong";
    "withheld-right" / "withheld" when SpanQA handed the question off."""
    from ..reader.metrics import exact_match, f1

    shown = result.answers[0] if result.answers else result.best_guess
    text = shown.text if shown is not None else ""
    exact = any(exact_match(text, g) for g in golds)
    if result.handoff:
        return "withheld-right" if exact else "withheld"
    if exact:
        return "right"
    return "partly" if max(f1(text, g) for g in golds) >= 0.5 else "wrong"


def tally(verdicts: list[str]) -> str:
    """One line: how many of the questions were answered right, and what became of the rest."""
    counts = {v: verdicts.count(v) for v in VERDICTS}
    withheld = counts["withheld"] + counts["withheld-right"]
    given = len(verdicts) - withheld
    rest = [f"{counts['partly']} partly right", f"{counts['wrong']} wrong",
            f"{withheld} withheld (handed off)"]
    return (f"{counts['right']} of {len(verdicts)} questions answered right (exact match with "
            f"SQuAD's gold answer; {counts['right']} of the {given} answers given): "
            + ", ".join(rest) + ".")


def train_demo_reader(out: Path, squad: Path, steps: int, seconds: float) -> dict:
    from ..reader.config import TrainConfig
    from ..reader.train import train

    return train(TrainConfig(
        train=str(squad / "train-v1.1.json"), dev=str(squad / "dev-v1.1.json"), out=str(out),
        max_steps=steps, plan_seconds=seconds, evals_per_epoch=1,
        max_dev_examples=DEV_QUESTIONS, log_every=10, **DEMO_RECIPE))
