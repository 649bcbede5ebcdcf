"""Audio-to-expression transformer (RealTalk Sec. 3.1): audio tokens + shape alpha + N past expressions
-> cross-modal self-attention memory Z -> T zero queries decoded with temporal cross-attention -> beta.

Token sequence (use_shape/use_history are the Table 5 ablation switches):
    [ FC(audio) x l=2T | FC(alpha) x 1 | FC(history) x N ]  + periodic positional encoding (FaceFormer PPE)
The decoder's T queries are zeros + PPE (so they differ only by position). The decoder has no causal
mask: the window is predicted at once, not autoregressively within the window (ours; the paper does
not say). Attention runs through nn.MultiheadAttention, which takes the fused SDPA kernels.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

from realtalk.config import A2EConfig


class PeriodicPositionalEncoding(nn.Module):
    """FaceFormer's PPE: sinusoidal encoding of (position mod period), repeated along the sequence."""

    def __init__(self, d_model: int, period: int, max_len: int = 512):
        super().__init__()
        pe = torch.zeros(period, d_model)
        pos = torch.arange(period, dtype=torch.float32).unsqueeze(1)
        div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div)
        reps = max_len // period + 1
        self.register_buffer("pe", pe.repeat(reps, 1).unsqueeze(0), persistent=False)  # [1, max_len', d]

    def forward(self, x: Tensor) -> Tensor:
        return x + self.pe[:, : x.shape[1]].to(x.dtype)


class AudioToExpression(nn.Module):
    """predict(audio [B,2T,A], alpha [B,n_id], history [B,N,n_exp]) -> beta [B,T,n_exp]."""

    def __init__(self, cfg: A2EConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.audio_fc = nn.Linear(cfg.audio_dim, d)
        self.shape_fc = nn.Linear(cfg.n_id, d) if cfg.use_shape else None
        self.history_fc = nn.Linear(cfg.n_exp, d) if cfg.use_history else None
        self.ppe = PeriodicPositionalEncoding(d, cfg.ppe_period)
        enc_layer = nn.TransformerEncoderLayer(d, cfg.n_heads, cfg.ff_mult * d, cfg.dropout, batch_first=True,
                                               norm_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(enc_layer, cfg.n1, enable_nested_tensor=False)
        dec_layer = nn.TransformerDecoderLayer(d, cfg.n_heads, cfg.ff_mult * d, cfg.dropout, batch_first=True,
                                               norm_first=True, activation="gelu")
        self.decoder = nn.TransformerDecoder(dec_layer, cfg.n2)
        self.out_norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.n_exp)
        nn.init.zeros_(self.head.weight)  # start at beta = 0 (mean expression): stable first steps
        nn.init.zeros_(self.head.bias)

    def n_tokens(self) -> int:
        c = self.cfg
        return c.n_audio_tokens + (1 if c.use_shape else 0) + (c.n_history if c.use_history else 0)

    def forward(self, audio: Tensor, alpha: Tensor, history: Tensor | None = None) -> Tensor:
        c = self.cfg
        if audio.shape[1] != c.n_audio_tokens:
            raise ValueError(f"audio has {audio.shape[1]} tokens, expected l = {c.n_audio_tokens}")
        tokens = [self.audio_fc(audio)]
        if self.shape_fc is not None:
            tokens.append(self.shape_fc(alpha).unsqueeze(1))
        if self.history_fc is not None:
            if history is None or history.shape[1] != c.n_history:
                raise ValueError(f"history must be [B,{c.n_history},{c.n_exp}]")
            tokens.append(self.history_fc(history))
        x = self.ppe(torch.cat(tokens, dim=1))
        memory = self.encoder(x)
        queries = self.ppe(audio.new_zeros(audio.shape[0], c.T, c.d_model))
        y = self.decoder(queries, memory)
        return self.head(self.out_norm(y))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
