"""`realtalk-bench face-model build --split demo`: learn the offline 68-landmark 3D face model from the
split's TRAIN clips (test clips never enter it) and save it as a small .npz."""
from __future__ import annotations

import argparse
import datetime as _dt
import json
from pathlib import Path

import numpy as np


def build_from_split(split_name: str = "demo", root: str | None = None, max_frames: int = 250,
                     n_id: int = 8, n_exp: int = 12, out: str | Path | None = None, log=print) -> Path:
    """Landmark tracks of the train clips (harness.core.faces.clip_faces, cached) -> model -> out (.npz)."""
    from harness.core.faces.clip import clip_faces
    from harness.core.media import read_video
    from harness.core.paths import data_root
    from harness.core.splits import load_split
    from realtalk.landmark_face_model import ASSET, build_landmark_face_model

    split = load_split(split_name)
    base = data_root(root)
    train = [c for c in split.clips if c.role == "train"]
    tracks: dict[str, np.ndarray] = {}
    for c in train:
        start = c.frame_range[0] if c.frame_range else 0
        n = max_frames if not c.frame_range else min(max_frames, c.frame_range[1] - c.frame_range[0])
        video = read_video(base / c.video, fps=25.0, start=start, max_frames=n)
        tracks[c.clip_id] = clip_faces(video).landmarks
        log(f"{c.clip_id}: {len(video.frames)} frames, landmarks on {np.isfinite(tracks[c.clip_id]).all((1, 2)).mean():.0%}")
    model, report = build_landmark_face_model(tracks, n_id=n_id, n_exp=n_exp, metadata={
        "split": split_name, "role": "train", "fps": 25.0, "max_frames_per_clip": max_frames,
        "landmarker": "dlib 68 (harness.core.faces.clip_faces, dlib_hog detector)",
        "built": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": f"realtalk-bench face-model build --split {split_name} --max-frames {max_frames}",
    })
    path = model.save(out or ASSET)
    log(f"saved {path} ({path.stat().st_size} bytes): {report.n_clips} clips, {report.n_frames} frames, "
        f"n_id={model.n_id}, n_exp={model.n_exp}, exp variance explained {np.round(report.explained_exp[:4], 3).tolist()}")
    return path


def _run(args: argparse.Namespace) -> int:
    build_from_split(args.split, args.root, args.max_frames, args.n_id, args.n_exp, args.out)
    return 0


def _info(args: argparse.Namespace) -> int:
    from realtalk.landmark_face_model import ASSET, LandmarkFaceModel

    m = LandmarkFaceModel.load(args.path or ASSET)
    print(json.dumps({"name": m.name, "n_id": m.n_id, "n_exp": m.n_exp, "n_pose": m.n_pose,
                      "fingerprint": m.fingerprint(), "metadata": m.metadata}, indent=2))
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("face-model", help="build / inspect the offline 68-landmark 3D face model")
    sub = p.add_subparsers(dest="face_model_cmd", metavar="ACTION")
    b = sub.add_parser("build", help="learn the model from a split's train clips")
    b.add_argument("--split", default="demo")
    b.add_argument("--root", default=None, help="data root (default ../shared/data or $REALTALK_BENCH_DATA)")
    b.add_argument("--out", default=None, help="output .npz (default: the packaged realtalk/assets file)")
    b.add_argument("--max-frames", type=int, default=250, help="frames per clip at 25 fps")
    b.add_argument("--n-id", type=int, default=8)
    b.add_argument("--n-exp", type=int, default=12)
    i = sub.add_parser("info", help="print a model's sizes and build metadata")
    i.add_argument("path", nargs="?", default=None)

    def dispatch(args: argparse.Namespace) -> int:
        actions = {"build": _run, "info": _info}
        if args.face_model_cmd not in actions:
            p.print_help()
            return 2
        return actions[args.face_model_cmd](args)

    p.set_defaults(func=dispatch)
