"""Frames/s of each available registered metric on real clips: `python -m metrics.throughput [--frames N]`.
Generated = the ground-truth crops reversed in time (a real, non-identical pair)."""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def real_crops(n: int) -> np.ndarray:
    from harness.core.media import read_video
    from harness.core.paths import data_root

    v = read_video(data_root() / "styletalk" / "video" / "Obama_clip1.mp4", fps=25.0, max_frames=n)
    return v.frames


def measure(names: list[str] | None, frames: int, batch_size: int) -> dict[str, float]:
    from metrics.base import ClipInput, load_all

    gt = real_crops(frames)
    clip = ClipInput("bench", generated=gt[::-1].copy(), ground_truth=gt, identity=gt[0])
    out = {}
    for name, cls in sorted(load_all().items()):
        if names and name not in names:
            continue
        m = cls(batch_size=batch_size)
        if not m.availability()[0] or "audio" in m.needs:
            continue
        run = (lambda: m.clip_state(clip)) if m.split_level else (lambda: m.compute_clip(clip))
        run_small = ClipInput("warm", generated=gt[:2], ground_truth=gt[:2], identity=gt[0])
        (m.clip_state if m.split_level else m.compute_clip)(run_small)  # load weights outside the timing
        t = time.perf_counter()
        run()
        # FID's clip_state embeds both sides: 2x frames of network work
        out[name] = (2 if m.split_level else 1) * len(gt) / (time.perf_counter() - t)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m metrics.throughput")
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--metrics", default=None)
    a = ap.parse_args(argv)
    res = measure(a.metrics.split(",") if a.metrics else None, a.frames, a.batch_size)
    for name, fps in res.items():
        print(f"{name:10s} {fps:8.2f} frames/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
