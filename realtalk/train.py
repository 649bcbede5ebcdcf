"""Training loops of the two stages: one engine (`_fit`) for any world size, device and precision.

Data: a torch Dataset (realtalk.datasets) over clips -- memmapped shards (realtalk.shards.ShardStore, the
`realtalk-bench train --data DIR` path) or ClipData lists in RAM (the API path: `load_split_data`) --
read through a DataLoader with workers and a DistributedSampler (realtalk.datasets.ResumableSampler:
step k always sees the global batch perm[kB:(k+1)B], whatever the world size). Multi-process runs
(torchrun; realtalk.ddp) wrap the generator in DistributedDataParallel; rank 0 alone writes checkpoints,
logs and validation. The renderer's discriminator is not wrapped (it runs with frozen parameters inside
the generator loss): its gradients are all-reduced by hand (ddp.average_gradients).
Optimisation (realtalk.train_config.TrainSettings): linear LR warm-up, gradient clipping (generator and
discriminator), EMA of the generator weights (what `export_combined` exports and what the passed model
holds when training returns; the raw weights stay in the checkpoint for resuming), autocast bf16 / fp16
(GradScaler) / fp32, periodic validation on held-out clips under inference conditions
(realtalk.validation).

DDP vs one process: every loss term of A2E is a mean over equal-size per-rank batches, so the all-reduced
gradient is the single-process gradient up to float summation order (tested). The renderer's teeth term
is a ratio of sums over the batch (masked_l1): its denominator is all-reduced over the ranks (the global
batch's) and the local numerator scaled by W, so it too is the single-process loss up to summation order
(tested, tests/test_realtalk_train_scale.py).

Checkpoints (`<out>/a2e.pt`, `<out>/renderer.pt`), loadable with torch.load(weights_only=True): {"format",
"stage", "model", "ema", "optimizer", "scheduler", "scaler", ["disc", "disc_optimizer"], "step", "rng"
(python, numpy, torch, cuda states of every rank, as tensors/lists), "sampler" (seed, epoch, start_batch),
"config" (RealTalkConfig dict), "settings" (TrainSettings dict), "world_size", "git_hash", "face_model",
"featurizer", "losses", "validation", "command" (the `realtalk-bench train` command line, None from the API)}.
A resumed run continues the identical loss curve (tested). Losses go to `<out>/<stage>_log.jsonl` and
`<out>/<stage>_log.csv` every log_every steps, validation rows to `<out>/<stage>_val.jsonl`.
`export_combined` merges both stages' EMA weights into the single file realtalk.method loads.
"""
from __future__ import annotations

import copy
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
from realtalk.ddp import World, average_gradients, barrier, mean_scalars
from realtalk.losses import RendererLoss, a2e_loss, teeth_mask
from realtalk.renderer import Renderer
from realtalk.train_config import TrainSettings

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
    return torch.load(Path(path), map_location="cpu", weights_only=True)


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


