"""Deterministic crash points for the crash-safety tests (tests/test_crash_points.py).

`fault_point(name)` is a no-op unless the environment variable RTB_FAULT names it: `RTB_FAULT=record` kills
the process (SIGKILL, as `kill -9`: no cleanup, no finally blocks, no atexit) at the first hit of the point
`record`, `RTB_FAULT=decode@5` at its 5th hit in this process. Random-moment kills from outside cannot say
what was being written when the process died; a named point can, so each test proves that a rerun recovers
from exactly that moment. RTB_FAULT_LOG=FILE appends the name of every point reached to FILE (one a line),
so a test reads the order of the points off an uninterrupted run instead of hard-coding hit counts. The points (grep `fault_point(`): decode (a video packet, harness/core/media.py),
generate (frames made, not yet cached; harness/evaluate.py), metric (before a metric computes a clip),
record (a clip's states/video written, its record not yet), record-replace (the record's temp file written
and fsynced, not yet renamed; harness/store.py), finalize (every record on disk, no tables yet;
harness/runner.py), per-clip / timings / summary (temp file written, not renamed; harness/store.py).
"""
from __future__ import annotations

import os
import signal

ENV = "RTB_FAULT"
LOG_ENV = "RTB_FAULT_LOG"
_hits: dict[str, int] = {}


def _target() -> tuple[str, int] | None:
    spec = os.environ.get(ENV, "")
    if not spec:
        return None
    name, _, nth = spec.partition("@")
    try:
        return name, max(1, int(nth)) if nth else 1
    except ValueError:
        return name, 1


def fault_point(name: str) -> None:
    """SIGKILL this process when RTB_FAULT selects this hit of point `name`; otherwise nothing (two
    environment lookups when RTB_FAULT and RTB_FAULT_LOG are unset, so the calls cost nothing in real runs)."""
    log = os.environ.get(LOG_ENV)
    if log:
        with open(log, "a") as f:
            f.write(name + "\n")
    target = _target()
    if target is None or target[0] != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == target[1]:
        os.kill(os.getpid(), signal.SIGKILL)
