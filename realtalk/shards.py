"""On-disk training shards: every clip prepared ONCE (decode, track, crop, coefficients, audio tokens, masks).

Format: one folder per clip of memory-mapped .npy arrays plus a JSON index (not WebDataset tar shards):

    DATA_DIR/index.json                    {"format", "split", "face_model", "featurizer", "tokens_per_frame",
                                            "audio_dim", "max_frames", "clips": {clip_id: {"role", "n_frames",
                                            "dir"}}, "failed": {clip_id: "one-line reason"}, "skipped": {...}}
    DATA_DIR/clips/<clip_id>/crops.npy     uint8 [T,256,256,3]
                             alpha.npy     float32 [n_id];  beta.npy [T,n_exp];  rho.npy [T,n_pose]
                             audio.npy     float32 [tpf*T, A] audio tokens
                             mask.npy      uint8 [T,256,256] lower-face mask (1 = keep source)
                             teeth.npy     uint8 [T,256,256] mouth-interior mask (the teeth loss)
                             meta.json     written LAST: its presence marks the clip finished

Why memmapped .npy rather than tar shards: both training stages read at random inside a clip (the
renderer pairs frame t with a reference frame r of the same clip; A2E samples its N history frames from
anywhere in the clip outside the window), which a sequential tar stream cannot serve without holding
whole clips in memory; a memmap reads only the pages of the frames asked for, so a Dataset over many
GB of clips keeps no split in RAM, and DataLoader workers (fork) share the page cache. A clip folder is
written under a temporary name and renamed into place, so a killed `preprocess` leaves no half clip,
and a rerun skips every clip whose folder is complete (same face model, featurizer and max_frames).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness.core.errors import BenchError, ManifestError
from harness.core.fsutil import atomic_write_json
from realtalk.data import ClipData, iter_split_data, split_entries

SHARD_FORMAT = 1
ARRAYS = ("crops", "alpha", "beta", "rho", "audio", "mask", "teeth")
MASK_BATCH = 32  # frames per face-model call when computing the masks


def _safe(clip_id: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in clip_id)


def frame_masks(face_model: Any, cd: ClipData, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(lower-face mask, teeth mask), uint8 [T,size,size], of each frame's own fitted coefficients: what the
    renderer's training computed per batch (realtalk.train.renderer_masks / losses.teeth_mask), once."""
    import torch

    from realtalk.losses import teeth_mask
    from realtalk.mask import lower_face_mask

    masks, teeth = [], []
    alpha = torch.from_numpy(np.asarray(cd.alpha, np.float32))
    for s in range(0, len(cd), MASK_BATCH):
        beta = torch.from_numpy(np.asarray(cd.beta[s:s + MASK_BATCH], np.float32))
        rho = torch.from_numpy(np.asarray(cd.rho[s:s + MASK_BATCH], np.float32))
        a = alpha[None].expand(len(beta), -1)
        with torch.no_grad():
            masks.append(lower_face_mask(face_model, a, beta, rho, size=size)[:, 0].numpy().astype(np.uint8))
            teeth.append(teeth_mask(face_model, a, beta, rho, size=size)[:, 0].numpy().astype(np.uint8))
    return np.concatenate(masks), np.concatenate(teeth)


