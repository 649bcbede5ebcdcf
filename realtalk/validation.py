"""Held-out validation of each stage under INFERENCE conditions, not the training ones.

A2E: every held-out clip (its first max_frames frames) is predicted the way realtalk.inference predicts it:
overlapping windows crossfaded (realtalk.fast.FastRealTalk.predict_clip, what the pipeline calls), each
window's history from inference.window_histories (inference's per-window seed) -- not random training windows.
Renderer: the reference is the clip's FIRST crop (inference's choice), not a random frame; frames are
evenly spaced over the clip (frame 0 excluded: it is the reference); the mask is the lower-face mask of the
frame's fitted expression through inference.frame_masks (min(mask(source), mask(predicted)) is that mask
when the predicted expression is the fitted one), the warp prior through inference.warped_references,
and the frames are rendered by realtalk.fast.FastRealTalk.render, the pipeline's renderer call. "ref_l1_masked_region" is the same error of copying the reference's
masked region (the copy_reference floor the renderer has to beat).
Values are means over frames of all held-out clips.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from realtalk.config import RealTalkConfig
from realtalk.data import fit_tokens
from realtalk.losses import a2e_loss, masked_l1


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def validate_a2e(model: torch.nn.Module, clips: Any, face_model: Any, cfg: RealTalkConfig, max_frames: int = 100
                 ) -> dict[str, float]:
    from realtalk.fast import FastRealTalk
    from realtalk.inference import window_histories, window_starts

    model.eval()
    dev, c = _device(model), cfg.a2e
    fast = FastRealTalk(model, None, dtype="fp32", channels_last=False, device=dev)
    sums: dict[str, float] = {}
    total = 0
    for i in range(len(clips)):
        clip = clips[i]
        n = min(len(clip), int(max_frames))
        if n < 1:
            continue
        alpha = torch.from_numpy(np.array(clip.alpha, np.float32))[None].to(dev)
        beta = torch.from_numpy(np.array(clip.beta[:n], np.float32)).to(dev)
        n_pad = window_starts(n, c.T, c.overlap)[-1] + c.T
        tok = fit_tokens(np.array(clip.audio[:c.tokens_per_frame * n], np.float32), n_pad, c.tokens_per_frame)
        tokens = torch.from_numpy(tok).to(dev)
        hist = window_histories(beta, n, c.T, c.overlap, c.n_history)
        pred = fast.predict_clip(tokens[None], alpha, hist[None], n)[0]
        _, parts = a2e_loss(face_model, alpha, pred[None].float(), beta[None], c.mouth_weight)
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v * n
        total += n
    return {f"val_{k}": v / total for k, v in sums.items()} if total else {}


@torch.no_grad()
def validate_renderer(model: torch.nn.Module, clips: Any, face_model: Any, cfg: RealTalkConfig, n_frames: int = 8
                      ) -> dict[str, float]:
    from realtalk.fast import FastRealTalk
    from realtalk.inference import frame_masks, warped_references
    from realtalk.losses import teeth_mask

    model.eval()
    dev, size = _device(model), cfg.renderer.size
    fast = FastRealTalk(None, model, dtype="fp32", channels_last=False, device=dev)
    kind = getattr(cfg.renderer, "mask", "learnable")
    rows: list[dict[str, float]] = []
    weights: list[int] = []
    for i in range(len(clips)):
        clip = clips[i]
        if len(clip) < 2:
            continue
        idx = np.unique(np.linspace(1, len(clip) - 1, int(n_frames)).round().astype(np.int64))
        img = lambda x: torch.from_numpy(np.array(x)).permute(0, 3, 1, 2).float().div(255.0).to(dev)  # noqa: E731
        f = lambda x: torch.from_numpy(np.array(x, np.float32)).to(dev)  # noqa: E731
        tgt, ref = img(clip.crops[idx]), img(clip.crops[:1])
        alpha, beta, rho = f(clip.alpha)[None], f(clip.beta[idx]), f(clip.rho[idx])
        mask = frame_masks(face_model, alpha, beta, beta, rho, size, kind).to(dev)
        teeth = (f(clip.teeth[idx])[:, None] if clip.teeth is not None
                 else teeth_mask(face_model, alpha.expand(len(idx), -1), beta, rho, size=size).to(dev))
        warped = None
        if cfg.renderer.output == "warp_residual":
            warped = warped_references(face_model, ref, alpha, f(clip.beta[:1]), f(clip.rho[:1]), beta, rho)
        i_hat = fast.render(tgt, mask, alpha, beta, rho, reference=ref, warped=warped).float()
        copy_ref = mask * tgt + (1 - mask) * ref
        rows.append({"val_l1": float((i_hat - tgt).abs().mean()),
                     "val_l1_masked_region": float(masked_l1(i_hat, tgt, 1 - mask)),
                     "val_teeth": float(masked_l1(i_hat, tgt, teeth)),
                     "ref_l1_masked_region": float(masked_l1(copy_ref, tgt, 1 - mask))})
        weights.append(len(idx))
    if not rows:
        return {}
    w = np.asarray(weights, np.float64) / sum(weights)
    return {k: float(sum(wi * r[k] for wi, r in zip(w, rows))) for k in rows[0]}
