"""Wav2Lip's timed region for `realtalk-bench latency`: the generator on B faces.

Stage 'generator' [B frames per call]: mel windows [B,1,80,16] + 6-channel faces [B,6,96,96] (lower-half
masked crop + reference) -> [B,3,96,96]. Same dtype/channels_last/compile/CUDA-graph options as RealTalk
(realtalk.fast). With the official checkpoint absent, a randomly initialised generator of the same
architecture is timed (latency does not depend on weight values; the stage notes say which).
"""
from __future__ import annotations

from typing import Any

import torch

from harness.core.errors import BenchError
from harness.core.latency import LatencyStage, count_flops
from realtalk.fast import CudaGraphRunner, autocast, compile_module, guard_compiled

IMG_SIZE = 96


def wav2lip_stages(model: torch.nn.Module, *, device: str = "cpu", batch: int = 1, dtype: str = "fp32",
                   compile: bool = False, cuda_graphs: bool = False, weights_note: str = "") -> list[LatencyStage]:
    dev = torch.device(device)
    if cuda_graphs and dev.type != "cuda":
        raise BenchError("CUDA graphs need a cuda device")
    model = model.to(dev).eval().to(memory_format=torch.channels_last)
    fn: Any = model
    if compile:
        mode = "reduce-overhead" if cuda_graphs else None
        fn = guard_compiled(compile_module(model, mode, dev), dev)
    gen = torch.Generator().manual_seed(0)

    def inputs() -> tuple[torch.Tensor, torch.Tensor]:
        mel = torch.randn(batch, 1, 80, 16, generator=gen).to(dev)
        faces = torch.rand(batch, 6, IMG_SIZE, IMG_SIZE, generator=gen).to(dev)
        faces[:, :3, IMG_SIZE // 2:] = 0  # the lower half of the target face is masked
        return mel, faces.contiguous(memory_format=torch.channels_last)

    def call(mel: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        with autocast(dev, dtype):
            return fn(mel, faces)

    graph: dict[str, CudaGraphRunner] = {}

    def run(x: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        if cuda_graphs and not compile:
            if "g" not in graph:
                graph["g"] = CudaGraphRunner(call, x)
            return graph["g"](*x)
        return call(*x)

    how = f"{dtype}, channels_last" + (", torch.compile" if compile else "") + (", CUDA graphs" if cuda_graphs else "")
    return [LatencyStage("generator", inputs, run, frames_per_call=batch, module=model,
                         flops_per_call=lambda x: count_flops(lambda: model(*x)) or 0,
                         notes=f"96x96 faces + 80x16 mel windows; {how}" + (f"; {weights_note}" if weights_note else ""))]


def latency_stages_for_method(method: Any, *, device: str = "cpu", batch: int = 1, dtype: str = "fp32",
                              compile: bool = False, cuda_graphs: bool = False) -> list[LatencyStage]:
    """Stages for a Wav2LipMethod: its checkpoint when available, else a random-init generator."""
    from baselines.wav2lip.model import Wav2Lip

    ok, _ = method.availability()
    if ok:
        model, note = method.model(), f"weights: {method.checkpoint}"
    else:
        torch.manual_seed(0)
        model, note = Wav2Lip(), "weights: random init (official checkpoint absent; latency does not depend on weights)"
    return wav2lip_stages(model, device=device, batch=batch, dtype=dtype, compile=compile, cuda_graphs=cuda_graphs,
                          weights_note=note)
