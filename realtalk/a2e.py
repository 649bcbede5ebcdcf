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
import torch.nn.functional as F
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
        queries = self.token_codes("query", c.T).to(audio.dtype).expand(audio.shape[0], -1, -1)
        if self.inference_layers_apply(x):
            memory = x
            for layer in self.encoder.layers:
                memory = encoder_layer_inference(layer, memory)
            y = queries
            for layer in self.decoder.layers:
                y = decoder_layer_inference(layer, y, memory)
        else:
            y = self.decoder(queries, self.encoder(x))
        return self.head(self.out_norm(y))

    def inference_layers_apply(self, x: Tensor) -> bool:
        """True when the transformer runs as `encoder_layer_inference` / `decoder_layer_inference` (no autograd,
        eval, fp32/fp64, the pre-norm GELU layers built here): the same maths as nn.Transformer*Layer, minus
        its CPU fast path's separate bias/rescale pass and layout copies."""
        if torch.is_grad_enabled() or self.training or x.dtype not in (torch.float32, torch.float64):
            return False
        if torch.is_autocast_enabled(x.device.type):
            return False
        layers = [*self.encoder.layers, *self.decoder.layers]
        return self.encoder.norm is None and self.decoder.norm is None and all(
            lyr.norm_first and lyr.activation is F.gelu and lyr.self_attn.batch_first
            and lyr.self_attn._qkv_same_embed_dim and lyr.self_attn.in_proj_bias is not None for lyr in layers)

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


def _attention(h: Tensor, kv: Tensor | None, mha: nn.MultiheadAttention) -> Tensor:
    """nn.MultiheadAttention(h, kv, kv) of batch-first [B,L,d] tensors (kv None: self-attention), inference:
    one projection GEMM per input (bias fused), per-head views (no copies), the fused SDPA kernel, the output
    projection. Returns [B*L, d] (before the residual)."""
    b, n, d = h.shape
    nh = mha.num_heads
    dh = d // nh
    w, bias = mha.in_proj_weight, mha.in_proj_bias
    if kv is None:
        qkv = F.linear(h, w, bias).view(b, n, 3, nh, dh).permute(2, 0, 3, 1, 4)  # [3,B,H,L,dh] views
        q, k, v = qkv.unbind(0)
    else:
        q = F.linear(h, w[:d], bias[:d]).view(b, n, nh, dh).transpose(1, 2)
        k, v = F.linear(kv, w[d:], bias[d:]).view(b, kv.shape[1], 2, nh, dh).permute(2, 0, 3, 1, 4).unbind(0)
    o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b * n, d)
    return torch.addmm(mha.out_proj.bias, o, mha.out_proj.weight.t())


def _feed_forward(h: Tensor, layer: nn.Module) -> Tensor:
    f = F.gelu(F.linear(h, layer.linear1.weight, layer.linear1.bias))
    return torch.addmm(layer.linear2.bias, f.reshape(-1, f.shape[-1]), layer.linear2.weight.t())


def _ln(x: Tensor, norm: nn.LayerNorm) -> Tensor:
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def encoder_layer_inference(layer: nn.TransformerEncoderLayer, x: Tensor) -> Tensor:
    """A pre-norm GELU nn.TransformerEncoderLayer in eval without autograd (dropout off, no mask):
    x + SA(LN1 x), then + FF(LN2 x); residual adds in place on the fresh GEMM outputs."""
    x = _attention(_ln(x, layer.norm1), None, layer.self_attn).view_as(x).add_(x)
    return _feed_forward(_ln(x, layer.norm2), layer).view_as(x).add_(x)


def decoder_layer_inference(layer: nn.TransformerDecoderLayer, y: Tensor, memory: Tensor) -> Tensor:
    """A pre-norm GELU nn.TransformerDecoderLayer in eval without autograd and masks: y + SA(LN1 y),
    + MHA(LN2 y, memory), + FF(LN3 y)."""
    shape = (y.shape[0], y.shape[1], y.shape[2])
    y = _attention(_ln(y, layer.norm1), None, layer.self_attn).view(shape).add_(y)
    y = _attention(_ln(y, layer.norm2), memory, layer.multihead_attn).view(shape).add_(y)
    return _feed_forward(_ln(y, layer.norm3), layer).view(shape).add_(y)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
