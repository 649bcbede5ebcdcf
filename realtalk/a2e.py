"""Audio-to-expression transformer (RealTalk Sec. 3.1): audio tokens + shape alpha + N past expressions
-> cross-modal self-attention memory Z -> T zero queries decoded with temporal cross-attention -> beta.

Token sequence (use_shape/use_history are the Table 5 ablation switches):
    [ FC(audio) x l=tpf*T | FC(alpha) x 1 | FC(history) x N ]  + time code + learned modality embedding
Time codes are time-consistent (FaceFormer's periodic sinusoid of (time mod period), with time in video
frames): audio token i sits at i / tokens_per_frame, decoder query t at t, so a query and the audio of its
own frame share a time code; history token j (the N expressions, in time order) at j, the alpha token has no
time code. The period (ppe_period) is longer than the window, so no two audio tokens of a window share a
code (tested); the modality embedding (audio / shape / history / query, ours) tells tokens of equal time
apart. The decoder's T queries are zeros + code, so they differ only by position. The decoder has no causal
mask: the window is predicted at once, not autoregressively within the window (ours; the paper does not
say). Attention runs through nn.MultiheadAttention, which takes the fused SDPA kernels.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

from realtalk.config import A2EConfig


class PeriodicPositionalEncoding(nn.Module):
    """FaceFormer's PPE: sinusoidal encoding of (time mod period); time may be fractional (audio tokens).

    forward(x) adds the codes of integer positions 0..L-1 (FaceFormer's layout); codes(times) gives the
    codes of arbitrary times [L] -> [L, d]."""

    def __init__(self, d_model: int, period: float):
        super().__init__()
        self.period = float(period)
        div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
        self.register_buffer("div", div, persistent=False)
        self.d_model = d_model

    def codes(self, times: Tensor) -> Tensor:
        pos = torch.remainder(times.float(), self.period).unsqueeze(1)
        pe = torch.zeros(len(times), self.d_model, device=self.div.device)
        pe[:, 0::2] = torch.sin(pos * self.div)
        pe[:, 1::2] = torch.cos(pos * self.div)
        return pe

    def forward(self, x: Tensor) -> Tensor:
        t = torch.arange(x.shape[1], device=self.div.device)
        return x + self.codes(t).unsqueeze(0).to(x.dtype)


MODALITIES = {"audio": 0, "shape": 1, "history": 2, "query": 3}


class AudioToExpression(nn.Module):
    """predict(audio [B,2T,A], alpha [B,n_id], history [B,N,n_exp]) -> beta [B,T,n_exp]."""

    def __init__(self, cfg: A2EConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.audio_fc = nn.Linear(cfg.audio_dim, d)
        self.shape_fc = nn.Linear(cfg.n_id, d) if cfg.use_shape else None
        self.history_fc = nn.Linear(cfg.n_exp, d) if cfg.use_history else None
        if cfg.ppe_period <= cfg.T:
            raise ValueError(f"ppe_period {cfg.ppe_period} must exceed the window T={cfg.T} (codes would alias)")
        self.ppe = PeriodicPositionalEncoding(d, cfg.ppe_period)
        self.modality = nn.Embedding(len(MODALITIES), d)
        nn.init.normal_(self.modality.weight, std=0.02)
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
        tokens, codes = [self.audio_fc(audio)], [self.token_codes("audio", c.n_audio_tokens)]
        if self.shape_fc is not None:
            tokens.append(self.shape_fc(alpha).unsqueeze(1))
            codes.append(self.token_codes("shape", 1))
        if self.history_fc is not None:
            if history is None or history.shape[1] != c.n_history:
                raise ValueError(f"history must be [B,{c.n_history},{c.n_exp}]")
            tokens.append(self.history_fc(history))
            codes.append(self.token_codes("history", c.n_history))
        x = torch.cat(tokens, dim=1) + torch.cat(codes).to(audio.dtype)
        memory = self.encoder(x)
        queries = self.token_codes("query", c.T).to(audio.dtype).expand(audio.shape[0], -1, -1)
        y = self.decoder(queries, memory)
        return self.head(self.out_norm(y))

    def token_times(self, kind: str, n: int) -> Tensor | None:
        """Time (video frames, relative to the window start) of each of n tokens of a kind; None = no time."""
        dev = self.ppe.div.device
        if kind == "audio":
            return torch.arange(n, device=dev, dtype=torch.float32) / self.cfg.tokens_per_frame
        if kind in ("query", "history"):
            return torch.arange(n, device=dev, dtype=torch.float32)
        return None

    def token_codes(self, kind: str, n: int) -> Tensor:
        """[n, d]: time code (if the kind has a time) + the kind's learned modality embedding."""
        emb = self.modality.weight[MODALITIES[kind]].expand(n, -1)
        t = self.token_times(kind, n)
        return emb if t is None else emb + self.ppe.codes(t)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
