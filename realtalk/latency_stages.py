"""RealTalk's timed regions for `realtalk-bench latency` (harness.core.latency.LatencyStage).

Every stage calls the code that writes the evaluated frames: a realtalk.inference.RealTalkPipeline built on
the networks with the requested dtype / compile / CUDA graphs (channels_last as the method runs it), so the
latency reported is the latency of the frames that were scored. Stages (frames_per_call in brackets), each
on fixed random inputs of the real shapes:
- a2e       [frames*B]: a `frames`-frame output per item = its overlapping 16-frame windows (stride T - overlap,
            random history per window, no feedback: all windows in one batched call) + the crossfade
            (realtalk.fast.FastRealTalk.predict_clip -> ClipExpressions);
- mask      [B]: project the face model's vertices and fill the lower-face polygons for B frames
            (realtalk.inference.frame_masks: min of the source-expression and predicted-expression masks;
            the inputs live on the device, as in the pipeline);
- renderer  [B]: RealTalkPipeline.render_masked: the warp prior when the config's renderer edits the warped
            reference (output="warp_residual"), then masked source + cached reference features +
            [alpha,beta,rho] -> blended 256x256 frames;
- paste     [B]: B 256x256 crops (device -> host uint8) pasted into 720p frames with the feathered mask
            (RealTalkPipeline.paste -> harness.core.faces.crop.paste_frames_alpha).
FLOPs are counted on the eager networks (the compiled ones are the same maths).
"""
from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import torch

from harness.core.errors import BenchError
from harness.core.latency import LatencyStage, count_flops
from realtalk.config import RealTalkConfig, get_config
from realtalk.fast import window_starts

FRAME_HW = (720, 1280)  # the paste stage's full frame (720p)
CROP_BOX = (410, 130, 870, 590)  # a 460 px square crop (1.85 x a ~250 px face) in the 720p frame


def default_pose(face_model: Any, size: int = 256) -> torch.Tensor:
    """rho [1,n_pose] that puts the face model's mean face in the middle of the crop (for the mask stage)."""
    rho = torch.zeros(1, face_model.n_pose)
    if getattr(face_model, "name", "") == "landmark68":  # pitch, yaw, roll, tx, ty (px at 256), log scale
        rho[0, 3:5] = size / 2
        rho[0, 5] = math.log(60.0 * size / 256)
    return rho


def _guard(run: Callable[[Any], Any], name: str, device: str) -> Callable[[Any], Any]:
    """A failure while compiling/capturing on the first call becomes a clear BenchError naming the stage."""
    state = {"ok": False}

    def wrapped(x: Any) -> Any:
        if state["ok"]:
            return run(x)
        try:
            out = run(x)
        except BenchError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise BenchError(f"stage {name!r} failed on {device}: {type(exc).__name__}: {exc}") from exc
        state["ok"] = True
        return out

    return wrapped


