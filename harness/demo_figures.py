"""The demo model's two lip-motion figures on held-out clips (reconstruction), next to the reference methods.

- M-LMD: metrics.lmd (ATVGnet-style mouth landmark distance, points 48-67, each side centred on its own
  mean, px at 256x256), computed here with the same LMD metric object and the same GT crop track as a run.
- Mouth-opening correlation (ours, the figure issue 14 asks for): the registered metric metrics.mouth_corr
  (`run --metrics mouth_r`): per clip, Pearson r of the generated vs the ground-truth per-frame inner-lip gap
  on the LMD metric's landmarks, then the mean over clips. A series with no variation (a frozen mouth) has no
  correlation: r is NaN and counted. One definition: the figures here go through that metric's code.

Two entry points: `evaluate_methods` generates in-process (slow test, experiments; summarize/format_summary);
`run_figures` reads a finished run's own values from its summary.json (what `realtalk-bench demo` prints: the
same numbers as the run's table and report, never recomputed from the stored lossy videos).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np

from metrics.mouth_corr import INNER_PAIRS, MIN_FRAMES, mouth_opening, mouth_r_result, pearson

__all__ = ["INNER_PAIRS", "MIN_FRAMES", "mouth_opening", "pearson", "clip_figures", "evaluate_methods",
           "run_figures", "format_run_figures", "targets_line", "summarize", "format_summary"]  # the first four: metrics.mouth_corr's, re-exported


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


FIGURE_VALUES = ("M-LMD", "mouth_r")  # the two lip-motion figures, as the run's results name them


def run_figures(summary: dict[str, Any], methods: Iterable[str], setting: str = "reconstruction"
                ) -> dict[str, dict[str, dict[str, Any] | None]]:
    """{method: {value: the run's results cell (mean, ci_low, ci_high, n_clips, n_common...) or None}}.

    The figures the demo prints are the run's own values (metrics.lmd, metrics.mouth_corr on the crops in memory
    during the run), the numbers the table and the report show. Nothing is recomputed from the stored videos:
    their H.264 re-encoding moves the landmarks (mouth r 0.235 re-read vs 0.216 in the run), and two numbers for
    one definition is one too many. A method or value the run lacks is None (shown as missing, never dropped)."""
    res = (summary.get("results") or {}).get(setting) or {}
    return {m: {v: (res.get(m) or {}).get(v) for v in FIGURE_VALUES} for m in methods}


def _cell_text(cell: dict[str, Any] | None, value: str) -> str:
    """'mean [ci_low, ci_high] (n_clips/n_common clips)' with the report's digits (reports.tables.Cell)."""
    from reports.tables import DIGITS, Cell

    if cell is None or cell.get("mean") is None:
        return "— (not in the run)"
    c = Cell(cell["mean"], cell.get("ci_low"), cell.get("ci_high"), digits=DIGITS.get(value, 3))
    ci = c.ci_text()
    return f"{c.text()}{' ' + ci if ci else ''} ({cell.get('n_clips', '?')}/{cell.get('n_common', '?')} clips)"


def format_run_figures(figs: dict[str, dict[str, dict[str, Any] | None]],
                       unavailable: dict[str, str] | None = None, setting: str = "reconstruction") -> list[str]:
    """The demo's lines: per method M-LMD and mouth r, mean [95% CI] and clips, from the run's results."""
    lines = [f"lip-motion figures ({setting}, the run's values, as in the table and the report): M-LMD (lower is "
             "better) / mouth-opening Pearson r with the ground truth (higher is better), mean [95% CI]"]
    for name, vals in figs.items():
        lines.append(f"  {name:15s} M-LMD {_cell_text(vals['M-LMD'], 'M-LMD')}   "
                     f"mouth r {_cell_text(vals['mouth_r'], 'mouth_r')}")
    for metric, reason in (unavailable or {}).items():
        if metric in ("lmd", "mouth_r"):
            lines.append(f"  metric {metric} unavailable in this run: {reason}")
    return lines


def targets_line(figs: dict[str, dict[str, dict[str, Any] | None]], candidate: str = "realtalk",
                 references: Iterable[str] = ("static_frame", "copy_reference"), min_r: float = 0.5) -> str | None:
    """Issue 14's targets on the run's means: the candidate's M-LMD below every reference's, mouth r >= min_r.
    None when the candidate has no value to judge (it is then shown as missing above)."""
    mine = figs.get(candidate) or {}
    ml, mr = (mine.get("M-LMD") or {}).get("mean"), (mine.get("mouth_r") or {}).get("mean")
    if ml is None or mr is None:
        return None
    refs = [(figs.get(m) or {}).get("M-LMD") or {} for m in references if m in figs]
    beats = all(r.get("mean") is not None and ml < r["mean"] for r in refs)
    return (f"  {candidate} beats the references on M-LMD: {'yes' if beats else 'NO'}; mouth-opening r "
            f"{mr:.3f} {'>=' if mr >= min_r else '<'} {min_r} (issue 14 targets)")


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
    lines = ["held-out reconstruction (demo test clips), generated in-process: M-LMD (lower is better) / "
             "mouth-opening Pearson r with the ground truth"]
    for name, s in summ.items():
        lines.append(f"  {name:15s} M-LMD {s['M-LMD']:.3f} ({s['M-LMD_clips']}/{s['clips']} clips)   "
                     f"mouth r {s['mouth_r']:.3f} ({s['mouth_r_clips']}/{s['clips']} clips)")
    return lines
