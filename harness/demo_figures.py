"""The demo model's two lip-motion figures on held-out clips (reconstruction), next to the reference methods.

- M-LMD: metrics.lmd (ATVGnet-style mouth landmark distance, points 48-67, each side centred on its own
  mean, px at 256x256), computed here with the same LMD metric object and the same GT crop track as a run.
- Mouth-opening correlation (ours, the figure issue 14 asks for): the registered metric metrics.mouth_corr
  (`run --metrics mouth_r`): per clip, Pearson r of the generated vs the ground-truth per-frame inner-lip gap
  on the LMD metric's landmarks, then the mean over clips. A series with no variation (a frozen mouth) has no
  correlation: r is NaN and counted. One definition: the figures here go through that metric's code.

Two entry points: `evaluate_methods` generates in-process (slow test, experiments), `figures_from_run`
reads the videos a finished run wrote (what `realtalk-bench demo` prints, no second generation).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np

from metrics.mouth_corr import INNER_PAIRS, MIN_FRAMES, mouth_opening, mouth_r_result, pearson

__all__ = ["INNER_PAIRS", "MIN_FRAMES", "mouth_opening", "pearson", "clip_figures", "evaluate_methods",
           "figures_from_run", "summarize", "format_summary"]  # the first four: metrics.mouth_corr's, re-exported


def clip_figures(gen_crops: np.ndarray, gt_crops: np.ndarray, lmd: Any) -> dict[str, float]:
    """{"M-LMD", "mouth_r", "frames_used", "frames_total"} of one clip (256x256 crops, same crop track): M-LMD as
    metrics.lmd computes it, mouth_r as metrics.mouth_corr does, both on lmd.landmark_pair's landmarks."""
    from metrics.lmd import lmd_frames

    g, r = lmd.landmark_pair(gen_crops, gt_crops)
    per, ok = lmd_frames(g, r, lmd.lmd_protocol)
    return {"M-LMD": float(np.mean(per["M-LMD"][ok])) if ok.any() else float("nan"),
            "mouth_r": mouth_r_result(g, r).values["mouth_r"],
            "frames_used": int(ok.sum()), "frames_total": int(len(ok))}


def _test_entries(split: str) -> list[Any]:
    from harness.core.splits import load_split

    return [e for e in load_split(split).clips if e.role == "test"]


def _gt(entry: Any, root: str | Path | None) -> tuple[Any, Any, np.ndarray]:
    from harness.core.faces.clip import clip_faces
    from harness.core.splits import load_clip_media

    video, audio = load_clip_media(entry, root)
    return video, clip_faces(video), audio


def evaluate_methods(methods: dict[str, Any], root: str | Path | None = None, split: str = "demo",
                     log=print) -> dict[str, dict[str, dict[str, float]]]:
    """{method: {clip_id: clip_figures}} over the split's test clips, reconstruction, generated here."""
    from harness.core.faces.crop import crop_frames
    from harness.core.methods import MethodInput
    from metrics.lmd import LMD

    lmd = LMD()
    out: dict[str, dict[str, dict[str, float]]] = {m: {} for m in methods}
    for e in _test_entries(split):
        video, faces, audio = _gt(e, root)
        n = min(len(video.frames), len(audio) // 640)
        inp = MethodInput(clip_id=e.clip_id, setting="reconstruction", source_video=Path(video.path),
                          source_frames=video.frames, audio=audio[: n * 640].astype(np.float32), n_frames=n,
                          source_timestamps=getattr(video, "source_timestamps", None))
        gt = np.asarray(faces.crops)[:n]
        for name, m in methods.items():
            gen = crop_frames(np.asarray(m.generate(inp)), _track(faces.crop_track, n))
            out[name][e.clip_id] = clip_figures(gen, gt, lmd)
            log(f"{name} {e.clip_id}: {out[name][e.clip_id]}")
    return out


def _track(ct: Any, n: int) -> Any:
    import dataclasses

    return ct if len(ct) == n else dataclasses.replace(ct, boxes=np.asarray(ct.boxes)[:n])


def figures_from_run(run_dir: str | Path, methods: Iterable[str], root: str | Path | None = None,
                     split: str = "demo") -> dict[str, dict[str, dict[str, float]]]:
    """The same figures from the reconstruction videos a run wrote (frames[:, :H]: below is the label band).
    A clip whose video is missing is reported with an "error" entry, never dropped."""
    from harness.core.faces.crop import crop_frames
    from harness.core.media import read_video
    from metrics.lmd import LMD

    lmd = LMD()
    out: dict[str, dict[str, dict[str, Any]]] = {m: {} for m in methods}
    for e in _test_entries(split):
        video, faces, _ = _gt(e, root)
        h = video.frames.shape[1]
        for name in out:
            p = Path(run_dir) / "videos" / name / "reconstruction" / f"{e.clip_id}.mp4"
            if not p.exists():
                out[name][e.clip_id] = {"error": f"{p}: no video"}
                continue
            frames = read_video(p, fps=25.0).frames[:, :h]
            n = min(len(frames), len(faces.crops))
            gen = crop_frames(frames[:n], _track(faces.crop_track, n))
            out[name][e.clip_id] = clip_figures(gen, np.asarray(faces.crops)[:n], lmd)
    return out


def summarize(figs: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per method: mean M-LMD and mean mouth r over clips, and how many clips each mean uses."""
    res = {}
    for name, clips in figs.items():
        ml = [c["M-LMD"] for c in clips.values() if np.isfinite(c.get("M-LMD", np.nan))]
        rr = [c["mouth_r"] for c in clips.values() if np.isfinite(c.get("mouth_r", np.nan))]
        res[name] = {"M-LMD": float(np.mean(ml)) if ml else float("nan"), "M-LMD_clips": len(ml),
                     "mouth_r": float(np.mean(rr)) if rr else float("nan"), "mouth_r_clips": len(rr),
                     "clips": len(clips)}
    return res


def format_summary(summ: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["held-out reconstruction (demo test clips): M-LMD (lower is better; the table's value) / mouth-opening "
             "Pearson r with the ground truth (from the stored videos)"]
    for name, s in summ.items():
        lines.append(f"  {name:15s} M-LMD {s['M-LMD']:.3f} ({s['M-LMD_clips']}/{s['clips']} clips)   "
                     f"mouth r {s['mouth_r']:.3f} ({s['mouth_r_clips']}/{s['clips']} clips)")
    return lines