def realtalk_stages(a2e: torch.nn.Module, renderer: torch.nn.Module, face_model: Any, config: RealTalkConfig, *,
                    device: str = "cpu", batch: int = 1, dtype: str = "fp32", compile: bool = False,
                    cuda_graphs: bool = False, frames: int = 16, compile_mode: str | None = None,
                    weights_note: str = "", channels_last: bool = True) -> list[LatencyStage]:
    """The four stages on `device`. cuda_graphs: compile mode 'reduce-overhead' with --compile, else the
    pipeline's own CUDA-graph replay of the network calls (cuda only)."""
    from realtalk.inference import RealTalkPipeline, frame_masks

    dev = torch.device(device)
    if cuda_graphs and dev.type != "cuda":
        raise BenchError("CUDA graphs need a cuda device")
    if batch < 1 or frames < 1:
        raise BenchError(f"batch ({batch}) and frames ({frames}) must be >= 1")
    if compile and cuda_graphs:
        compile_mode = "reduce-overhead"
    pipe = RealTalkPipeline(a2e, renderer, config, face_model, None, device=str(dev), dtype=dtype,
                            channels_last=channels_last, compile=compile, compile_mode=compile_mode,
                            cuda_graphs=cuda_graphs and not compile, max_batch=max(batch, 1))
    fast = pipe.fast
    ca, cr = config.a2e, config.renderer
    how = f"{dtype}" + (", channels_last" if channels_last else "") + (
        f", torch.compile ({compile_mode or 'max-autotune-no-cudagraphs'})" if compile else "") + (
        ", CUDA graphs" if cuda_graphs else "")
    common = f"config {config.name}; {how}; realtalk.inference.RealTalkPipeline" + (
        f"; {weights_note}" if weights_note else "")
    gen = torch.Generator().manual_seed(0)
    s = cr.size

    # ------------------------------------------------------------------ a2e
    n_windows = len(window_starts(frames, ca.T, ca.overlap))
    n_pad = window_starts(frames, ca.T, ca.overlap)[-1] + ca.T

    def a2e_inputs() -> tuple[torch.Tensor, ...]:
        return (torch.randn(batch, ca.tokens_per_frame * n_pad, ca.audio_dim, generator=gen).to(dev),
                torch.randn(batch, ca.n_id, generator=gen).to(dev),
                torch.randn(batch, n_windows, ca.n_history, ca.n_exp, generator=gen).to(dev))

    def a2e_flops(x: tuple[torch.Tensor, ...]) -> int:
        """One window per item counted, times the windows; the same in grad, no_grad and inference mode
        (harness.core.flops counts the fused inference attention kernels and CPU SDPA)."""
        tok = x[0][:, :ca.n_audio_tokens]
        return (count_flops(lambda: a2e(tok, x[1], x[2][:, 0])) or 0) * n_windows

    # ------------------------------------------------------------------ mask
    mask_kind = getattr(cr, "mask", "learnable")

    def mask_inputs() -> tuple[torch.Tensor, ...]:
        alpha = torch.zeros(1, face_model.n_id)
        beta_src = 0.5 * torch.randn(batch, face_model.n_exp, generator=gen)
        beta_pred = 0.5 * torch.randn(batch, face_model.n_exp, generator=gen)
        rho = default_pose(face_model, s).expand(batch, -1).clone()
        return alpha.to(dev), beta_src.to(dev), beta_pred.to(dev), rho.to(dev)  # as the pipeline holds them

    def run_mask(x: tuple[torch.Tensor, ...]) -> torch.Tensor:
        alpha, beta_src, beta_pred, rho = x
        return frame_masks(pipe.fm, alpha, beta_src, beta_pred, rho, s, mask_kind).to(dev)

    # ------------------------------------------------------------------ renderer
    def ren_inputs() -> tuple[Any, ...]:
        crops = torch.rand(batch, 3, s, s, generator=gen).to(dev)
        rho = default_pose(face_model, s).expand(batch, -1).clone()
        src = SimpleNamespace(crops=crops, alpha=torch.zeros(1, cr.n_id).to(dev),
                              beta=(0.5 * torch.randn(batch, cr.n_exp, generator=gen)).to(dev), rho=rho.to(dev))
        src.ref_feats = fast.encode_reference(crops[:1])  # once per clip, outside the timed region
        mask = torch.ones(batch, 1, s, s)
        mask[:, :, s // 2:] = 0
        beta_pred = (0.5 * torch.randn(batch, cr.n_exp, generator=gen)).to(dev)
        return src, list(range(batch)), beta_pred, mask.to(dev)

    def run_renderer(x: tuple[Any, ...]) -> torch.Tensor:
        return pipe.render_masked(*x)

    def ren_flops(x: tuple[Any, ...]) -> int:
        src, idx, beta_pred, mask = x
        return count_flops(lambda: renderer(src.crops, None, mask, src.alpha.expand(batch, -1), beta_pred, src.rho,
                                            ref_feats=src.ref_feats)) or 0

    warp_note = "; warp prior (realtalk.warp) timed with it" if cr.output == "warp_residual" else ""

    # ------------------------------------------------------------------ paste
    def paste_inputs() -> tuple[Any, ...]:
        from harness.core.faces.crop import CropTrack

        h, w = FRAME_HW
        frames_np = np.random.default_rng(0).integers(0, 256, (batch, h, w, 3), dtype=np.uint8)
        track = CropTrack(boxes=np.tile(np.asarray(CROP_BOX, np.float64), (batch, 1)), size=s, frame_shape=(h, w))
        i_hat = torch.rand(batch, 3, s, s, generator=gen).to(dev)
        mask = torch.ones(batch, 1, s, s)
        mask[:, :, s // 2:] = 0
        src = SimpleNamespace(frames=frames_np, faces=SimpleNamespace(crop_track=track))
        return src, i_hat, mask.to(dev)

    def run_paste(x: tuple[Any, ...]) -> np.ndarray:
        src, i_hat, mask = x
        return pipe.paste(src, list(range(batch)), i_hat, mask)

    return [
        LatencyStage("a2e", a2e_inputs, _guard(lambda x: fast.predict_clip(*x, frames), "a2e", device),
                     frames_per_call=batch * frames, module=a2e, flops_per_call=a2e_flops,
                     notes=f"{frames} frames = {n_windows} overlapping {ca.T}-frame window(s) per item in one batched "
                           f"call (random history, crossfade); {common}"),
        LatencyStage("mask", mask_inputs, run_mask, frames_per_call=batch,
                     notes=f"{mask_kind} mask: project {face_model.name} vertices + cv2.fillPoly, 2 masks/frame "
                           f"(source and predicted expression), CPU then to {device}", flops_per_call=lambda x: 0),
        LatencyStage("renderer", ren_inputs, _guard(run_renderer, "renderer", device),
                     frames_per_call=batch, module=renderer, flops_per_call=ren_flops,
                     notes=f"reference encoded once per clip (not timed){warp_note}; {common}"),
        LatencyStage("paste", paste_inputs, run_paste, frames_per_call=batch, flops_per_call=lambda x: 0,
                     notes=f"{s}px crops -> {FRAME_HW[0]}p frames, feathered mask (RealTalkPipeline.paste)"),
    ]


def build_networks(config: str | RealTalkConfig = "small", face_model: Any = None, audio_dim: int | None = None,
                   seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module, Any, RealTalkConfig]:
    """Randomly initialised A2E + renderer of a config, sized for the face model (latency does not depend
    on the weights' values)."""
    from realtalk.a2e import AudioToExpression
    from realtalk.face_models import load_default_face_model
    from realtalk.renderer import Renderer

    fm = face_model if face_model is not None else load_default_face_model()
    cfg = get_config(config) if isinstance(config, str) else config
    cfg = cfg.with_face_model(fm.n_id, fm.n_exp, fm.n_pose)
    if audio_dim is not None:
        cfg = cfg.with_audio_dim(audio_dim)
    torch.manual_seed(seed)
    return AudioToExpression(cfg.a2e).eval(), Renderer(cfg.renderer).eval(), fm, cfg


def latency_stages_for_method(method: Any, *, device: str = "cpu", batch: int = 1, dtype: str = "fp32",
                              compile: bool = False, cuda_graphs: bool = False, frames: int = 16,
                              **kw: Any) -> list[LatencyStage]:
    """Stages for a RealTalkMethod. `method.config` set (e.g. --method-arg config=paper): random-init networks
    of that config. Else the method's checkpoint (or the demo checkpoint, only if it already exists: it is
    never trained here). Else random-init 'small'."""
    config = getattr(method, "config", None)
    ckpt = getattr(method, "checkpoint", None)
    use_ckpt = False
    if config is None:
        if ckpt is not None:
            if not __import__("pathlib").Path(ckpt).exists():
                raise BenchError(f"checkpoint {ckpt} not found")
            use_ckpt = True
        else:
            from realtalk.demo_checkpoint import demo_checkpoint_path

            use_ckpt = demo_checkpoint_path().exists()
    if use_ckpt:
        pipe = method.pipeline()
        a2e, ren, fm, cfg = pipe.a2e, pipe.renderer, pipe.fm, pipe.cfg
        note = f"weights: {method.checkpoint_path()}"
    else:
        a2e, ren, fm, cfg = build_networks(config or "small")
        note = "weights: random init (latency does not depend on weight values)"
    kw.setdefault("channels_last", bool(getattr(method, "channels_last", True)))
    return realtalk_stages(a2e.to(device), ren.to(device), fm, cfg, device=device, batch=batch, dtype=dtype,
                           compile=compile, cuda_graphs=cuda_graphs, frames=frames, weights_note=note, **kw)