def write_clip(data_dir: Path, cd: ClipData, face_model: Any, meta: dict[str, Any]) -> Path:
    """The clip's arrays into DATA_DIR/clips/<id>/ (temp folder + rename: all or nothing)."""
    dst = data_dir / "clips" / _safe(cd.clip_id)
    tmp = dst.with_name(dst.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    mask, teeth = frame_masks(face_model, cd, size=cd.crops.shape[1])
    arrays = {"crops": np.ascontiguousarray(cd.crops, np.uint8), "alpha": np.asarray(cd.alpha, np.float32),
              "beta": np.asarray(cd.beta, np.float32), "rho": np.asarray(cd.rho, np.float32),
              "audio": np.asarray(cd.audio, np.float32), "mask": mask, "teeth": teeth}
    for name, arr in arrays.items():
        np.save(tmp / f"{name}.npy", arr)
    atomic_write_json(tmp / "meta.json", {**meta, "clip_id": cd.clip_id, "role": cd.role, "n_frames": len(cd),
                                          "shapes": {k: list(v.shape) for k, v in arrays.items()}})
    shutil.rmtree(dst, ignore_errors=True)
    os.replace(tmp, dst)
    return dst


def _params(face_model: Any, featurizer: Any, max_frames: int | None) -> dict[str, Any]:
    return {"format": SHARD_FORMAT, "face_model": f"{face_model.name}:{face_model.fingerprint()}",
            "featurizer": featurizer.name, "tokens_per_frame": int(featurizer.tokens_per_frame),
            "audio_dim": int(featurizer.dim), "max_frames": max_frames}


def preprocess_split(split: str, root: str | Path | None, out: str | Path, face_model: Any, featurizer: Any,
                     role: str | None = None, max_frames: int | None = None, min_frames: int = 2,
                     log: Callable[[str], None] = print) -> dict[str, Any]:
    """Prepare every clip of the split (of `role`; None = train and test) into DATA_DIR. Finished clips with
    the same parameters are skipped; a clip that fails is one line in the log and in index["failed"]
    (retried on the next run), and the others finish. Returns the index."""
    data_dir = Path(out)
    data_dir.mkdir(parents=True, exist_ok=True)
    params = _params(face_model, featurizer, max_frames)
    index_path = data_dir / "index.json"
    index: dict[str, Any] = {}
    if index_path.exists():
        index = json.loads(index_path.read_text())
        old = {k: index.get(k) for k in params}
        if old != params:
            raise ManifestError(f"shards were made with {old}, this run asks for {params}: use another --out",
                                index_path)
    index.update(params, split=str(split))
    index.setdefault("clips", {})
    index["failed"], index["skipped"] = {}, {}
    entries = split_entries(split, role)
    todo = []
    for e in entries:
        done = data_dir / "clips" / _safe(e.clip_id) / "meta.json"
        if e.clip_id in index["clips"] and done.exists():
            continue
        todo.append(e)
    log(f"preprocess {split}: {len(entries)} clips, {len(entries) - len(todo)} already done, {len(todo)} to do")
    t0 = time.monotonic()
    for k, e in enumerate(todo, 1):
        try:
            (_, cd), = iter_split_data([e], root, face_model, featurizer, max_frames)
            if len(cd) < min_frames:
                index["skipped"][e.clip_id] = f"{len(cd)} frames < {min_frames}"
                atomic_write_json(index_path, index)
                log(f"[{k}/{len(todo)}] skip {e.clip_id}: {len(cd)} frames < {min_frames}")
                continue
            path = write_clip(data_dir, cd, face_model, params)
        except (BenchError, ValueError, RuntimeError, OSError) as exc:
            why = " ".join(str(exc).split()) or type(exc).__name__
            index["failed"][e.clip_id] = why
            atomic_write_json(index_path, index)
            log(f"[{k}/{len(todo)}] error {e.clip_id} ({e.video}): {why}")
            continue
        index["clips"][e.clip_id] = {"role": e.role, "n_frames": len(cd), "dir": str(path.relative_to(data_dir))}
        atomic_write_json(index_path, index)
        log(f"[{k}/{len(todo)}] {e.clip_id}: {len(cd)} frames ({time.monotonic() - t0:.0f}s)")
    n_ok = sum(1 for e in entries if e.clip_id in index["clips"])
    log(f"preprocess {split}: {n_ok} clips ready, {len(index['failed'])} failed, {len(index['skipped'])} skipped "
        f"-> {data_dir}")
    return index


class ShardStore:
    """Read side: clips of one role as ClipData whose arrays are read-only memmaps (opened lazily per
    process; pickling drops the open maps, so DataLoader workers reopen them)."""

    def __init__(self, data_dir: str | Path, role: str | None = "train"):
        self.dir = Path(data_dir)
        path = self.dir / "index.json"
        if not path.exists():
            raise ManifestError("no index.json: run `realtalk-bench preprocess --out DIR` first", path)
        self.index = json.loads(path.read_text())
        if self.index.get("format") != SHARD_FORMAT:
            raise ManifestError(f"shard format {self.index.get('format')} (this code reads {SHARD_FORMAT})", path)
        self.ids = [c for c, v in self.index["clips"].items() if role is None or v["role"] == role]
        self._open: dict[int, ClipData] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def n_frames(self, i: int) -> int:
        return int(self.index["clips"][self.ids[i]]["n_frames"])

    def __getitem__(self, i: int) -> ClipData:
        if i not in self._open:
            info = self.index["clips"][self.ids[i]]
            d = self.dir / info["dir"]
            arr = {k: np.load(d / f"{k}.npy", mmap_mode="r") for k in ARRAYS}
            self._open[i] = ClipData(clip_id=self.ids[i], role=info["role"], **arr)
        return self._open[i]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_open": {}}

    def check(self, face_model: Any, featurizer_name: str, tokens_per_frame: int) -> None:
        """One-line error when the shards were made with another face model or featurizer."""
        want = {"face_model": f"{face_model.name}:{face_model.fingerprint()}", "featurizer": featurizer_name,
                "tokens_per_frame": int(tokens_per_frame)}
        got = {k: self.index.get(k) for k in want}
        if got != want:
            raise ManifestError(f"shards were made with {got}, training asks for {want}", self.dir / "index.json")
