"""A compact copy of a shard folder (realtalk.shards) for a machine that cannot prepare shards itself.

Why: the lent GPU machine gets only the working tree (64 MiB a call) and has neither PyAV nor dlib's 100 MB
landmark model, so it can neither decode the demo media nor track faces; the shards are prepared here
and carried. Raw crops are 192 KiB a frame, so they travel as JPEG (OpenCV, quality 95 by default: LOSSY,
and said so in the unpacked index as "crops_codec"); every other array (coefficients, audio tokens,
masks) travels exactly, zlib-compressed (.npz). `unpack_shards` rebuilds the ShardStore layout, so
training reads it like any `preprocess` output.

    PACK/pack.json         the shard index (+ "crops_codec", "packed_from"), clips trimmed to max_frames
    PACK/<clip>.npz        jpeg (uint8 bytes of every frame, concatenated), offsets [T+1], alpha, beta, rho,
                           audio, mask, teeth
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from harness.core.errors import ManifestError
from harness.core.fsutil import atomic_write_json
from realtalk.shards import ARRAYS, ShardStore

EXACT = tuple(a for a in ARRAYS if a != "crops")


def pack_shards(data_dir: str | Path, dst: str | Path, quality: int = 95, max_frames: int | None = None,
                roles: tuple[str, ...] = ("train", "test")) -> dict[str, Any]:
    """Write PACK from a shard folder (clips of `roles`, first max_frames frames); returns pack.json."""
    import cv2

    store = ShardStore(data_dir, role=None)
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    index = {k: v for k, v in store.index.items() if k not in ("clips", "failed", "skipped")}
    index.update(crops_codec=f"jpeg q{int(quality)} (realtalk.shard_pack)", packed_from=str(Path(data_dir).resolve()),
                 clips={})
    tpf = int(store.index["tokens_per_frame"])
    for i, cid in enumerate(store.ids):
        info = store.index["clips"][cid]
        if info["role"] not in roles:
            continue
        c = store[i]
        n = len(c) if max_frames is None else min(len(c), int(max_frames))
        blobs = []
        for frame in c.crops[:n]:
            ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(frame[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
            if not ok:
                raise ManifestError(f"clip {cid}: JPEG encoding failed", Path(data_dir))
            blobs.append(buf.reshape(-1))
        offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
        arrays = {k: np.asarray(getattr(c, k)) for k in EXACT}
        for k in ("beta", "rho", "mask", "teeth"):
            arrays[k] = arrays[k][:n]
        arrays["audio"] = arrays["audio"][:tpf * n]
        name = Path(info["dir"]).name
        np.savez_compressed(dst / f"{name}.npz", jpeg=np.concatenate(blobs), offsets=offsets, **arrays)
        index["clips"][cid] = {"role": info["role"], "n_frames": n, "file": f"{name}.npz"}
    atomic_write_json(dst / "pack.json", index)
    return index


def pack_bytes(pack: str | Path) -> int:
    return sum(p.stat().st_size for p in Path(pack).iterdir() if p.is_file())


def unpack_shards(pack: str | Path, data_dir: str | Path) -> Path:
    """PACK -> a ShardStore folder (crops decoded from JPEG; the rest as packed). Rewritten from scratch."""
    import cv2

    pack, data_dir = Path(pack), Path(data_dir)
    meta_path = pack / "pack.json"
    if not meta_path.exists():
        raise ManifestError("no pack.json: make the pack with tests/benchmarks/device_check.py --make-pack", meta_path)
    index = json.loads(meta_path.read_text())
    shutil.rmtree(data_dir, ignore_errors=True)
    (data_dir / "clips").mkdir(parents=True)
    clips = {}
    for cid, info in index.pop("clips").items():
        z = np.load(pack / info["file"])
        jpeg, off = z["jpeg"], z["offsets"]
        crops = np.stack([cv2.imdecode(jpeg[off[t]:off[t + 1]], cv2.IMREAD_COLOR)[..., ::-1]
                          for t in range(len(off) - 1)])
        d = data_dir / "clips" / Path(info["file"]).stem
        tmp = d.with_name(d.name + f".tmp-{os.getpid()}")
        tmp.mkdir(parents=True)
        arrays = {"crops": np.ascontiguousarray(crops, np.uint8), **{k: z[k] for k in EXACT}}
        for k, v in arrays.items():
            np.save(tmp / f"{k}.npy", v)
        atomic_write_json(tmp / "meta.json", {"clip_id": cid, "role": info["role"], "n_frames": int(info["n_frames"]),
                                              "crops_codec": index.get("crops_codec"),
                                              "shapes": {k: list(v.shape) for k, v in arrays.items()}})
        os.replace(tmp, d)
        clips[cid] = {"role": info["role"], "n_frames": int(info["n_frames"]), "dir": f"clips/{d.name}"}
    atomic_write_json(data_dir / "index.json", {**index, "clips": clips, "failed": {}, "skipped": {}})
    return data_dir
