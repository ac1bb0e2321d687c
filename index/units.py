"""Dense units of a stored index: which vectors belong to which passage.

Units are stored in passage order, so the units of passage row r are one contiguous run;
a passage's dense score is the best score of its units (MaxP, see indexer/unit_split.py).
"""

from __future__ import annotations

import numpy as np


def unit_bounds(owners: np.ndarray, passages: int) -> np.ndarray:
    """bounds[r]:bounds[r + 1] are the units of passage row r."""
    return np.searchsorted(owners, np.arange(passages + 1), side="left")


def best_per_passage(unit_scores: np.ndarray, owners: np.ndarray, passages: int) -> np.ndarray:
    """Each passage's best unit score (-inf for passages with no scored unit)."""
    best = np.full(passages, -np.inf, np.float32)
    np.maximum.at(best, owners, unit_scores.astype(np.float32))
    return best
