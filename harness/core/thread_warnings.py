"""Warnings recorded for the calling thread only.

`warnings.catch_warnings` swaps process-wide state (the filter list, the display hook) and restores it on exit,
so it is not thread-safe: with the ground truth of the next clip prepared in a background thread
(harness.prefetch), a context there would swallow the main thread's warnings into that clip's record, and
contexts entered and left in an interleaved order leave a dead hook installed for the rest of the process.
`recorded_warnings()` does what `catch_warnings(record=True)` + `simplefilter("always", category)` did for
the code that uses it (every warning of `category` raised through `warnings.warn` in this thread is recorded,
none shown), and nothing else: other threads and other categories go through the usual filters and display.
It works by wrapping `warnings.warn` once per process (the wrapper passes every call it does not record to
the original, one stack level up, so locations and filters are unchanged). Warnings raised from C through
the C API are not seen (none of this project's input checks are).
"""
from __future__ import annotations

import threading
import warnings
from contextlib import contextmanager
from typing import Any, Iterator

_LOCAL = threading.local()
_INSTALL_LOCK = threading.Lock()
_ORIGINAL_WARN: Any = None


def _stack() -> list[tuple[type[Warning], list[warnings.WarningMessage]]]:
    st = getattr(_LOCAL, "stack", None)
    if st is None:
        st = _LOCAL.stack = []
    return st


def _warn(message: Any, category: type[Warning] | None = None, stacklevel: int = 1, source: Any = None,
          **kwargs: Any) -> None:
    """warnings.warn, recording into the innermost recorded_warnings() of this thread when the category matches."""
    st = getattr(_LOCAL, "stack", None)
    if st:
        if isinstance(message, Warning):
            cat: type[Warning] = type(message)
        else:
            cat = category if category is not None else UserWarning
        want, log = st[-1]
        if issubclass(cat, want):
            import sys

            try:
                frame = sys._getframe(max(1, int(stacklevel)))
                filename, lineno = frame.f_code.co_filename, frame.f_lineno
            except ValueError:
                filename, lineno = "sys", 1
            msg = message if isinstance(message, Warning) else cat(message)
            log.append(warnings.WarningMessage(msg, cat, filename, lineno, source=source))
            return
    _ORIGINAL_WARN(message, category, stacklevel + 1, source, **kwargs)


def _install() -> None:
    global _ORIGINAL_WARN
    with _INSTALL_LOCK:
        if _ORIGINAL_WARN is None:
            _ORIGINAL_WARN = warnings.warn
            warnings.warn = _warn


@contextmanager
def recorded_warnings(category: type[Warning] = UserWarning) -> Iterator[list[warnings.WarningMessage]]:
    """The warnings of `category` this thread raises inside the block, in order (none shown); nestable."""
    _install()
    log: list[warnings.WarningMessage] = []
    st = _stack()
    st.append((category, log))
    try:
        yield log
    finally:
        st.pop()
