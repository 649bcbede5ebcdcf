"""Training loops of the two stages: seeded, resumable, logged, bounded by steps and wall time.

Checkpoints (`<out>/a2e.pt`, `<out>/renderer.pt`): {"stage", "model", "optimizer", ["disc", "disc_optimizer"],
"step", "config" (RealTalkConfig dict), "git_hash", "face_model", "featurizer", "losses", "command" (the
`realtalk-bench train` command line that made it, None from the API)}. Each batch is
drawn from numpy Generator([seed, step]), so a resumed run sees the batches an uninterrupted one would.
Losses go to `<out>/<stage>_log.jsonl` and `<out>/<stage>_log.csv` every log_every steps.
`export_combined` merges both stages into the single file realtalk.method loads.
"""
from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from realtalk.a2e import AudioToExpression
from realtalk.config import RealTalkConfig
from realtalk.data import A2EWindows, ClipData, RendererFrames
from realtalk.losses import RendererLoss, a2e_loss, teeth_mask
from realtalk.renderer import Renderer

CKPT_FORMAT = 1


def git_hash() -> str | None:
    from harness.core.environment import git_state

    return git_state()[0]


def atomic_torch_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    return torch.load(Path(path), map_location="cpu", weights_only=False)


class LossLog:
    """Appends {"step", "time_s", **losses} to <stem>.jsonl and <stem>.csv."""

    def __init__(self, out_dir: Path, stage: str, fresh: bool):
        self.jsonl = out_dir / f"{stage}_log.jsonl"
        self.csv = out_dir / f"{stage}_log.csv"
        if fresh:
            for p in (self.jsonl, self.csv):
                p.unlink(missing_ok=True)
        self.fields: list[str] | None = None

    def write(self, row: dict[str, Any]) -> None:
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(row) + "\n")
        new = not self.csv.exists()
        if self.fields is None:
            self.fields = list(row)
        with open(self.csv, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)


def _face_model_id(fm: Any) -> str:
    return f"{fm.name}:{fm.fingerprint()}" if fm is not None else "none"


def _run(stage: str, cfg: RealTalkConfig, model: torch.nn.Module, opt: torch.optim.Optimizer, step_fn: Callable,
         steps: int, time_budget: float | None, out_dir: Path, resume: bool, extra_state: Callable[[], dict],
         load_extra: Callable[[dict], None], meta: dict, progress: bool, log: Callable) -> dict[str, Any]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / f"{stage}.pt"
    step = 0
    history: list[float] = []
    if resume and ckpt_path.exists():
        ck = load_checkpoint(ckpt_path)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        load_extra(ck)
        step = int(ck["step"])
        history = list(ck.get("losses", []))
        log(f"{stage}: resumed from {ckpt_path} at step {step}")
    logger = LossLog(out_dir, stage, fresh=not (resume and step > 0))

    def save() -> None:
        atomic_torch_save({"format": CKPT_FORMAT, "stage": stage, "model": model.state_dict(),
                           "optimizer": opt.state_dict(), **extra_state(), "step": step, "config": cfg.to_dict(),
                           "git_hash": git_hash(), "losses": history, **meta}, ckpt_path)

    t_start = time.monotonic()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, initial=step, desc=f"train {stage}", dynamic_ncols=True)
    first = None
    last: dict[str, float] = {}
    model.train()
    while step < steps:
        if time_budget is not None and time.monotonic() - t_start >= time_budget:
            log(f"{stage}: time budget {time_budget:.0f}s reached at step {step}")
            break
        rng = np.random.default_rng([cfg.train.seed, step])
        last = step_fn(rng, step)
        step += 1
        history.append(last["loss"])
        first = first if first is not None else last["loss"]
        if step % cfg.train.log_every == 0 or step == steps:
            logger.write({"step": step, "time_s": round(time.monotonic() - t_start, 2), **last})
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{last['loss']:.4f}")
        if step % cfg.train.ckpt_every == 0:
            save()
    if bar is not None:
        bar.close()
    save()
    return {"stage": stage, "steps": step, "initial_loss": history[0] if history else None,
            "final_loss": float(np.mean(history[-10:])) if history else None, "last": last,
            "checkpoint": str(ckpt_path), "wall_s": time.monotonic() - t_start}


