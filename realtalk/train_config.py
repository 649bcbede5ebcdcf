"""How a stage is trained (device, precision, schedule, EMA, loader), apart from what the networks are
(realtalk/config.py). Saved in every checkpoint ("settings"). Values are ours; the paper states none."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass
class TrainSettings:
    device: str = "cpu"  # "cpu" | "cuda" | "cuda:N" (under torchrun: cuda:LOCAL_RANK)
    precision: str = "fp32"  # "fp32" | "bf16" (autocast; bf16 needs no loss scaling) | "fp16" (GradScaler)
    warmup_steps: int = 100  # linear LR warm-up from lr/warmup_steps to lr, then constant
    grad_clip: float = 1.0  # max global L2 norm of the gradients (0 = off); generator and discriminator
    ema_decay: float = 0.999  # EMA of the generator weights; effective decay min(d, (1+n)/(10+n)) at update n
    workers: int = 0  # DataLoader worker processes
    val_every: int = 0  # validate on the held-out clips every N steps (0 = only at the end, if any)
    val_frames: int = 8  # renderer validation: frames per held-out clip (evenly spaced)
    val_max_frames: int = 100  # A2E validation: first frames per held-out clip

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "TrainSettings":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (d or {}).items() if k in names})

    def validate(self) -> None:
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"precision {self.precision!r}: use fp32, bf16 or fp16")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay {self.ema_decay} must be in [0, 1)")
        if self.warmup_steps < 0 or self.grad_clip < 0:
            raise ValueError("warmup_steps and grad_clip must be >= 0")
