"""Side by side (issue 16 item 3): today's dump-frames-and-run-each-tool recipe vs the harness.

Recipe, written by us from Wav2Lip's / EAT's evaluation descriptions: for EACH generated version, as separate
scripts that share nothing — dump the ground truth's and the generated video's frames to PNG (PyAV), a crop
script that tracks the face on the ground-truth PNGs and writes both crop folders, an LMD script that
re-detects landmarks on every crop of both folders, a per-folder FID (Inception on both folders), a CSIM
script (identity network on the reference crop and every generated crop); every script loads its networks.
Harness: one process, `metrics --gt GT --gen A B C` (its score_versions: the ground truth decoded and tracked
once, aligned_pair + start_pair per version, the dlib-bound metrics in the side worker of metrics/overlap.py
while the torch ones run here), cold (empty cache) and warm (ground-truth features on disk from an earlier
process). The recipe's scripts run each metric in turn (compute_pair without a side worker). Both use the
same frames (PNG is lossless) and the same protocols (the recipe runs the same metric classes with every memo
and cache off), so their values must agree exactly: same inputs through the same operations in the same
batches (the side worker runs only dlib's single-threaded code; torch keeps this process's threads).

Prints recipe s, harness cold s, harness warm s and the ratios, wall and CPU (this process + its finished side
worker), and the cores each phase kept busy (CPU / wall). RTB_BENCH_FRAMES sets the clip length
(issue target: 100 frames, 3 versions; default 8 so `make bench` stays short). Timings are printed, never
asserted.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from _process_state import fresh_process

CLIP = "video-retalking/face/2.mp4"
FRAMES = int(os.environ.get("RTB_BENCH_FRAMES", "8"))
NAMES = ["fid", "csim", "lmd", "ssim", "psnr"]


def _dump_png(video_path: Path, folder: Path) -> Path:
    from PIL import Image

    from harness.core.media import read_video

    folder.mkdir(parents=True)
    for i, f in enumerate(read_video(video_path, fps=25.0, max_frames=FRAMES).frames):
        Image.fromarray(f).save(folder / f"{i:05d}.png")
    return folder


def recipe(gt_path: Path, gen_paths: list[Path], work: Path) -> list[dict[str, dict[str, float]]]:
    """Per version, from scratch: dump -> crop -> LMD / FID / CSIM / SSIM / PSNR scripts (nothing shared)."""
    from harness.core.faces.clip import clip_faces, tracked_face_boxes
    from harness.core.faces.crop import crop_frames
    from harness.core.media import read_video_or_frames
    from metrics.compute import compute_pair

    out = []
    for k, gen_path in enumerate(gen_paths):
        fresh_process()  # a new script: networks load again, nothing memoised
        gt = read_video_or_frames(_dump_png(gt_path, work / f"v{k}" / "gt"))
        gen = read_video_or_frames(_dump_png(gen_path, work / f"v{k}" / "gen"))
        faces = clip_faces(gt, cache=False)  # the crop script: track on the ground-truth PNGs
        n = min(len(gt.frames), len(gen.frames))
        res = compute_pair(crop_frames(gen.frames[:n], faces.crop_track), faces.crops[:n], None, NAMES,
                           gen_full=gen.frames[:n], face_boxes=tracked_face_boxes(faces, n))
        out.append(res.values)
    return out


def harness_run(gt_path: Path, gen_paths: list[Path]) -> list[dict[str, dict[str, float]]]:
    """What `realtalk-bench metrics --gt GT --gen A B C --metrics ...` does (its score_versions: the ground truth
    decoded and tracked once, the dlib-bound metrics in the side worker), in this process, values kept."""
    from harness.cli import build_parser
    from harness.commands.metrics import score_versions

    args = build_parser().parse_args(["metrics", "--gt", str(gt_path), "--gen", *map(str, gen_paths),
                                      "--metrics", ",".join(NAMES), "--max-frames", str(FRAMES)])
    return [res.values for _, _, res in score_versions(args, args.gen)]


def cpu_s() -> float:
    """CPU seconds of this process and of its finished children (the side worker, once its session closed)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


@pytest.mark.slow
def test_pipeline_recipe_vs_harness(benchmark, data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2

    from harness.core.media import read_video, write_video

    monkeypatch.setenv("REALTALK_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("REALTALK_BENCH_NO_CACHE", raising=False)
    src = read_video(data_root / CLIP, fps=25.0, max_frames=FRAMES)
    gt_path = tmp_path / "gt.mp4"
    write_video(gt_path, src.frames, 25.0)
    rng = np.random.default_rng(0)
    versions = [np.stack([cv2.GaussianBlur(f, (5, 5), 0) for f in src.frames]),
                np.clip(src.frames.astype(np.int16) + 12, 0, 255).astype(np.uint8),
                np.clip(src.frames + rng.normal(0, 4, src.frames.shape), 0, 255).astype(np.uint8)]
    gen_paths = [write_video(tmp_path / f"gen{i}.mp4", v, 25.0) for i, v in enumerate(versions)]

    # wall time, and CPU time (all threads of this process and of its side worker): on a shared machine the CPU
    # seconds are the figure that does not depend on what else runs; on an idle one wall ~ CPU / cores in use
    t0, c0 = time.perf_counter(), cpu_s()
    with monkeypatch.context() as m:  # the recipe's scripts share nothing, not even our disk cache: without this
        m.setenv("REALTALK_BENCH_NO_CACHE", "1")  # its ground-truth features (same pixels) made "cold" warm
        ref = recipe(gt_path, gen_paths, tmp_path / "recipe")
    t_recipe, c_recipe = time.perf_counter() - t0, cpu_s() - c0
    cache_dir = tmp_path / "cache"
    assert not cache_dir.exists() or not any(cache_dir.rglob("*.*")), "the harness's cold run must start cold"
    print(f"\nrecipe {t_recipe:.1f} s (cpu {c_recipe:.1f} s)", flush=True)  # each phase as it ends: progress
    fresh_process()
    t0, c0 = time.perf_counter(), cpu_s()
    cold = harness_run(gt_path, gen_paths)
    t_cold, c_cold = time.perf_counter() - t0, cpu_s() - c0
    print(f"harness cold {t_cold:.1f} s (cpu {c_cold:.1f} s)", flush=True)
    fresh_process()  # a new process with the ground truth's features on disk
    t0, c0 = time.perf_counter(), cpu_s()
    warm = benchmark.pedantic(harness_run, args=(gt_path, gen_paths), rounds=1, iterations=1)
    t_warm, c_warm = time.perf_counter() - t0, cpu_s() - c0

    print(f"\n{len(gen_paths)} versions x {FRAMES} frames ({CLIP}), metrics {','.join(NAMES)}")
    print(f"{'recipe s':>10} {'harness cold s':>15} {'harness warm s':>15} {'cold x':>7} {'warm x':>7}")
    print(f"{t_recipe:10.1f} {t_cold:15.1f} {t_warm:15.1f} {t_recipe / t_cold:7.2f} {t_recipe / t_warm:7.2f}  wall")
    print(f"{c_recipe:10.1f} {c_cold:15.1f} {c_warm:15.1f} {c_recipe / c_cold:7.2f} {c_recipe / c_warm:7.2f}  cpu")
    print(f"cpu/wall (cores busy): {c_recipe / t_recipe:.2f} {c_cold / t_cold:.2f} {c_warm / t_warm:.2f}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (wall figures need an idle machine)")
    assert cold == ref and warm == ref  # same frames, same protocols, same batches: identical values