class EMA:
    """Exponential moving average of a model's state (floating tensors averaged, others copied); effective
    decay min(decay, (1 + n) / (10 + n)) at update n, so a short run is not dominated by its initial weights."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay, self.n = float(decay), 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.n += 1
        d = min(self.decay, (1.0 + self.n) / (10.0 + self.n))
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].mul_(d).add_(v.detach(), alpha=1.0 - d)
            else:
                self.shadow[k].copy_(v)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "n": self.n, "shadow": {k: v.cpu() for k, v in self.shadow.items()}}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.decay, self.n = float(d["decay"]), int(d["n"])
        for k, v in d["shadow"].items():
            self.shadow[k].copy_(v)

    def copy_to(self, model: torch.nn.Module) -> None:
        model.load_state_dict(self.shadow)


def rng_state() -> dict[str, Any]:
    """python / numpy (legacy global) / torch / cuda RNG states as lists and tensors (weights_only-loadable)."""
    import random

    py = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    cuda = list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    return {"python": [int(py[0]), [int(x) for x in py[1]], py[2]],
            "numpy": {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached": float(cached)},
            "torch": torch.get_rng_state(), "cuda": cuda}


def set_rng_state(st: dict[str, Any]) -> None:
    import random

    v, keys, gauss = st["python"]
    random.setstate((int(v), tuple(int(x) for x in keys), gauss))
    n = st["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(st["torch"])
    if st["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def warmup_lambda(warmup_steps: int) -> Callable[[int], float]:
    """LR factor at optimiser step k (0-based): (k + 1) / warmup_steps during warm-up, then 1."""
    w = max(0, int(warmup_steps))
    return lambda k: 1.0 if w == 0 else min(1.0, (k + 1) / w)


def _autocast(device: torch.device, precision: str):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def _to(b: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in b.items()}


class _Stage:
    """What differs between the stages: model, optimiser, dataset, the loss of a batch, an optional second
    update (the discriminator), extra checkpoint state, and validation."""

    def __init__(self, name: str, model: torch.nn.Module, opt: torch.optim.Optimizer, dataset: Any, batch: int,
                 loss: Callable, after: Callable | None = None, extra: Callable[[], dict] = dict,
                 load_extra: Callable[[dict], None] = lambda ck: None, validate: Callable | None = None,
                 find_unused: bool = False):
        self.name, self.model, self.opt, self.dataset, self.batch = name, model, opt, dataset, int(batch)
        self.loss, self.after, self.extra, self.load_extra = loss, after, extra, load_extra
        self.validate, self.find_unused = validate, find_unused


def _fit(st: _Stage, cfg: RealTalkConfig, settings: TrainSettings, world: World, device: torch.device,
         steps: int, time_budget: float | None, out_dir: Path, resume: bool, meta: dict, progress: bool,
         log: Callable) -> dict[str, Any]:
    from torch.utils.data import DataLoader

    from realtalk.datasets import ResumableSampler

    out_dir = Path(out_dir)
    ckpt_path = out_dir / f"{st.name}.pt"
    model = st.model.to(device)
    ema = EMA(model, settings.ema_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(st.opt, warmup_lambda(settings.warmup_steps))
    scaler = torch.amp.GradScaler(device.type, enabled=settings.precision == "fp16")
    sampler = ResumableSampler(st.dataset, world.size, world.rank, st.batch, seed=cfg.train.seed)
    step, history, val_rows = 0, [], []
    if resume and ckpt_path.exists():
        ck = load_checkpoint(ckpt_path)
        if ck.get("kind") == ENSEMBLE_KIND:
            raise ValueError(f"{ckpt_path} is an A2E seed ensemble: resume it with the same --ensemble K "
                             "(each member resumes from its own folder)")
        model.load_state_dict(ck["model"])
        st.opt.load_state_dict(ck["optimizer"])
        if "scheduler" in ck:
            sched.load_state_dict(ck["scheduler"])
            scaler.load_state_dict(ck["scaler"])
            ema.load_state_dict(ck["ema"])
            rngs = ck["rng"]
            set_rng_state(rngs[world.rank] if len(rngs) == world.size else rngs[0])
        st.load_extra(ck)
        step = int(ck["step"])
        history = list(ck.get("losses", []))
        val_rows = list(ck.get("validation", []))
        log(f"{st.name}: resumed from {ckpt_path} at step {step}")
    net = model
    if world.distributed:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                      find_unused_parameters=st.find_unused)
    if world.main:
        out_dir.mkdir(parents=True, exist_ok=True)
    logger = LossLog(out_dir, st.name, fresh=not (resume and step > 0)) if world.main else None
    val_log = out_dir / f"{st.name}_val.jsonl"
    if world.main and not (resume and step > 0):
        val_log.unlink(missing_ok=True)

    def gathered_rng() -> list[dict[str, Any]]:
        mine = rng_state()
        if not world.distributed:
            return [mine]
        import torch.distributed as dist

        allr: list[Any] = [None] * world.size
        dist.all_gather_object(allr, mine)
        return allr

    def save() -> None:
        rngs = gathered_rng()  # every rank takes part; rank 0 writes
        if not world.main:
            return
        atomic_torch_save({"format": CKPT_FORMAT, "stage": st.name, "model": model.state_dict(),
                           "ema": ema.state_dict(), "optimizer": st.opt.state_dict(),
                           "scheduler": sched.state_dict(), "scaler": scaler.state_dict(), **st.extra(),
                           "step": step, "rng": rngs, "sampler": sampler.state(), "config": cfg.to_dict(),
                           "settings": settings.to_dict(), "world_size": world.size, "git_hash": git_hash(),
                           "losses": history, "validation": val_rows, **meta}, ckpt_path)

    def validate() -> None:
        if st.validate is None or not world.main:
            return
        shadow = copy.deepcopy(model)
        shadow.load_state_dict(ema.shadow)
        row = {"step": step, **st.validate(shadow.to(device).eval())}
        val_rows.append(row)
        with open(val_log, "a") as f:
            f.write(json.dumps(row) + "\n")
        log(f"{st.name}: validation at step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items()
                                                                  if k != "step"))

    def stop_now(t_start: float) -> bool:
        if time_budget is None:
            return False
        flag = torch.tensor([float(time.monotonic() - t_start >= time_budget)])
        if world.distributed:
            import torch.distributed as dist

            dist.all_reduce(flag, op=dist.ReduceOp.MAX)  # every rank stops at the same step
        return bool(flag.item())

    t_start = time.monotonic()
    bar = None
    if progress and world.main:
        from tqdm import tqdm

        bar = tqdm(total=steps, initial=step, desc=f"train {st.name}", dynamic_ncols=True)
    last: dict[str, float] = {}
    per_rank = st.batch // world.size
    model.train()
    budget_hit = False
    while step < steps and not budget_hit:
        sampler.set_position(step // sampler.steps_per_epoch, step % sampler.steps_per_epoch)
        loader = DataLoader(st.dataset, batch_size=per_rank, sampler=sampler, num_workers=settings.workers,
                            drop_last=True, pin_memory=device.type == "cuda")
        for b in loader:
            if stop_now(t_start):
                log(f"{st.name}: time budget {time_budget:.0f}s reached at step {step}")
                budget_hit = True
                break
            b = _to(b, device)
            st.opt.zero_grad(set_to_none=True)
            with _autocast(device, settings.precision):
                loss, parts, aux = st.loss(net, b, step)
            scaler.scale(loss).backward()
            if settings.grad_clip > 0:
                scaler.unscale_(st.opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            scaler.step(st.opt)
            scaler.update()
            sched.step()
            ema.update(model)
            if st.after is not None:
                parts.update(st.after(b, aux, step))
            last = mean_scalars(world, parts)
            step += 1
            history.append(last["loss"])
            if logger is not None and (step % cfg.train.log_every == 0 or step == steps):
                logger.write({"step": step, "time_s": round(time.monotonic() - t_start, 2),
                              "lr": sched.get_last_lr()[0], **last})
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{last['loss']:.4f}")
            if settings.val_every and step % settings.val_every == 0:
                validate()
            if step % cfg.train.ckpt_every == 0:
                save()
            if step >= steps:
                break
    if bar is not None:
        bar.close()
    if not (val_rows and val_rows[-1]["step"] == step):  # the final weights validated once
        validate()
    save()
    barrier(world)
    ema.copy_to(model)  # the passed model now holds the EMA weights: the ones inference uses
    return {"stage": st.name, "steps": step, "initial_loss": history[0] if history else None,
            "final_loss": float(np.mean(history[-10:])) if history else None, "last": last,
            "validation": val_rows[-1] if val_rows else None, "world_size": world.size,
            "checkpoint": str(ckpt_path), "wall_s": time.monotonic() - t_start}


def _seed(seed: int) -> None:
    import random

    random.seed(seed)
    torch.manual_seed(seed)
    np.random.seed(seed)


def _setup(settings: TrainSettings | None, world: World | None, face_model: Any
           ) -> tuple[TrainSettings, World, torch.device]:
    settings = settings or TrainSettings()
    settings.validate()
    world = world or World()
    device = torch.device(settings.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", world.local_rank)
    if device.type == "cuda" and face_model is not None and hasattr(face_model, "to"):
        face_model.to(device)
    return settings, world, device


def audio_augmentation(cfg: RealTalkConfig, featurizer_name: str) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The A2E's training-time audio-token augmentation (ours: cfg.a2e.aug_*), None when all are off.

    Per window: a gain of g ~ U(-G, G) dB multiplies every mel power by 10^(g/10), i.e. adds g ln(10)/10 to
    the log-mel (divided by its fixed global std, realtalk.audio_features); a frequency mask (SpecAugment)
    sets f ~ U{0..F} adjacent bins to 0 (the global mean); Gaussian noise of std aug_noise on every value.
    Drawn from torch's global generator (restored on resume; ranks draw their own, so a DDP run with
    augmentation is the single-process objective in expectation, not bit for bit)."""
    c = cfg.a2e
    if not (c.aug_gain_db > 0 or c.aug_freq_mask > 0 or c.aug_noise > 0):
        return None
    if featurizer_name != "logmel":
        raise ValueError(f"A2E audio augmentation (aug_*) is defined on log-mel tokens, not {featurizer_name!r}")
    from realtalk.audio_features import logmel_gain_shift

    def augment(x: torch.Tensor) -> torch.Tensor:
        b, _, d = x.shape
        x = x.clone()
        if c.aug_gain_db > 0:
            g = (torch.rand(b, 1, 1, device=x.device) * 2 - 1) * c.aug_gain_db
            x = x + logmel_gain_shift(g)
        if c.aug_freq_mask > 0:
            width = torch.randint(0, int(c.aug_freq_mask) + 1, (b, 1, 1), device=x.device)
            lo = (torch.rand(b, 1, 1, device=x.device) * (d - width + 1)).floor()
            f = torch.arange(d, device=x.device).view(1, 1, d)
            x = x.masked_fill((f >= lo) & (f < lo + width), 0.0)
        if c.aug_noise > 0:
            x = x + torch.randn_like(x) * c.aug_noise
        return x

    return augment


