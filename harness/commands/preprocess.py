"""`realtalk-bench preprocess --split NAME --root DIR --out DATA_DIR`: prepare every clip of a split ONCE
(decode, track, crop, 3D coefficients, audio tokens, lower-face and teeth masks) into memory-mapped
shards that `realtalk-bench train --data DATA_DIR` reads (format and why: realtalk/shards.py).
Resumable: finished clips are skipped on a rerun. A clip that fails is one line ("error CLIP (FILE):
reason") and is counted; the others finish. Exit 0 when every clip is ready, 1 when any failed."""
from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("preprocess", help="prepare a split's clips once into training shards")
    p.add_argument("--split", default="demo", help="split name or manifest .yaml (default demo)")
    p.add_argument("--root", default=None, help="data root (default $REALTALK_BENCH_DATA or ../shared/data)")
    p.add_argument("--out", required=True, help="shard folder (DATA_DIR)")
    p.add_argument("--role", default="all", choices=["all", "train", "test"],
                   help="which clips (default all: train clips train, test clips validate)")
    p.add_argument("--max-frames", type=int, default=None, help="first frames per clip (default all)")
    p.add_argument("--features", default="logmel", choices=["logmel", "hubert", "phones", "phones+logmel"])
    p.add_argument("--face-model", default="landmark68", choices=["landmark68", "bfm"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.core.errors import BenchError
    from realtalk.audio_features import get_featurizer
    from realtalk.face_models import get_face_model
    from realtalk.shards import preprocess_split

    if args.max_frames is not None and args.max_frames < 2:
        raise BenchError(f"--max-frames {args.max_frames}: need at least 2")
    index = preprocess_split(args.split, args.root, args.out, get_face_model(args.face_model),
                             get_featurizer(args.features), role=None if args.role == "all" else args.role,
                             max_frames=args.max_frames, log=lambda m: print(m, flush=True))
    return 1 if index["failed"] else 0
