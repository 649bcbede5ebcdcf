"""The paper's ablations (RealTalk, arXiv 2406.18284, Tables 5-7) as named config variants.

Each variant is the full model with a few config fields changed; `variant_config` applies them to a preset.
Table 5 changes only the A2E (so its variants share one renderer), Tables 6 and 7 only the renderer (one
shared A2E). The paper's renderer parameter counts (Table 7) are kept next to ours: `parameter_counts`
builds the renderers on the meta device (no memory, no init cost) and counts them.

Paper counts: 69.24M ours-full, 82.94M flow-based, 98.79M deformation-based, 52.53M / 85.96M with 1 / 3
residual blocks per FIA module. The paper gives no count for Tables 5 and 6 (they change no renderer
weights: the A2E switches only drop tokens, the naive mask has no parameters).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from realtalk.config import RealTalkConfig


@dataclass(frozen=True)
class Variant:
    key: str  # file-safe name, e.g. "no_shape"
    label: str  # the row label of the paper's table
    stage: str  # the stage this variant changes: "a2e" | "renderer"
    a2e: dict[str, Any] = field(default_factory=dict)  # A2EConfig overrides
    renderer: dict[str, Any] = field(default_factory=dict)  # RendererConfig overrides
    paper_params_m: float | None = None  # renderer parameters the paper reports (millions)
    full: bool = False  # the paper's full model ("Ours")


TABLES: dict[int, list[Variant]] = {
    5: [
        Variant("no_shape", "w/o shape", "a2e", a2e={"use_shape": False}),
        Variant("no_history", "w/o history", "a2e", a2e={"use_history": False}),
        Variant("full", "Ours", "a2e", full=True),
    ],
    6: [
        Variant("mask_naive", "Naive mask", "renderer", renderer={"mask": "naive"}),
        Variant("full", "Learnable mask (Ours)", "renderer", renderer={"mask": "learnable"}, full=True),
    ],
    7: [
        Variant("flow", "Flow-based", "renderer", renderer={"reference_module": "flow"}, paper_params_m=82.94),
        Variant("deform", "Deformation-based", "renderer", renderer={"reference_module": "deform"},
                paper_params_m=98.79),
        Variant("blocks1", "FIA (blocks=1)", "renderer", renderer={"fia_blocks": 1}, paper_params_m=52.53),
        Variant("full", "FIA (blocks=2, Ours)", "renderer", renderer={"fia_blocks": 2}, paper_params_m=69.24,
                full=True),
        Variant("blocks3", "FIA (blocks=3)", "renderer", renderer={"fia_blocks": 3}, paper_params_m=85.96),
    ],
}

TITLES = {5: "Table 5: A2E ablation (shape and historical expressions)",
          6: "Table 6: mask ablation (naive lower-half vs learnable 3D-prior mask)",
          7: "Table 7: FIA ablation (reference module and residual blocks per FIA module)"}


def get_table(table: int) -> list[Variant]:
    if table not in TABLES:
        raise KeyError(f"no ablation table {table}; the paper's are {sorted(TABLES)}")
    return TABLES[table]


def variant_config(cfg: RealTalkConfig, v: Variant, **extra_renderer: Any) -> RealTalkConfig:
    """cfg with the variant's overrides (plus any extra renderer fields, e.g. from the command line)."""
    return dataclasses.replace(cfg, name=f"{cfg.name}+{v.key}", a2e=dataclasses.replace(cfg.a2e, **v.a2e),
                               renderer=dataclasses.replace(cfg.renderer, **{**v.renderer, **extra_renderer}))


def count_renderer(cfg: RealTalkConfig) -> int:
    """Renderer parameters of a config, built on the meta device (shapes only)."""
    import torch

    from realtalk.a2e import count_parameters
    from realtalk.renderer import Renderer

    with torch.device("meta"):
        return count_parameters(Renderer(cfg.renderer))


def count_a2e(cfg: RealTalkConfig) -> int:
    import torch

    from realtalk.a2e import AudioToExpression, count_parameters

    with torch.device("meta"):
        return count_parameters(AudioToExpression(cfg.a2e))


def parameter_counts(cfg: RealTalkConfig, table: int) -> dict[str, dict[str, Any]]:
    """{variant key: {"label", "renderer", "a2e", "paper_renderer"}} (counts in parameters)."""
    out = {}
    for v in get_table(table):
        c = variant_config(cfg, v)
        out[v.key] = {"label": v.label, "renderer": count_renderer(c), "a2e": count_a2e(c),
                      "paper_renderer": None if v.paper_params_m is None else int(round(v.paper_params_m * 1e6))}
    return out
