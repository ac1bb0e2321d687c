"""Reading JSON strictly: no NaN, Infinity, -Infinity, and no number beyond a float's range.

Python's json module reads all four (1e999 as inf), but strict JSON has none of them:
SQLite's JSON functions refuse such text (one such metadata row used to fail every
tag-filtered search), browsers refuse it in responses, and json.dumps(allow_nan=False)
cannot write it back. So what SpanQA stores or passes on is read through this one check.

`marked_loads` reads on past such a number, leaving a `NonFinite` marker where it stood, so
that a reader can skip the one record that holds it and name the field (`first_non_finite`);
`strict_loads` refuses the whole text.
"""

from __future__ import annotations

import json
import math
from typing import Any


class NonFinite:
    """What a non-finite number parses to under `marked_loads`, instead of a float that
    strict JSON cannot write back."""

    __slots__ = ("literal",)

    def __init__(self, literal: str) -> None:
        self.literal = literal

    @property
    def beyond_range(self) -> bool:
        """A number too large for a float (1e999), rather than NaN or Infinity."""
        return self.literal[-1:].isdigit()


def marked_loads(text: str | bytes) -> Any:
    """json.loads with a `NonFinite` in place of each NaN, Infinity, -Infinity and 1e999."""
    return _loads(text, [])


def strict_loads(text: str | bytes) -> Any:
    """json.loads that refuses NaN, Infinity, -Infinity and numbers that only fit a float
    as infinity (ValueError, naming the field)."""
    found: list[NonFinite] = []
    value = _loads(text, found)
    if found:
        located = first_non_finite(value)
        field, marker = located if located is not None else ("", found[0])
        what = "is beyond a float's range" if marker.beyond_range else "is not valid JSON"
        raise ValueError(f"{marker.literal} {what}" + (f" (at {field})" if field else ""))
    return value


def first_non_finite(value: Any) -> tuple[str, NonFinite] | None:
    """(field, marker) of the first `NonFinite` in `value`, in document order, the field
    named from `value` down ("metadata.scores[1].low"; "" for `value` itself); iterative,
    since JSON may nest as deep as the parser allows."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        field, item = stack.pop()
        if isinstance(item, NonFinite):
            return field, item
        if isinstance(item, dict):
            stack.extend((f"{field}.{k}" if field else str(k), v)
                         for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((f"{field}[{i}]", v) for i, v in reversed(list(enumerate(item))))
    return None


def _loads(text: str | bytes, found: list[NonFinite]) -> Any:
    """json.loads marking non-finite numbers, each marker also appended to `found` (so
    that `strict_loads` walks the value only when there is something to name)."""

    def mark(literal: str) -> NonFinite:
        found.append(NonFinite(literal))
        return found[-1]

    def number(literal: str) -> float | NonFinite:
        value = float(literal)
        return value if math.isfinite(value) else mark(literal)

    return json.loads(text, parse_constant=mark, parse_float=number)


def finite(value: Any) -> Any:
    """`value` with every NaN and infinity, however deeply nested in dicts, lists and
    tuples, made null: the one conversion the responses and the log lines share, so that
    both stay strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value
