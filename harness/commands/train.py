"""`realtalk-bench train a2e|renderer --data DATA_DIR --device cuda|cpu --precision bf16|fp32 ...`: train one
RealTalk stage on the TRAIN clips of the shards `realtalk-bench preprocess` wrote (memmapped, read by a
DataLoader with --workers), validating on their TEST clips under inference conditions every --val-every
steps. Without --data the split's train clips are prepared in RAM (--split, small data only).
Multi-GPU: `torchrun --nproc_per_node N -m harness.cli train ... --device cuda` (DDP; --batch is the GLOBAL
batch, split over the ranks; rank 0 writes checkpoints and logs). Checkpoints, loss logs (CSV + JSON
lines) go to --out; --resume continues from <out>/<stage>.pt (the identical curve). When both stages
exist in --out, <out>/realtalk.pt (the file `--method realtalk` takes as checkpoint=, EMA weights) is
(re)written. Each stage checkpoint records the command line that made it
("command"); realtalk.pt carries both ("train_commands")."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train a RealTalk stage (a2e or renderer)")
    p.add_argument("stage", choices=["a2e", "renderer"])
    p.add_argument("--split", default="demo", help="split whose train clips are used (default demo)")
    p.add_argument("--root", default=None, help="data root (default $REALTALK_BENCH_DATA or ../shared/data)")
    p.add_argument("--config", default="small", choices=["paper", "small"])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--time-budget", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--out", default="runs/train-realtalk", help="output folder")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--max-frames", type=int, default=None, help="frames per clip (default all)")
    p.add_argument("--features", default="logmel", choices=["logmel", "hubert", "phones", "phones+logmel"])
    p.add_argument("--face-model", default="landmark68", choices=["landmark68", "bfm"])
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--ensemble", type=int, default=1, metavar="K",
                   help="a2e only: train K members with seeds seed..seed+K-1 (each in <out>/a2e-member<k>/, resumable) "
                        "and write <out>/a2e.pt as their seed ensemble (the mean of their expressions; ours)")
    p.add_argument("--a2e-dropout", type=float, default=None, help="A2E dropout (default: the config's)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--data", default=None, help="shard folder from `realtalk-bench preprocess` (recommended)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--batch", type=int, default=None, help="global batch (default: the config's)")
    p.add_argument("--lr", type=float, default=None, help="generator learning rate (default: the config's)")
    p.add_argument("--warmup", type=int, default=None, help="LR warm-up steps (default 100)")
    p.add_argument("--grad-clip", type=float, default=None, help="max gradient norm, 0 = off (default 1.0)")
    p.add_argument("--ema-decay", type=float, default=None, help="EMA decay of the generator (default 0.999)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    p.add_argument("--val-every", type=int, default=0, help="validate every N steps (default: at the end)")
    p.add_argument("--ckpt-every", type=int, default=None, help="checkpoint every N steps")
    p.add_argument("--log-every", type=int, default=None, help="log every N steps")
    from harness.commands.ablation import add_variant_flags

    add_variant_flags(p)  # --no-shape --no-history --mask --blocks --reference-module (Tables 5-7)
    p.set_defaults(func=run)


def _settings(args: argparse.Namespace):
    from realtalk.train_config import TrainSettings

    st = TrainSettings(device=args.device, precision=args.precision, workers=args.workers, val_every=args.val_every)
    for name, value in (("warmup_steps", args.warmup), ("grad_clip", args.grad_clip), ("ema_decay", args.ema_decay)):
        if value is not None:
            setattr(st, name, value)
    return st


def run(args: argparse.Namespace) -> int:
    import shlex
    import sys

    import torch

    from harness.core.errors import BenchError
    from realtalk import ddp
    from realtalk.audio_features import get_featurizer
    from realtalk.config import get_config
    from realtalk.face_models import get_face_model
    from realtalk.train import export_combined, train_a2e, train_renderer

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"--device {args.device}: no CUDA device here (torch {torch.__version__})")
    if args.ensemble < 1 or (args.ensemble > 1 and args.stage != "a2e"):
        raise BenchError(f"--ensemble {args.ensemble}: K >= 1, and K > 1 only for the a2e stage")
    settings = _settings(args)
    try:
        settings.validate()
    except ValueError as exc:
        raise BenchError(str(exc)) from None
    fm = get_face_model(args.face_model)
    feat = get_featurizer(args.features)
    cfg = get_config(args.config).with_face_model(fm.n_id, fm.n_exp, fm.n_pose).with_featurizer(feat)
    if args.seed is not None:
        cfg.train.seed = args.seed
    if args.a2e_dropout is not None:
        cfg.a2e.dropout = args.a2e_dropout
    from harness.commands.ablation import apply_variant_flags

    cfg = apply_variant_flags(cfg, args)
    for attr, value in (("ckpt_every", args.ckpt_every), ("log_every", args.log_every)):
        if value is not None:
            setattr(cfg.train, attr, value)
    if args.batch is not None:
        setattr(cfg.train, "a2e_batch" if args.stage == "a2e" else "renderer_batch", args.batch)
    if args.lr is not None:
        setattr(cfg.train, "a2e_lr" if args.stage == "a2e" else "renderer_lr", args.lr)
    if args.threads:
        torch.set_num_threads(args.threads)
    world = ddp.from_env(args.device)
    log = print if world.main else (lambda *a, **k: None)
    val = None
    if args.data:
        from realtalk.shards import ShardStore

        clips, val = ShardStore(args.data, "train"), ShardStore(args.data, "test")
        clips.check(fm, feat.name, cfg.a2e.tokens_per_frame)
        if not len(clips):
            raise BenchError(f"{args.data}: no train clip in the shards")
        log(f"shards {args.data}: {len(clips)} train clips, {len(val)} held-out clips")
    else:
        from realtalk.data import load_split_data

        clips = load_split_data(args.split, args.root, fm, feat, role="train", max_frames=args.max_frames, log=log)
    out = Path(args.out)
    command = "realtalk-bench " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["train"] else None
    kw = dict(steps=args.steps, time_budget=args.time_budget, resume=args.resume,
              progress=not args.no_progress and world.main, command=command, settings=settings, val_clips=val,
              world=world, log=log)
    try:
        if args.stage == "a2e" and args.ensemble > 1:
            summary = _train_ensemble(args.ensemble, cfg, clips, fm, out, feat.name, command, world, log, kw)
        elif args.stage == "a2e":
            summary = train_a2e(cfg, clips, fm, out, featurizer_name=feat.name, **kw)
        else:
            summary = train_renderer(cfg, clips, fm, out, **kw)
    except ValueError as exc:  # e.g. fewer training items than one global batch
        raise BenchError(f"train {args.stage}: {exc}") from None
    finally:
        ddp.shutdown(world)
    if world.main:
        print(json.dumps(summary, default=float, indent=1))
        if (out / "a2e.pt").exists() and (out / "renderer.pt").exists():
            dst = export_combined(out / "a2e.pt", out / "renderer.pt", out / "realtalk.pt")
            print(f"combined checkpoint: {dst}")
    return 0


def _train_ensemble(k: int, cfg, clips, fm, out: Path, featurizer: str, command: str | None, world, log,
                    kw: dict) -> dict:
    """K A2E members, seeds cfg.train.seed + i, one after the other (each resumable in its own folder), then
    <out>/a2e.pt = their seed ensemble (realtalk.train.write_a2e_ensemble)."""
    import copy

    from realtalk.train import member_dir, train_a2e, write_a2e_ensemble

    base = int(cfg.train.seed)
    members, paths = [], []
    for i in range(k):
        cfg_i = copy.deepcopy(cfg)
        cfg_i.train.seed = base + i
        log(f"ensemble member {i + 1}/{k}: seed {base + i} -> {member_dir(out, i)}")
        members.append(train_a2e(cfg_i, clips, fm, member_dir(out, i), featurizer_name=featurizer, **kw))
        paths.append(member_dir(out, i) / "a2e.pt")
    summary = {"stage": "a2e", "ensemble": k, "seeds": list(range(base, base + k)),
               "final_loss": [m["final_loss"] for m in members], "wall_s": sum(m["wall_s"] for m in members)}
    if world.main:
        summary["checkpoint"] = str(write_a2e_ensemble(paths, out / "a2e.pt", command))
    return summary

