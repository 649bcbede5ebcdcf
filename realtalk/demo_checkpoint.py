"""The demo checkpoint: the small config trained briefly on the demo split's train clips, cached.

ensure_demo_checkpoint() returns <home>/checkpoints/realtalk-demo-small.pt, training it first when absent
(bounded wall time: $REALTALK_DEMO_TRAIN_S seconds for both stages, default 120 = 2 min; 15% A2E, 85%
renderer; frames per train clip $REALTALK_DEMO_MAX_FRAMES, default 150 = 6 s; clips loaded in a process
pool). Held-out losses on the split's test clips (before and after training) are logged and stored in
the checkpoint ("held_out"). A file lock keeps two processes from training it at once. This is a
smoke-scale model: it shows the pipeline end to end, not the paper's quality. (Measured on the 2-core CPU: the held-out renderer losses
barely move in these minutes (0.1022 -> 0.1025 masked-region L1 after 180 s) -- the reference-residual
head's starting point is most of its quality -- so 120 s rather than more keeps a cold `make demo` well
under 15 minutes.)
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Callable

from harness.paths import home

DEMO_FILE = "realtalk-demo-small.pt"


def demo_checkpoint_path() -> Path:
    return home() / "checkpoints" / DEMO_FILE


def ensure_demo_checkpoint(root: str | Path | None = None, budget_s: float | None = None,
                           log: Callable[[str], None] = print) -> Path:
    dst = demo_checkpoint_path()
    if dst.exists():
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(dst.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if dst.exists():  # another process finished it while we waited
            return dst
        return _train_demo(dst, root, budget_s, log)


def _train_demo(dst: Path, root, budget_s: float | None, log) -> Path:
    import torch

    from harness.executors import process_pool
    from realtalk.a2e import AudioToExpression
    from realtalk.audio_features import get_featurizer
    from realtalk.config import small
    from realtalk.data import load_split_data
    from realtalk.face_model import load_default_face_model
    from realtalk.renderer import Renderer
    from realtalk.train import evaluate_a2e, evaluate_renderer, export_combined, train_a2e, train_renderer

    budget = float(budget_s if budget_s is not None else os.environ.get("REALTALK_DEMO_TRAIN_S", 120))
    max_frames = int(os.environ.get("REALTALK_DEMO_MAX_FRAMES", 150))
    torch.set_num_threads(max(1, torch.get_num_threads()))
    fm = load_default_face_model()
    feat = get_featurizer("logmel")
    cfg = small().with_face_model(fm.n_id, fm.n_exp, fm.n_pose).with_audio_dim(feat.dim)
    t0 = time.monotonic()
    with process_pool(min(4, os.cpu_count() or 1)) as pool:  # one pool for both roles
        train = load_split_data("demo", root, fm, feat, role="train", max_frames=max_frames, log=log, pool=pool)
        test = load_split_data("demo", root, fm, feat, role="test", max_frames=100, log=log, pool=pool)
    log(f"demo data ready in {time.monotonic() - t0:.0f}s: {len(train)} train, {len(test)} test clips")
    work = dst.parent / "realtalk-demo-small.work"
    a2e, ren = AudioToExpression(cfg.a2e), Renderer(cfg.renderer)
    held = {"a2e_before": evaluate_a2e(a2e, test, fm, cfg), "renderer_before": evaluate_renderer(ren, test, fm, cfg)}
    sa = train_a2e(cfg, train, fm, work, steps=10**9, time_budget=0.15 * budget, model=a2e, progress=False, log=log)
    sr = train_renderer(cfg, train, fm, work, steps=10**9, time_budget=0.85 * budget, model=ren, progress=False,
                        log=log)
    held["a2e_after"] = evaluate_a2e(a2e, test, fm, cfg)
    held["renderer_after"] = evaluate_renderer(ren, test, fm, cfg)
    summary = {"a2e": {k: sa[k] for k in ("steps", "initial_loss", "final_loss", "wall_s")},
               "renderer": {k: sr[k] for k in ("steps", "initial_loss", "final_loss", "wall_s")}, "held_out": held}
    log("demo training: " + json.dumps(summary, default=float))
    export_combined(work / "a2e.pt", work / "renderer.pt", dst, extra={"demo_summary": summary, "held_out": held})
    (dst.parent / "realtalk-demo-small.json").write_text(json.dumps(summary, indent=2, default=float))
    return dst
