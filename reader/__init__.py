"""The span reader: SQuAD data, windows, fine-tuning, evaluation and inference."""

from .postprocess import Answer
from .reader import Reader

__all__ = ["Answer", "Reader"]