def train_a2e(cfg: RealTalkConfig, clips: list[ClipData], face_model: Any, out_dir: str | Path, steps: int,
              time_budget: float | None = None, resume: bool = False, featurizer_name: str = "logmel",
              progress: bool = True, log: Callable = print, model: AudioToExpression | None = None,
              command: str | None = None, *, settings: TrainSettings | None = None,
              val_clips: list[ClipData] | Any | None = None, world: World | None = None) -> dict[str, Any]:
    """Adam on MSE(beta) + mouth_weight * mouth-vertex MSE over random windows. `clips`: ClipData list or a
    ShardStore; `val_clips` (held-out) are validated under inference conditions (realtalk.validation)."""
    from realtalk.audio_features import featurizer_dim
    from realtalk.datasets import A2EWindowDataset
    from realtalk.validation import validate_a2e

    want = featurizer_dim(featurizer_name)  # the name is stored in the checkpoint: inference builds those tokens
    if want is not None and want != cfg.a2e.audio_dim:
        raise ValueError(f"featurizer {featurizer_name!r} gives {want}-d audio tokens, the A2E config expects "
                         f"{cfg.a2e.audio_dim}-d (pass the featurizer the config was built with)")
    settings, world, device = _setup(settings, world, face_model)
    _seed(cfg.train.seed)
    model = model or AudioToExpression(cfg.a2e)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.a2e_lr)
    data = A2EWindowDataset(clips, cfg.a2e.T, cfg.a2e.n_history, cfg.a2e.tokens_per_frame, seed=cfg.train.seed)

    augment = audio_augmentation(cfg, featurizer_name)

    def loss(net: torch.nn.Module, b: dict[str, torch.Tensor], step: int):
        audio = b["audio"] if augment is None else augment(b["audio"])
        pred = net(audio, b["alpha"], b["history"])
        with torch.autocast(pred.device.type, enabled=False):  # the loss in fp32 whatever the precision
            total, parts = a2e_loss(face_model, b["alpha"], pred.float(), b["beta"], cfg.a2e.mouth_weight)
        return total, parts, None

    val = None
    if val_clips is not None and len(val_clips):
        val = lambda m: validate_a2e(m, val_clips, face_model, cfg, max_frames=settings.val_max_frames)  # noqa: E731
    st = _Stage("a2e", model, opt, data, cfg.train.a2e_batch, loss, validate=val,
                find_unused=not (cfg.a2e.use_shape and cfg.a2e.use_history))
    meta = {"face_model": _face_model_id(face_model), "featurizer": featurizer_name, "command": command}
    return _fit(st, cfg, settings, world, device, steps, time_budget, Path(out_dir), resume, meta, progress, log)


