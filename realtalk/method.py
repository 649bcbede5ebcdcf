"""Registers the method "realtalk": a trained RealTalk checkpoint run through realtalk.inference (the optimised
realtalk.fast path: the frames scored are the frames `realtalk-bench latency` times).

kwargs: checkpoint (path to a combined checkpoint from `realtalk-bench train` / export_combined; None = the
demo checkpoint, trained on first use), device, batch_size, streaming (single-frame path), dtype (auto = bf16
on cuda, fp32 on cpu; autocast), channels_last (NHWC renderer, default on: ~30% faster on CPU, frames equal
to the contiguous eager path within fp32 rounding), cuda_graphs (auto = on for cuda), config (latency only).
fingerprint = sha256 of the checkpoint file + a hash of its config and of the options that change frames.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from harness.core.methods import Method, MethodInput, register


def _checkpoint_loads(method: "RealTalkMethod") -> tuple[bool, str]:
    """(True, "") when the checkpoint loads into the RealTalk networks, else one line naming the file and why."""
    import pickle
    import zipfile

    p = method.checkpoint
    try:
        import torch

        ck = torch.load(p, map_location="cpu", weights_only=False)
        missing = [k for k in ("config", "a2e", "renderer") if not isinstance(ck, dict) or k not in ck]
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, RuntimeError, ValueError, OSError) as exc:
        return False, f"{p}: not a loadable checkpoint ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:120]})"
    if missing:
        return False, f"{p}: not a RealTalk checkpoint (lacks {', '.join(missing)})"
    try:
        method.pipeline()
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        import re

        text = str(exc)
        first = text.splitlines()[0][:160] if text else type(exc).__name__
        counts = []
        for kind, pat in (("missing", r"Missing key\(s\) in state_dict:([^\n]*)"),
                          ("unexpected", r"Unexpected key\(s\) in state_dict:([^\n]*)")):
            m = re.search(pat, text)
            if m:
                counts.append(f"{m.group(1).count(', ') + 1} {kind}")
        detail = f"{first.rstrip(':')} {', '.join(counts)} key(s)" if counts else first
        return False, f"{p}: weights do not fit the RealTalk networks of its config ({detail})"
    return True, ""


def _flag(v: bool | str) -> bool:
    """A bool method argument, also from `--method-arg key=false` (strings)."""
    if isinstance(v, str):
        if v.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise ValueError(f"{v!r} is not a boolean (true/false)")
        return v.lower() in ("1", "true", "yes", "on")
    return bool(v)


@register
class RealTalkMethod(Method):
    name = "realtalk"
    kind = "in-process"

    def __init__(self, checkpoint: str | Path | None = None, device: str = "cpu", batch_size: int | None = None,
                 streaming: bool = False, root: str | Path | None = None, config: str | None = None,
                 channels_last: bool | str = True, dtype: str = "auto", cuda_graphs: bool | str | None = None):
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.config = config  # latency only: time random-init networks of this config (paper | small)
        # frames per renderer call; default 2 on CPU (fastest per frame here: 236 vs 297 ms at 8, one thread,
        # small config; activations of larger batches fall out of cache), 16 on a GPU. Frames do not depend on it.
        self.batch_size = int(batch_size) if batch_size else (2 if str(device).startswith("cpu") else 16)
        self.device, self.streaming, self.root = device, _flag(streaming), root
        self.channels_last = _flag(channels_last)
        on_cuda = str(device).startswith("cuda")
        self.dtype = ("bf16" if on_cuda else "fp32") if dtype in (None, "auto") else str(dtype)
        self.cuda_graphs = on_cuda if cuda_graphs in (None, "auto") else _flag(cuda_graphs)
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
        if self.checkpoint is not None:  # a corrupt file or another network's weights: refused before any clip
            return _checkpoint_loads(self)
        if self.checkpoint is None:
            from realtalk.demo_checkpoint import demo_checkpoint_path

            if not demo_checkpoint_path().exists():
                from harness.core.paths import data_root

                if not (data_root(self.root) / "README.md").exists():
                    return False, f"no demo checkpoint at {demo_checkpoint_path()} and no data to train it"
        return True, ""

    def pipeline(self):
        if self._pipe is None:
            from realtalk.inference import RealTalkPipeline

            self._pipe = RealTalkPipeline.from_checkpoint(self.checkpoint_path(), self.device,
                                                          channels_last=self.channels_last, dtype=self.dtype,
                                                          cuda_graphs=self.cuda_graphs, max_batch=self.batch_size)
        return self._pipe

    def fingerprint(self) -> str:
        if self._fp is None:
            import torch

            from harness.core.cache import file_digest

            p = self.checkpoint_path()
            cfg = torch.load(p, map_location="cpu", weights_only=False)["config"]
            # the path (realtalk.fast, random history) and the options that change frames by rounding;
            # CUDA graphs replay the same kernels, so they are not part of it
            opts = {"config": cfg, "streaming": self.streaming, "path": "fast-1", "dtype": self.dtype,
                    "channels_last": self.channels_last}
            blob = json.dumps(opts, sort_keys=True).encode()
            self._fp = f"{file_digest(p)[:16]}-{hashlib.sha256(blob).hexdigest()[:8]}"
        return self._fp

    def generate(self, inp: MethodInput) -> np.ndarray:
        return self.pipeline().generate(inp.source_frames, inp.audio, inp.n_frames, fps=inp.fps,
                                        source_path=inp.source_video, streaming=self.streaming,
                                        batch_size=self.batch_size, sample_rate=inp.sample_rate,
                                        source_timestamps=inp.source_timestamps)

    def generate_chunks(self, inp: MethodInput, size: int) -> Iterator[np.ndarray]:
        """generate() in chunks (RealTalkPipeline.generate_chunks: the same frames), for a long clip decoded in
        chunks (harness.evaluate streams it and does not cache its frames)."""
        return self.pipeline().generate_chunks(inp.source_frames, inp.audio, inp.n_frames, size, fps=inp.fps,
                                               source_path=inp.source_video, streaming=self.streaming,
                                               batch_size=self.batch_size, source_timestamps=inp.source_timestamps)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(checkpoint=str(self.checkpoint_path()), device=self.device, streaming=self.streaming,
                 channels_last=self.channels_last, dtype=self.dtype, cuda_graphs=self.cuda_graphs,
                 batch_size=self.batch_size)
        return d

    def latency_stages(self, *, device: str = "cpu", batch: int = 1, dtype: str = "fp32", compile: bool = False,
                       cuda_graphs: bool = False) -> list[Any]:
        """a2e / mask / renderer / paste stages (realtalk.latency_stages: the same RealTalkPipeline code that
        writes the scored frames, with this method's channels_last); with config=NAME, random-init networks
        of that config (latency does not depend on weight values)."""
        from realtalk.latency_stages import latency_stages_for_method

        return latency_stages_for_method(self, device=device, batch=batch, dtype=dtype, compile=compile,
                                         cuda_graphs=cuda_graphs)
