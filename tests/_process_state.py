"""Reset what a new process would not have (tests that simulate "a second process" in one interpreter)."""
from __future__ import annotations


def fresh_process() -> None:
    """What a new process starts with: no in-memory memos, no loaded networks or face models (every memo is
    registered with metrics.frame_memo.clear_all), zeroed pass counters. Public API only."""
    from metrics import frame_memo
    from metrics.base import load_all
    from metrics.passes import PASSES

    load_all()  # every metric module imported, so every network memo is registered before it is cleared
    frame_memo.clear_all()
    PASSES.reset()
