"""Registers the method "realtalk": a trained RealTalk checkpoint run through realtalk.inference.

kwargs: checkpoint (path to a combined checkpoint from `realtalk-bench train` / export_combined; None = the
demo checkpoint, trained on first use), device, batch_size, streaming (single-frame path).
fingerprint = sha256 of the checkpoint file + a hash of its config and of the inference options.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from harness.methods import Method, MethodInput, register


@register
class RealTalkMethod(Method):
    name = "realtalk"
    kind = "in-process"

    def __init__(self, checkpoint: str | Path | None = None, device: str = "cpu", batch_size: int = 8,
                 streaming: bool = False, root: str | Path | None = None):
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.device, self.batch_size, self.streaming, self.root = device, batch_size, streaming, root
        self._pipe = None
        self._fp: str | None = None

    def checkpoint_path(self) -> Path:
        if self.checkpoint is not None:
            return self.checkpoint
        from realtalk.demo_checkpoint import ensure_demo_checkpoint

        return ensure_demo_checkpoint(self.root)

    def availability(self) -> tuple[bool, str]:
        if self.checkpoint is not None and not self.checkpoint.exists():
            return False, f"checkpoint {self.checkpoint} not found"
        if self.checkpoint is None:
            from realtalk.demo_checkpoint import demo_checkpoint_path

            if not demo_checkpoint_path().exists():
                from harness.paths import data_root

                if not (data_root(self.root) / "README.md").exists():
                    return False, f"no demo checkpoint at {demo_checkpoint_path()} and no data to train it"
        return True, ""

    def pipeline(self):
        if self._pipe is None:
            from realtalk.inference import RealTalkPipeline

            self._pipe = RealTalkPipeline.from_checkpoint(self.checkpoint_path(), self.device)
        return self._pipe

    def fingerprint(self) -> str:
        if self._fp is None:
            import torch

            from realtalk.inference import checkpoint_sha256

            p = self.checkpoint_path()
            cfg = torch.load(p, map_location="cpu", weights_only=False)["config"]
            blob = json.dumps({"config": cfg, "streaming": self.streaming}, sort_keys=True).encode()
            self._fp = f"{checkpoint_sha256(p)[:16]}-{hashlib.sha256(blob).hexdigest()[:8]}"
        return self._fp

    def generate(self, inp: MethodInput) -> np.ndarray:
        return self.pipeline().generate(inp.source_frames, inp.audio, inp.n_frames, fps=inp.fps,
                                        source_path=inp.source_video, streaming=self.streaming,
                                        batch_size=self.batch_size, sample_rate=inp.sample_rate)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(checkpoint=str(self.checkpoint_path()), device=self.device, streaming=self.streaming)
        return d

    def latency_stages(self, *, device: str = "cpu", batch: int = 1, dtype: str = "fp32", compile: bool = False,
                       cuda_graphs: bool = False) -> list[Any]:
        """A2E (one 16-frame window) and renderer (batch frames, cached reference) on random inputs."""
        import torch

        from harness.latency import LatencyStage
        from realtalk.inference import RealTalkPipeline

        pipe: RealTalkPipeline = self.pipeline()
        a2e, ren, cfg = pipe.a2e.to(device), pipe.renderer.to(device), pipe.cfg
        dt = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
        if compile:
            a2e_run, ren_run = torch.compile(a2e), torch.compile(ren)
        else:
            a2e_run, ren_run = a2e, ren

        def a2e_inputs():
            c = cfg.a2e
            return (torch.randn(batch, c.n_audio_tokens, c.audio_dim, device=device),
                    torch.randn(batch, c.n_id, device=device), torch.randn(batch, c.n_history, c.n_exp, device=device))

        def ren_inputs():
            c = cfg.renderer
            s = c.size
            img = torch.rand(batch, 3, s, s, device=device).to(memory_format=torch.channels_last)
            with torch.no_grad():
                feats = ren.encode_reference(img[:1])
            return (img, torch.ones(batch, 1, s, s, device=device), torch.randn(batch, c.n_id, device=device),
                    torch.randn(batch, c.n_exp, device=device), torch.randn(batch, c.n_pose, device=device), feats)

        def autocast():
            return torch.autocast(device_type=torch.device(device).type, dtype=dt, enabled=dtype != "fp32")

        def run_a2e(x):
            with torch.no_grad(), autocast():
                return a2e_run(*x)

        def run_ren(x):
            img, m, a, b, r, f = x
            with torch.no_grad(), autocast():
                return ren_run(img, None, m, a, b, r, ref_feats=f)

        return [LatencyStage("a2e", a2e_inputs, run_a2e, frames_per_call=batch * cfg.a2e.T, module=a2e,
                             notes="one 16-frame window per batch item"),
                LatencyStage("renderer", ren_inputs, run_ren, frames_per_call=batch, module=ren,
                             notes="reference features cached (first frame), channels_last")]