def renderer_masks(face_model: Any, alpha: torch.Tensor, beta: torch.Tensor, rho: torch.Tensor, size: int,
                   kind: str = "learnable") -> torch.Tensor:
    """[B,1,size,size], 1 = keep source: the 3D-prior lower-face mask ("learnable", the paper's) or the
    fixed lower half ("naive", Table 6)."""
    from realtalk.mask import lower_face_mask, naive_lower_half_mask

    if kind == "naive":
        return naive_lower_half_mask(beta.shape[0], size, device=beta.device).float()
    with torch.no_grad():
        return lower_face_mask(face_model, alpha, beta, rho, size=size).float()


def batch_warp(cfg: RealTalkConfig, face_model: Any, b: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """The reference warped to the target's expression and pose (output="warp_residual"), else None."""
    if cfg.renderer.output != "warp_residual":
        return None
    from realtalk.warp import warp_reference

    return warp_reference(face_model, b["reference"], b["alpha"], b["ref_beta"], b["ref_rho"], b["beta"], b["rho"])


def _code_stats(clips: Any) -> torch.Tensor:
    """[sum T, n_id+n_exp+n_pose] codes of every training frame (the renderer's input normalisation)."""
    rows = []
    for i in range(len(clips)):
        c = clips[i]
        n = len(c)
        rows.append(np.concatenate([np.repeat(np.asarray(c.alpha, np.float32)[None], n, 0),
                                    np.asarray(c.beta, np.float32), np.asarray(c.rho, np.float32)], 1))
    return torch.from_numpy(np.concatenate(rows)).float()


def train_renderer(cfg: RealTalkConfig, clips: list[ClipData], face_model: Any, out_dir: str | Path, steps: int,
                   time_budget: float | None = None, resume: bool = False, perceptual: bool = True,
                   progress: bool = True, log: Callable = print, model: Renderer | None = None,
                   command: str | None = None, *, settings: TrainSettings | None = None,
                   val_clips: list[ClipData] | Any | None = None, world: World | None = None) -> dict[str, Any]:
    """Adam on 1*L1 + 1*VGG + 0.1*LSGAN + 1*teeth L1, with a PatchGAN discriminator updated every step
    (from cfg.train.adv_start). `clips`: ClipData list or ShardStore (masks then come from the shards)."""
    from realtalk.datasets import RendererFrameDataset
    from realtalk.validation import validate_renderer

    settings, world, device = _setup(settings, world, face_model)
    _seed(cfg.train.seed)
    t = cfg.train
    model = model or Renderer(cfg.renderer)
    crit = RendererLoss(t.w_l1, t.w_perceptual, t.w_adv, t.w_teeth, t.disc_channels, t.disc_layers, perceptual,
                        world=world)
    crit.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=t.renderer_lr, betas=t.betas)
    d_opt = torch.optim.Adam(crit.disc.parameters(), lr=t.disc_lr, betas=t.betas) if crit.disc is not None else None
    d_sched = (torch.optim.lr_scheduler.LambdaLR(d_opt, warmup_lambda(settings.warmup_steps))
               if d_opt is not None else None)
    data = RendererFrameDataset(clips, face_model, size=cfg.renderer.size, seed=t.seed)
    size = cfg.renderer.size
    if not (resume and (Path(out_dir) / "renderer.pt").exists()):
        model.set_code_stats(_code_stats(clips))

    def loss(net: torch.nn.Module, b: dict[str, torch.Tensor], step: int):
        tgt = b["target"]
        if tgt.shape[-1] != size:
            raise ValueError(f"crops are {tgt.shape[-1]} px, renderer expects {size}")
        mask = b["mask"]  # the stored / per-item 3D-prior mask; the fixed lower half for Table 6's "naive"
        if getattr(cfg.renderer, "mask", "learnable") == "naive":
            mask = renderer_masks(face_model, b["alpha"], b["beta"], b["rho"], size, kind="naive")
        i_hat, _ = net(tgt, b["reference"], mask, b["alpha"], b["beta"], b["rho"],
                       warped=batch_warp(cfg, face_model, b))
        use_adv = crit.disc is not None and step >= t.adv_start
        with torch.autocast(tgt.device.type, enabled=False):
            total, parts = crit.generator_loss(i_hat.float(), tgt, b["teeth"] if t.w_teeth > 0 else None,
                                               use_adv=use_adv)
        return total, parts, (i_hat, use_adv)

    def after(b: dict[str, torch.Tensor], aux: Any, step: int) -> dict[str, float]:
        i_hat, use_adv = aux
        if not use_adv or d_opt is None:
            return {}
        with torch.autocast(i_hat.device.type, enabled=False):
            d_loss, d_parts = crit.discriminator_loss(i_hat.float(), b["target"])
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        average_gradients(world, crit.disc)
        if settings.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(crit.disc.parameters(), settings.grad_clip)
        d_opt.step()
        d_sched.step()
        return d_parts

    def extra() -> dict:
        if crit.disc is None:
            return {}
        return {"disc": crit.disc.state_dict(), "disc_optimizer": d_opt.state_dict(),
                "disc_scheduler": d_sched.state_dict()}

    def load_extra(ck: dict) -> None:
        if crit.disc is not None and "disc" in ck:
            crit.disc.load_state_dict(ck["disc"])
            d_opt.load_state_dict(ck["disc_optimizer"])
            if "disc_scheduler" in ck:
                d_sched.load_state_dict(ck["disc_scheduler"])

    val = None
    if val_clips is not None and len(val_clips):
        val = lambda m: validate_renderer(m, val_clips, face_model, cfg, n_frames=settings.val_frames)  # noqa: E731
    st = _Stage("renderer", model, opt, data, t.renderer_batch, loss, after, extra, load_extra, val)
    meta = {"face_model": _face_model_id(face_model), "perceptual": bool(crit.vgg is not None and crit.vgg.enabled),
            "command": command}
    return _fit(st, cfg, settings, world, device, steps, time_budget, Path(out_dir), resume, meta, progress, log)


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
        mask = renderer_masks(face_model, b["alpha"], b["beta"], b["rho"], cfg.renderer.size,
                              kind=getattr(cfg.renderer, "mask", "learnable"))
        teeth = teeth_mask(face_model, b["alpha"], b["beta"], b["rho"], cfg.renderer.size)
        i_hat, _ = model(b["target"], b["reference"], mask, b["alpha"], b["beta"], b["rho"],
                         warped=batch_warp(cfg, face_model, b))
        from realtalk.losses import masked_l1

        rows.append({"l1": float((i_hat - b["target"]).abs().mean()),
                     "l1_masked_region": float(masked_l1(i_hat, b["target"], 1 - mask)),
                     "teeth": float(masked_l1(i_hat, b["target"], teeth))})
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


