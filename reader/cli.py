"""`spanqa reader ...`: train, evaluate, score and predict from the command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from .config import READER_BACKENDS, TrainConfig

_TRAIN_HELP = {
    "train": "SQuAD JSON file, or the hub dataset name squad / squad_v2",
    "dev": "SQuAD JSON file (or squad / squad_v2) for evaluations during training",
    "out": "run directory: best/ and last/ checkpoints, metrics.jsonl, curves.png",
    "model": "encoder: hub id (e.g. SpanBERT/spanbert-base-cased), local directory, or "
    "'minilm' for the offline pretrained all-MiniLM-L6-v2",
    "batch_size": "examples per optimizer step, over all processes and accumulation steps",
    "batching": "length: length-grouped batches with dynamic padding; random: dynamic padding "
    "only; padded: every window padded to max_seq_length (the reference recipe)",
    "precision": "auto (bf16 on GPUs that have it, else fp32), fp32, bf16 or fp16",
    "resume": "continue from OUT/last after an interruption",
    "max_steps": "stop after this many optimizer steps (0: train all epochs)",
    "max_train_seconds": "stop once training (evaluations excluded) has run this long, "
    "evaluate and keep the best checkpoint (0: no limit); the schedule still plans for the "
    "full run, so a tight limit ends with the learning rate above zero",
    "train_layers": "train only the top N transformer layers and the span head; the "
    "embeddings and the layers below stay as loaded (0: train everything)",
    "dropout": "hidden and attention dropout while training (negative: the model's own)",
    "plan_seconds": "fit the learning-rate schedule to this many seconds of training: it is "
    "re-planned every 10 steps to the steps that fit at the pace so far (at most --max-steps or "
    "--epochs), so the decay ends when the time does, on any machine (0: plan by steps)",
    "evals_per_epoch": "dev evaluations (and checkpoints) per epoch",
    "save_steps": "also write a resumable checkpoint every N steps (0: only at evaluations)",
}


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fine-tune a span reader on SQuAD",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        default = field.default
        helptext = _TRAIN_HELP.get(field.name, " ")
        if field.type in ("bool",):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                           help=helptext)
        else:
            kind = {"int": int, "float": float}.get(str(field.type), str)
            required = default is dataclasses.MISSING
            p.add_argument(flag, type=kind, required=required,
                           default=None if required else default, help=helptext)
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from .train import train

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in vars(args).items() if k in names})
    summary = train(config)
    print(json.dumps(summary, indent=2))
    return 0


def add_backend_argument(p: argparse.ArgumentParser, flag: str = "--backend") -> None:

    p.add_argument(flag, choices=("auto", *READER_BACKENDS), default="auto",
                   help="what computes the reader's logits: auto = PyTorch on a GPU, OpenVINO "
                        "on a CPU (without it: ONNX Runtime in fp32, PyTorch in bf16); "
                        "onnx-int8 trades a little F1 for speed (its scores move slightly "
                        "with the batch)")


def add_precision_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="what the reader reads in: auto = bf16 on GPUs and CPUs with bf16 "
                        "units (AVX512-BF16, AMX), else fp32")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score a reader on a SQuAD dev file (official metrics)")
    p.add_argument("--model", required=True, help="run or checkpoint directory, or hub id")
    p.add_argument("--data", required=True, help="SQuAD JSON file, or squad / squad_v2")
    p.add_argument("--out", help="write predictions.json, nbest_predictions.json, "
                                 "null_odds.json and eval_results.json here")
    p.add_argument("--threshold", type=float, default=None,
                   help="no-answer threshold (v2.0); default: the checkpoint's, then tuned")
    p.add_argument("--batch-size", type=int, default=None,
                   help="windows per forward pass (default: the fastest for the device)")
    p.add_argument("--max-examples", type=int, default=0)
    add_backend_argument(p)
    add_precision_argument(p)
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate
    from .reader import Reader
    from .squad import load_examples

    reader = Reader.from_pretrained(args.model, backend=args.backend, precision=args.precision)
    examples, report = load_examples(args.data, split="validation")
    print(report.summary(), file=sys.stderr)
    if args.max_examples:
        examples = examples[: args.max_examples]
    threshold = args.threshold if args.threshold is not None else reader.null_threshold
    result = evaluate(
        reader.runner, reader.tokenizer, examples, reader.config, version=report.version,
        threshold=threshold, tune_threshold=threshold is None, batch_size=args.batch_size,
        dtype=reader.dtype, progress=True,
    )
    if args.out:
        result.write(args.out)
    print(json.dumps(result.summary(), indent=2))
    return 0


def _add_score(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="score a predictions file like the official v2.0 script")
    p.add_argument("data", help="SQuAD JSON file with the gold answers")
    p.add_argument("predictions", help="predictions.json: {question id: answer text}")
    p.add_argument("--na-prob", help="null_odds.json: {question id: no-answer score}")
    p.set_defaults(func=_run_score)


def _run_score(args: argparse.Namespace) -> int:
    from .metrics import score_files

    print(json.dumps(score_files(args.data, args.predictions, args.na_prob), indent=2))
    return 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="answer a question from a context (or a JSON-lines file)")
    p.add_argument("--model", required=True, help="run or checkpoint directory, or hub id")
    p.add_argument("--question")
    p.add_argument("--context", action="append",
                   help="context text; repeat for several, the answers are ranked across them")
    p.add_argument("--input", help='JSON-lines file of {"question": ..., "context": ... or '
                                   '"contexts": [...]}; "-" for standard input')
    p.add_argument("--top-k", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=None,
                   help="windows per forward pass (default: the fastest for the device)")
    add_backend_argument(p)
    add_precision_argument(p)
    p.set_defaults(func=_run_predict)


def _read_requests(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    if args.input:
        if args.input == "-":
            lines = sys.stdin.read().splitlines()
        else:
            lines = Path(args.input).read_text(encoding="utf-8").splitlines()
        requests = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                contexts = record.get("contexts") or [record["context"]]
                requests.append((str(record["question"]), [str(c) for c in contexts]))
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                raise SystemExit(f"{args.input}:{n}: expected a JSON object with 'question' and "
                                 f"'context' or 'contexts' ({exc})") from exc
        return requests
    if not args.question or not args.context:
        raise SystemExit("give --question and --context, or --input FILE.jsonl")
    return [(args.question, args.context)]


def _run_predict(args: argparse.Namespace) -> int:
    from .reader import Reader

    requests = _read_requests(args)
    reader = Reader.from_pretrained(args.model, batch_size=args.batch_size,
                                    backend=args.backend, precision=args.precision)
    for lo in range(0, len(requests), 64):
        chunk = requests[lo : lo + 64]
        results = reader.answer_many([q for q, _ in chunk], [c for _, c in chunk], args.top_k)
        for (question, _), answers in zip(chunk, results, strict=True):
            print(json.dumps({"question": question,
                              "answers": [dataclasses.asdict(a) for a in answers]},
                             ensure_ascii=False))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reader", help="fine-tune, evaluate and run the span reader")
    reader_sub = p.add_subparsers(dest="reader_command", required=True)
    _add_train(reader_sub)
    _add_evaluate(reader_sub)
    _add_score(reader_sub)
    _add_predict(reader_sub)
