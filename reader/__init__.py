"""The span reader: SQuAD data, windows, fine-tuning, evaluation and inference."""

from reader.postprocess import Answer
from reader.reader import Reader

__all__ = ["Answer", "Reader"]
