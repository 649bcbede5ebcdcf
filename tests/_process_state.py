"""Reset what a new process would not have (tests that simulate "a second process" in one interpreter)."""
from __future__ import annotations


def fresh_process() -> None:
    """What a new process starts with: no in-memory memos, no loaded networks, zeroed pass counters."""
    from metrics import csim, fid, frame_memo, syncnet_lse
    from metrics.passes import PASSES

    frame_memo.clear_all()
    fid._NETS.clear()
    csim._EMBEDDERS.clear()
    syncnet_lse._NETS.clear()
    PASSES.reset()
