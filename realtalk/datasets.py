"""torch Datasets of the two stages over clips (memmapped shards or ClipData in RAM) and the sampler.

Reproducible under any number of DataLoader workers and ranks: the sampler yields (item, epoch) pairs
and each item draws its randomness (A2E history frames, the renderer's reference frame) from
numpy Generator([seed, epoch, item]), never from a worker's RNG. The sampler is torch's
DistributedSampler (permutation from seed + epoch, rank r takes positions r, r + W, ...), truncated to
whole GLOBAL batches, and resumable at a batch offset; so at step k every world size W sees the same
global batch perm[kB:(k+1)B] split W ways (the DDP-equals-single-process property, tested).
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from realtalk.data import ClipData, sample_history


def _lengths(clips: Any) -> np.ndarray:
    if hasattr(clips, "n_frames"):  # ShardStore: lengths from the index, no array opened
        return np.array([clips.n_frames(i) for i in range(len(clips))], np.int64)
    return np.array([len(c) for c in clips], np.int64)


class _ClipItems(Dataset):
    """Items = (clip, position) pairs over all clips, addressed through a cumulative count (no per-item list)."""

    def __init__(self, clips: Sequence[ClipData] | Any, per_clip: np.ndarray, seed: int):
        self.clips, self.seed = clips, int(seed)
        self.keep = np.flatnonzero(per_clip > 0)
        self.cum = np.cumsum(per_clip[self.keep])
        if len(self.cum) == 0 or self.cum[-1] == 0:
            raise ValueError("no clip is long enough for one training item")

    def __len__(self) -> int:
        return int(self.cum[-1])

    def locate(self, i: int) -> tuple[int, int]:
        k = int(np.searchsorted(self.cum, i, side="right"))
        return int(self.keep[k]), int(i - (self.cum[k - 1] if k else 0))

    def rng(self, i: int, epoch: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch, i])


class A2EWindowDataset(_ClipItems):
    """Every window start t0 of every clip with more than T frames; history drawn at random outside the window
    (realtalk.data.sample_history, as in inference)."""

    def __init__(self, clips: Sequence[ClipData] | Any, T: int, n_history: int, tokens_per_frame: int, seed: int = 0):
        self.T, self.N, self.tpf = int(T), int(n_history), int(tokens_per_frame)
        n = _lengths(clips)
        super().__init__(clips, np.where(n >= T + 1, n - T + 1, 0), seed)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        i, epoch = key
        ci, t0 = self.locate(i)
        c, T, k = self.clips[ci], self.T, self.tpf
        hist = np.asarray(c.beta)[sample_history(len(c), np.arange(t0, t0 + T), self.N, self.rng(i, epoch))]
        f = lambda x: torch.from_numpy(np.array(x, np.float32))  # noqa: E731  (copy out of the memmap)
        return {"audio": f(c.audio[k * t0:k * (t0 + T)]), "alpha": f(c.alpha), "beta": f(c.beta[t0:t0 + T]),
                "history": f(hist)}


class RendererFrameDataset(_ClipItems):
    """Every frame t of every clip with at least 2 frames, paired with a random other frame r as reference;
    the masks come from the shards (computed once) or, for clips in RAM without them, from the face model."""

    def __init__(self, clips: Sequence[ClipData] | Any, face_model: Any = None, size: int = 256, seed: int = 0):
        self.fm, self.size = face_model, int(size)
        n = _lengths(clips)
        super().__init__(clips, np.where(n >= 2, n, 0), seed)

    def _masks(self, c: ClipData, t: int) -> tuple[np.ndarray, np.ndarray]:
        if c.mask is not None and c.teeth is not None:
            return np.asarray(c.mask[t]), np.asarray(c.teeth[t])
        from realtalk.losses import teeth_mask
        from realtalk.mask import lower_face_mask

        a = torch.from_numpy(np.array(c.alpha, np.float32))[None]
        b = torch.from_numpy(np.array(c.beta[t:t + 1], np.float32))
        r = torch.from_numpy(np.array(c.rho[t:t + 1], np.float32))
        with torch.no_grad():
            return (lower_face_mask(self.fm, a, b, r, size=self.size)[0, 0].numpy(),
                    teeth_mask(self.fm, a, b, r, size=self.size)[0, 0].numpy())

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        i, epoch = key
        ci, t = self.locate(i)
        c = self.clips[ci]
        r = int(self.rng(i, epoch).integers(len(c) - 1))
        r = r + 1 if r >= t else r
        img = lambda x: torch.from_numpy(np.array(x)).permute(2, 0, 1).float().div(255.0)  # noqa: E731
        f = lambda x: torch.from_numpy(np.array(x, np.float32))  # noqa: E731
        mask, teeth = self._masks(c, t)
        return {"target": img(c.crops[t]), "reference": img(c.crops[r]), "alpha": f(c.alpha), "beta": f(c.beta[t]),
                "rho": f(c.rho[t]), "ref_beta": f(c.beta[r]), "ref_rho": f(c.rho[r]), "mask": f(mask)[None],
                "teeth": f(teeth)[None]}


class ResumableSampler(DistributedSampler):
    """DistributedSampler over whole global batches, yielding (index, epoch), resumable at a batch offset."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, global_batch: int, seed: int = 0):
        if global_batch % num_replicas:
            raise ValueError(f"global batch {global_batch} is not divisible by the world size {num_replicas}")
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.global_batch, self.per_rank = global_batch, global_batch // num_replicas
        self.steps_per_epoch = len(dataset) // global_batch
        if self.steps_per_epoch == 0:
            raise ValueError(f"{len(dataset)} training items < one global batch of {global_batch}")
        self.start_batch = 0

    def set_position(self, epoch: int, start_batch: int) -> None:
        self.set_epoch(epoch)
        self.start_batch = int(start_batch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        perm = torch.randperm(len(self.dataset), generator=g)[:self.steps_per_epoch * self.global_batch].tolist()
        mine = perm[self.rank::self.num_replicas]
        for i in mine[self.start_batch * self.per_rank:]:
            yield (i, self.epoch)

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_batch) * self.per_rank

    def state(self) -> dict[str, int]:
        return {"seed": int(self.seed), "epoch": int(self.epoch), "start_batch": int(self.start_batch)}
