"""`realtalk-bench train a2e|renderer --split NAME --config paper|small ...`: train one RealTalk stage on the
split's TRAIN clips. Checkpoints, loss logs (CSV + JSON lines) go to --out; --resume continues from
<out>/<stage>.pt. When both stages exist in --out, <out>/realtalk.pt (the file `--method realtalk`
takes as checkpoint=) is (re)written. Each stage checkpoint records the command line that made it
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
    p.add_argument("--features", default="logmel", choices=["logmel", "hubert"])
    p.add_argument("--face-model", default="landmark68", choices=["landmark68", "bfm"])
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--a2e-dropout", type=float, default=None, help="A2E dropout (default: the config's)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from realtalk.audio_features import get_featurizer
    from realtalk.config import get_config
    from realtalk.data import load_split_data
    from realtalk.face_models import get_face_model
    from realtalk.train import export_combined, train_a2e, train_renderer

    fm = get_face_model(args.face_model)
    feat = get_featurizer(args.features)
    cfg = get_config(args.config).with_face_model(fm.n_id, fm.n_exp, fm.n_pose).with_featurizer(feat)
    if args.seed is not None:
        cfg.train.seed = args.seed
    if args.a2e_dropout is not None:
        cfg.a2e.dropout = args.a2e_dropout
    clips = load_split_data(args.split, args.root, fm, feat, role="train", max_frames=args.max_frames)
    out = Path(args.out)
    import shlex
    import sys

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    command = "realtalk-bench " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["train"] else None
    kw = dict(steps=args.steps, time_budget=args.time_budget, resume=args.resume, progress=not args.no_progress,
              command=command)
    if args.stage == "a2e":
        summary = train_a2e(cfg, clips, fm, out, featurizer_name=feat.name, **kw)
    else:
        summary = train_renderer(cfg, clips, fm, out, **kw)
    print(json.dumps(summary, default=float, indent=1))
    if (out / "a2e.pt").exists() and (out / "renderer.pt").exists():
        dst = export_combined(out / "a2e.pt", out / "renderer.pt", out / "realtalk.pt")
        print(f"combined checkpoint: {dst}")
    return 0
