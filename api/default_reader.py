"""Which reader answers when none is named: the hub's SpanBERT, else the demo's cached one."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..core.paths import demo_reader_dir

log = logging.getLogger(__name__)

HUB_READER = "mrm8488/spanbert-finetuned-squadv2"  # SpanBERT base fine-tuned on SQuAD 2.0


class NoReaderError(FileNotFoundError):
    """No reader was named and no default one can be had."""


def cached_demo_reader() -> Path | None:
    """The reader `spanqa demo` trained and cached, when there is one."""
    demo = demo_reader_dir()
    if (demo / "best").is_dir() or (demo / "config.json").is_file():
        return demo
    return None


def no_reader_error(why: str) -> NoReaderError:
    return NoReaderError(
        f"no reader: none was given (--reader DIR), the default {HUB_READER} could not be "
        f"loaded ({why}) and no reader is cached in {demo_reader_dir()}. Run `spanqa demo` "
        "(it trains and caches one offline) or pass --reader DIR (a `spanqa reader train` "
        "output).")


def hub_reachable(repo_id: str = HUB_READER, timeout: float = 5.0) -> bool:
    """True when the model is in the local hub cache or the hub answers within `timeout`."""
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        return True
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        from huggingface_hub import HfApi

        HfApi().model_info(repo_id, timeout=timeout)
        return True
    except Exception as exc:  # offline, DNS failure, proxy: all mean "not here"
        log.info("the hub is not reachable (%s)", type(exc).__name__)
        return False


def resolve_reader(explicit: str | Path | None = None) -> str:
    """The reader to load: the one named, else the hub default, else the demo's cache."""
    if explicit:
        return str(explicit)
    if hub_reachable():
        return HUB_READER
    demo = cached_demo_reader()
    if demo is not None:
        log.info("the hub is not reachable; using the demo's reader in %s", demo)
        return str(demo)
    raise no_reader_error("the hub is not reachable")