def _seed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def train_a2e(cfg: RealTalkConfig, clips: list[ClipData], face_model: Any, out_dir: str | Path, steps: int,
              time_budget: float | None = None, resume: bool = False, featurizer_name: str = "logmel",
              progress: bool = True, log: Callable = print, model: AudioToExpression | None = None,
              command: str | None = None) -> dict[str, Any]:
    """Adam on MSE(beta) + mouth_weight * mouth-vertex MSE; returns a summary with initial/final loss."""
    _seed(cfg.train.seed)
    model = model or AudioToExpression(cfg.a2e)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.a2e_lr)
    data = A2EWindows(clips, cfg.a2e.T, cfg.a2e.n_history, cfg.a2e.tokens_per_frame)

    def step_fn(rng: np.random.Generator, step: int) -> dict[str, float]:
        b = data.batch(cfg.train.a2e_batch, rng)
        pred = model(b["audio"], b["alpha"], b["history"])
        loss, parts = a2e_loss(face_model, b["alpha"], pred, b["beta"], cfg.a2e.mouth_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return parts

    meta = {"face_model": _face_model_id(face_model), "featurizer": featurizer_name, "command": command}
    return _run("a2e", cfg, model, opt, step_fn, steps, time_budget, Path(out_dir), resume,
                lambda: {}, lambda ck: None, meta, progress, log)


def renderer_masks(face_model: Any, alpha: torch.Tensor, beta: torch.Tensor, rho: torch.Tensor, size: int
                   ) -> torch.Tensor:
    from realtalk.mask import lower_face_mask

    with torch.no_grad():
        return lower_face_mask(face_model, alpha, beta, rho, size=size).float()


def batch_warp(cfg: RealTalkConfig, face_model: Any, b: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """The reference warped to the target's expression and pose (output="warp_residual"), else None."""
    if cfg.renderer.output != "warp_residual":
        return None
    from realtalk.warp import warp_reference

    return warp_reference(face_model, b["reference"], b["alpha"], b["ref_beta"], b["ref_rho"], b["beta"], b["rho"])


def train_renderer(cfg: RealTalkConfig, clips: list[ClipData], face_model: Any, out_dir: str | Path, steps: int,
                   time_budget: float | None = None, resume: bool = False, perceptual: bool = True,
                   progress: bool = True, log: Callable = print, model: Renderer | None = None,
                   command: str | None = None) -> dict[str, Any]:
    """Adam on 1*L1 + 1*VGG + 0.1*LSGAN + 1*teeth L1, with a PatchGAN discriminator updated every step."""
    _seed(cfg.train.seed)
    t = cfg.train
    model = model or Renderer(cfg.renderer)
    crit = RendererLoss(t.w_l1, t.w_perceptual, t.w_adv, t.w_teeth, t.disc_channels, t.disc_layers, perceptual)
    opt = torch.optim.Adam(model.parameters(), lr=t.renderer_lr, betas=t.betas)
    d_opt = torch.optim.Adam(crit.disc.parameters(), lr=t.disc_lr, betas=t.betas) if crit.disc is not None else None
    data = RendererFrames(clips)
    size = cfg.renderer.size
    if not (resume and (Path(out_dir) / "renderer.pt").exists()):
        model.set_code_stats(torch.from_numpy(np.concatenate(
            [np.concatenate([np.repeat(c.alpha[None], len(c), 0), c.beta, c.rho], 1) for c in data.clips])).float())

    def step_fn(rng: np.random.Generator, step: int) -> dict[str, float]:
        b = data.batch(t.renderer_batch, rng)
        tgt = b["target"]
        if tgt.shape[-1] != size:
            raise ValueError(f"crops are {tgt.shape[-1]} px, renderer expects {size}")
        mask = renderer_masks(face_model, b["alpha"], b["beta"], b["rho"], size)
        teeth = teeth_mask(face_model, b["alpha"], b["beta"], b["rho"], size) if t.w_teeth > 0 else None
        i_hat, _ = model(tgt, b["reference"], mask, b["alpha"], b["beta"], b["rho"],
                         warped=batch_warp(cfg, face_model, b))
        use_adv = crit.disc is not None and step >= t.adv_start
        loss, parts = crit.generator_loss(i_hat, tgt, teeth, use_adv=use_adv)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if use_adv and d_opt is not None:
            d_loss, d_parts = crit.discriminator_loss(i_hat, tgt)
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()
            parts.update(d_parts)
        return parts

    def extra() -> dict:
        if crit.disc is None:
            return {}
        return {"disc": crit.disc.state_dict(), "disc_optimizer": d_opt.state_dict()}

    def load_extra(ck: dict) -> None:
        if crit.disc is not None and "disc" in ck:
            crit.disc.load_state_dict(ck["disc"])
            d_opt.load_state_dict(ck["disc_optimizer"])

    meta = {"face_model": _face_model_id(face_model), "perceptual": bool(crit.vgg is not None and crit.vgg.enabled),
            "command": command}
    return _run("renderer", cfg, model, opt, step_fn, steps, time_budget, Path(out_dir), resume, extra, load_extra,
                meta, progress, log)


@torch.no_grad()
def evaluate_a2e(model: AudioToExpression, clips: list[ClipData], face_model: Any, cfg: RealTalkConfig,
                 n_batches: int = 4, seed: int = 1234) -> dict[str, float]:
    """Mean loss over fixed random windows of (held-out) clips."""
    model.eval()
    data = A2EWindows(clips, cfg.a2e.T, cfg.a2e.n_history, cfg.a2e.tokens_per_frame)
    rows = []
    for i in range(n_batches):
        b = data.batch(cfg.train.a2e_batch, np.random.default_rng([seed, i]))
        _, parts = a2e_loss(face_model, b["alpha"], model(b["audio"], b["alpha"], b["history"]), b["beta"],
                            cfg.a2e.mouth_weight)
        rows.append(parts)
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


@torch.no_grad()
def evaluate_renderer(model: Renderer, clips: list[ClipData], face_model: Any, cfg: RealTalkConfig,
                      n_batches: int = 2, seed: int = 1234) -> dict[str, float]:
    """L1 and teeth L1 of the blended output over fixed random frames of (held-out) clips."""
    model.eval()
    data = RendererFrames(clips)
    rows = []
    for i in range(n_batches):
        b = data.batch(cfg.train.renderer_batch, np.random.default_rng([seed, i]))
        mask = renderer_masks(face_model, b["alpha"], b["beta"], b["rho"], cfg.renderer.size)
        teeth = teeth_mask(face_model, b["alpha"], b["beta"], b["rho"], cfg.renderer.size)
        i_hat, _ = model(b["target"], b["reference"], mask, b["alpha"], b["beta"], b["rho"],
                         warped=batch_warp(cfg, face_model, b))
        from realtalk.losses import masked_l1

        rows.append({"l1": float((i_hat - b["target"]).abs().mean()),
                     "l1_masked_region": float(masked_l1(i_hat, b["target"], 1 - mask)),
                     "teeth": float(masked_l1(i_hat, b["target"], teeth))})
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def export_combined(a2e_ckpt: str | Path, renderer_ckpt: str | Path, dst: str | Path,
                    extra: dict[str, Any] | None = None) -> Path:
    """One inference file: both state dicts + the config + provenance (what realtalk.method loads)."""
    a, r = load_checkpoint(a2e_ckpt), load_checkpoint(renderer_ckpt)
    if a["face_model"] != r["face_model"]:
        raise ValueError(f"stages trained with different face models: {a['face_model']} vs {r['face_model']}")
    cfg = RealTalkConfig.from_dict(a["config"])
    cfg.renderer = RealTalkConfig.from_dict(r["config"]).renderer
    obj = {"format": CKPT_FORMAT, "kind": "realtalk", "config": cfg.to_dict(), "a2e": a["model"], "renderer": r["model"],
           "a2e_step": a["step"], "renderer_step": r["step"], "face_model": a["face_model"],
           "featurizer": a.get("featurizer", "logmel"), "git_hash": git_hash(),
           "train_commands": {"a2e": a.get("command"), "renderer": r.get("command")}, **(extra or {})}
    dst = Path(dst)
    atomic_torch_save(obj, dst)
    return dst
