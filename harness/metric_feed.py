"""Per-clip metrics fed a streamed clip's generated crops chunk by chunk (issue 15 item 5).

A clip decoded in chunks (harness.evaluate: StreamedFrames) keeps the ground truth's 256x256 crops (1.5 GB for
7500 frames) but not a second array of the generated ones: every metric with `Metric.chunked` gets each chunk's
crops as they are cut (start / update / finish, metrics/base.py) and gives compute_clip()'s result at the end.
Metrics without it (and split-level ones) take the collected crops, so the evaluator collects them only when
such a metric is in the run. One metric failing (in start or any update) is recorded for that metric alone,
as on the whole-array path; the others go on.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from metrics.base import ClipInput, ClipResult, Metric


def fed_in_chunks(metric: Metric) -> bool:
    """A per-clip metric that takes its generated crops chunk by chunk."""
    return bool(getattr(metric, "chunked", False)) and not metric.split_level


class MetricFeed:
    """start() every metric on the clip (generated crops empty), update() them with each chunk, finish() each."""

    def __init__(self, metrics: dict[str, Metric], clip: ClipInput, gt_crops: np.ndarray | None):
        self.metrics = metrics
        self.gt = gt_crops
        self.states: dict[str, Any] = {}
        self.errors: dict[str, BaseException] = {}
        self.seconds: dict[str, float] = {name: 0.0 for name in metrics}
        self.pos = 0
        for name, metric in metrics.items():
            t0 = time.perf_counter()
            try:
                self.states[name] = metric.start(clip)
            except Exception as exc:  # noqa: BLE001 - recorded for this metric (finish re-raises it)
                self.errors[name] = exc
            self.seconds[name] += time.perf_counter() - t0

    def update(self, crops: np.ndarray) -> None:
        """The next chunk of generated crops (clip order)."""
        gt = None if self.gt is None else self.gt[self.pos:self.pos + len(crops)]
        for name in list(self.states):
            metric = self.metrics[name]
            t0 = time.perf_counter()
            try:
                metric.update(self.states[name], crops, gt if "ground_truth" in metric.needs else None)
            except Exception as exc:  # noqa: BLE001 - this metric stops; the others go on
                self.errors[name] = exc
                del self.states[name]
            self.seconds[name] += time.perf_counter() - t0
        self.pos += len(crops)

    def finish(self, name: str) -> ClipResult:
        """The metric's result, or the exception it raised on the way (re-raised, for the evaluator to record)."""
        if name in self.errors:
            raise self.errors[name]
        t0 = time.perf_counter()
        try:
            return self.metrics[name].finish(self.states.pop(name))
        finally:
            self.seconds[name] += time.perf_counter() - t0

    @property
    def total_s(self) -> float:
        return float(sum(self.seconds.values()))
