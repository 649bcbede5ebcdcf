"""A seed ensemble of audio-to-expression networks (ours, not in the paper): the mean of K AudioToExpression
networks' predicted expressions, each trained by the same command with seeds seed, seed+1, ..., seed+K-1.

Why: on the demo split's ~2 minutes of training speech, how a single A2E moves the lips depends on its seed
nearly as much as on the audio (8 phones+logmel seeds: held-out mouth-opening r 0.26-0.41 of the predicted
expressions); averaging keeps what the members agree on (README "The RealTalk demo checkpoint").

Same interface as AudioToExpression (forward(audio, alpha, history), cfg, n_tokens), so the inference path,
the FLOP counter and CUDA graphs take it unchanged. Its state_dict keys are "members.<k>.<AudioToExpression
key>"; `a2e_from_state` builds the right module from a checkpoint's "a2e" weights.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from realtalk.a2e import AudioToExpression
from realtalk.config import A2EConfig

_MEMBER_KEY = re.compile(r"members\.(\d+)\.")


class A2EEnsemble(nn.Module):
    """K AudioToExpression members of one config; forward is the mean of their outputs."""

    def __init__(self, cfg: A2EConfig, k: int):
        super().__init__()
        if k < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {k}")
        self.cfg = cfg
        self.members = nn.ModuleList(AudioToExpression(cfg) for _ in range(k))

    def n_tokens(self) -> int:
        return self.members[0].n_tokens()

    def forward(self, audio: Tensor, alpha: Tensor, history: Tensor | None = None) -> Tensor:
        out = self.members[0](audio, alpha, history)
        for m in self.members[1:]:
            out = out + m(audio, alpha, history)
        return out / len(self.members)


def ensemble_size(state: Mapping[str, Any]) -> int:
    """K for an A2EEnsemble state_dict, 0 for a single AudioToExpression's."""
    idx = {int(m.group(1)) for k in state if (m := _MEMBER_KEY.match(k))}
    if idx and idx != set(range(len(idx))):
        raise ValueError(f"ensemble members {sorted(idx)} are not 0..{len(idx) - 1}")
    return len(idx)


def a2e_from_state(cfg: A2EConfig, state: Mapping[str, Any]) -> nn.Module:
    """The A2E module (single or ensemble) whose weights `state` holds, loaded (strict keys)."""
    k = ensemble_size(state)
    model: nn.Module = A2EEnsemble(cfg, k) if k else AudioToExpression(cfg)
    model.load_state_dict(state)
    return model


def ensemble_state(member_states: list[Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """An A2EEnsemble state_dict from its members' AudioToExpression state_dicts (in member order)."""
    if len(member_states) < 2:
        raise ValueError(f"an ensemble needs at least 2 members, got {len(member_states)}")
    keys = list(member_states[0])
    for i, s in enumerate(member_states[1:], 1):
        if list(s) != keys or any(s[k].shape != member_states[0][k].shape for k in keys):
            raise ValueError(f"ensemble member {i} has other weights than member 0 (a different config)")
    return {f"members.{i}.{k}": torch.as_tensor(v) for i, s in enumerate(member_states) for k, v in s.items()}