ENSEMBLE_KIND = "a2e_ensemble"


def member_dir(out_dir: str | Path, k: int) -> Path:
    """Where member k of an A2E seed ensemble trains (its own resumable a2e.pt and logs)."""
    return Path(out_dir) / f"a2e-member{k}"


def write_a2e_ensemble(member_ckpts: list[Path], dst: str | Path, command: str | None = None) -> Path:
    """One a2e.pt holding a seed ensemble (realtalk.a2e_ensemble) of trained A2E stage checkpoints: their raw
    and EMA weights as A2EEnsemble state_dicts, member 0's config, and each member's seed, steps, final loss
    and validation rows. export_combined and realtalk.inference read it like a single A2E's file; it holds
    no optimiser state (each member's own checkpoint does, for --resume)."""
    from realtalk.a2e_ensemble import ensemble_state

    cks = [load_checkpoint(p) for p in member_ckpts]
    first = cks[0]
    for p, ck in zip(member_ckpts, cks):
        if ck.get("stage") != "a2e":
            raise ValueError(f"{p}: not an A2E stage checkpoint (stage {ck.get('stage')!r})")
        if ck["config"]["a2e"] != first["config"]["a2e"]:
            raise ValueError(f"{p}: A2E config differs from {member_ckpts[0]}'s")
        for key in ("face_model", "featurizer"):
            if ck.get(key) != first.get(key):
                raise ValueError(f"{p}: {key} {ck.get(key)!r} differs from {member_ckpts[0]}'s {first.get(key)!r}")
    has_ema = all("ema" in ck for ck in cks)
    obj = {"format": CKPT_FORMAT, "stage": "a2e", "kind": ENSEMBLE_KIND,
           "model": ensemble_state([ck["model"] for ck in cks]),
           "step": min(int(ck["step"]) for ck in cks), "config": first["config"],
           "face_model": first["face_model"], "featurizer": first.get("featurizer", "logmel"),
           "command": command, "git_hash": git_hash(), "losses": [], "validation": [],
           "ensemble": {"members": len(cks), "checkpoints": [str(p) for p in member_ckpts],
                        "seeds": [int(ck["config"]["train"]["seed"]) for ck in cks],
                        "steps": [int(ck["step"]) for ck in cks],
                        "final_loss": [float(ck["losses"][-1]) if ck.get("losses") else float("nan")
                                       for ck in cks],
                        "validation": [list(ck.get("validation", [])) for ck in cks]}}
    if has_ema:
        obj["ema"] = {"decay": float(first["ema"]["decay"]), "n": min(int(ck["ema"]["n"]) for ck in cks),
                      "shadow": ensemble_state([ck["ema"]["shadow"] for ck in cks])}
    dst = Path(dst)
    atomic_torch_save(obj, dst)
    return dst


