"""A bounded prefetch queue: the next clips' preparation runs in a background thread while this one is scored.

On a GPU the metric networks wait for decoding and face tracking (CPU work: PyAV, dlib) unless both overlap;
`Prefetcher` runs `prepare(key)` for the keys ahead of the one being consumed, at most `depth` of them
prepared (or in preparation) and not yet taken, so memory holds at most `depth` extra prepared items
(for the run: `depth` clips' decoded frames + 256x256 crops + audio). The consumer takes items in order;
what preparation raised is raised again by `take` (the same exception object, so the same message).
Results never depend on the depth: the consumer would have prepared the same key itself.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Hashable, Sequence


class Prefetcher:
    """prepare(key) for keys[i+1 .. i+depth] in one daemon thread while the caller works on keys[i].

    Use as a context manager; take(key) in the order of `keys` (a key skipped is dropped when a later one is
    taken; a key not in `keys`, or taken twice, is prepared in the caller's thread). Instrumented: `max_held` is
    the most items ever prepared-or-in-preparation and not yet taken (never above `depth`); `prepared` lists
    the keys the thread prepared, in order."""

    def __init__(self, keys: Sequence[Hashable], prepare: Callable[[Hashable], Any], depth: int = 1) -> None:
        if depth < 1:
            raise ValueError(f"prefetch depth must be >= 1, got {depth}")
        self.keys = list(dict.fromkeys(keys))
        self._index = {k: i for i, k in enumerate(self.keys)}
        self.prepare, self.depth = prepare, int(depth)
        self._slots = threading.Semaphore(self.depth)
        self._cond = threading.Condition()
        self._done: dict[Hashable, tuple[bool, Any]] = {}  # key -> (ok, value or exception), not yet taken
        self._stop = self._finished = False
        self._held = 0
        self.max_held = 0
        self.prepared: list[Hashable] = []
        self._thread = threading.Thread(target=self._loop, name="rtb-prefetch", daemon=True)

    # the background thread ------------------------------------------------------------------------------
    def _loop(self) -> None:
        try:
            for key in self.keys:
                self._slots.acquire()
                with self._cond:
                    if self._stop:
                        break
                    self._held += 1
                    self.max_held = max(self.max_held, self._held)
                try:
                    result: tuple[bool, Any] = (True, self.prepare(key))
                except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
                    result = (False, exc)
                with self._cond:
                    self.prepared.append(key)
                    if self._stop:
                        break
                    self._done[key] = result
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._finished = True
                self._cond.notify_all()

    def _drop(self, key: Hashable) -> tuple[bool, Any] | None:
        """Pop an item and free its slot (call holding the condition)."""
        entry = self._done.pop(key, None)
        if entry is not None:
            self._held -= 1
            self._slots.release()
        return entry

    # the consumer ----------------------------------------------------------------------------------------
    def __enter__(self) -> "Prefetcher":
        self._thread.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close(wait=exc_type is None)

    def close(self, wait: bool = True) -> None:
        """Stop preparing and drop the untaken items; with wait, join the thread (it finishes the item in hand)."""
        with self._cond:
            self._stop = True
            for k in list(self._done):
                self._drop(k)
        self._slots.release()  # wake the thread if it waits for a slot
        if wait and self._thread.is_alive():
            self._thread.join()

    def take(self, key: Hashable) -> Any:
        """The prepared item for key (waiting while the thread is on it); prepare(key) in this thread when the
        thread never will. Re-raises what preparation raised."""
        entry = None
        idx = self._index.get(key)
        with self._cond:
            while idx is not None and not self._stop:
                for k in [k for k in self._done if self._index[k] < idx]:  # skipped keys: free their slots
                    self._drop(k)
                if key in self._done:
                    entry = self._drop(key)
                    break
                if key in self.prepared or self._finished:
                    break
                self._cond.wait(1.0)
        if entry is None:
            return self.prepare(key)
        ok, value = entry
        if not ok:
            raise value
        return value

    @property
    def held(self) -> int:
        """Items prepared or in preparation, not yet taken."""
        with self._cond:
            return self._held

    def wait_full(self, timeout: float = 120.0) -> bool:
        """Block until `depth` items are held or the thread has prepared every key (tests: the queue is as full
        as it can get while the consumer does not take)."""
        with self._cond:
            return self._cond.wait_for(lambda: (self._held >= self.depth and len(self._done) >= self.depth)
                                       or self._finished, timeout)


def prepare_clip(evaluator: Any, settings: dict[str, Sequence[str]]) -> Callable[[str], dict[str, Any]]:
    """prepare(clip_id) for a run: Evaluator.ground_truth of each of the clip's settings (settings[clip_id]: decode, face tracking, crops, driving
    audio), on an evaluator of its own that shares the run's clips, data root, media access and cache (so the
    run's evaluator and its memo are touched by the consumer's thread only). A setting whose preparation fails
    is left out: the consumer prepares it again itself, exactly as without prefetch, so its record carries the
    same message (prepare.failed lists (clip_id, setting, message) of what failed here). Returns
    {setting: ground truth}."""
    from harness.evaluate import Evaluator, _err

    failed: list[tuple[str, str, str]] = []

    def prepare(clip_id: str) -> dict[str, Any]:
        own = Evaluator({}, {}, evaluator.clips, evaluator.root, evaluator.fps, evaluator.sample_rate,
                        io_=evaluator.io, cache=evaluator.cache, write_videos=False, gt_memo=2)
        out: dict[str, Any] = {}
        for s in settings.get(clip_id, ()):
            try:
                out[s] = own.ground_truth(clip_id, s)
            except Exception as exc:  # noqa: BLE001 - the consumer redoes it and records it as usual
                failed.append((clip_id, s, _err(exc)))
        return out

    prepare.failed = failed  # type: ignore[attr-defined]
    return prepare
