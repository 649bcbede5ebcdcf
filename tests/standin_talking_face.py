"""Stand-in for a wrapped talking-face repository's inference script (used by test_baselines_subprocess).

Reads the prepared inputs the way those repositories do (cv2.VideoCapture frames, scipy wavfile audio),
and writes a video the way they do (cv2.VideoWriter) but deliberately unlike the harness contract:
30 fps, 200x200 (or `--panels` copies side by side), a different length, in a results/ subfolder.
--fail exits 1 with a message on stderr; --hang sleeps (timeout test).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import cv2
import numpy as np
from scipy.io import wavfile


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--video", required=True)
    ap.add_argument("--audio", required=True)
    ap.add_argument("--out_dir", required=True)
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--panels", type=int, default=1)
    ap.add_argument("--fail", action="store_true")
    ap.add_argument("--hang", action="store_true")
    a = ap.parse_args()
    if a.hang:
        time.sleep(600)
    if a.fail:
        print("standin: CUDA error: out of memory (simulated)", file=sys.stderr)
        return 1
    cap = cv2.VideoCapture(a.video)
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    sr, wav = wavfile.read(a.audio)
    if sr != 16000 or wav.dtype != np.int16 or not frames or abs(fps - 25) > 0.01:
        print(f"standin: bad inputs sr={sr} dtype={wav.dtype} frames={len(frames)} fps={fps}", file=sys.stderr)
        return 2
    n_out = int(round(len(wav) / sr * 30)) + 7  # 30 fps, and 7 frames too many
    os.makedirs(os.path.join(a.out_dir, "results"), exist_ok=True)
    path = os.path.join(a.out_dir, "results", "result.mp4")
    w = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 30, (a.size * a.panels, a.size))
    for i in range(n_out):
        f = cv2.resize(frames[min(int(i * 25 / 30), len(frames) - 1)], (a.size, a.size))
        panels = [np.zeros_like(f)] * a.panels
        panels[a.panels - 1] = f
        w.write(np.concatenate(panels, axis=1))
    w.release()
    print(f"wrote {n_out} frames to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