def export_combined(a2e_ckpt: str | Path, renderer_ckpt: str | Path, dst: str | Path,
                    extra: dict[str, Any] | None = None) -> Path:
    """One inference file: both stages' EMA weights (the raw ones for checkpoints made before EMA) + the
    config + provenance (what realtalk.method loads)."""
    a, r = load_checkpoint(a2e_ckpt), load_checkpoint(renderer_ckpt)
    weights = lambda ck: ck["ema"]["shadow"] if "ema" in ck else ck["model"]  # noqa: E731
    if a["face_model"] != r["face_model"]:
        raise ValueError(f"stages trained with different face models: {a['face_model']} vs {r['face_model']}")
    cfg = RealTalkConfig.from_dict(a["config"])
    cfg.renderer = RealTalkConfig.from_dict(r["config"]).renderer
    obj = {"format": CKPT_FORMAT, "kind": "realtalk", "config": cfg.to_dict(), "a2e": weights(a),
           "renderer": weights(r), "weights": "ema" if "ema" in a and "ema" in r else "raw",
           "a2e_step": a["step"], "renderer_step": r["step"], "face_model": a["face_model"],
           "featurizer": a.get("featurizer", "logmel"), "git_hash": git_hash(),
           "train_commands": {"a2e": a.get("command"), "renderer": r.get("command")}, **(extra or {})}
    if "ensemble" in a:  # a seed ensemble's members (seeds, steps, losses, validation) travel with it
        obj["a2e_ensemble"] = a["ensemble"]
    dst = Path(dst)
    atomic_torch_save(obj, dst)
    return dst
