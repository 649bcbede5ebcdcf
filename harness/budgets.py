"""Latency budgets: method/stage -> ms per frame on a named device class.

Absolute budgets apply on GPUs. On CPU a budget is a ratio to a reference operation timed in the same
run (harness.core.latency.reference_op_ms), because shared CPUs drift.

budgets.yaml:
    device_classes:
      h100: {match: "H100"}           # substring of torch.cuda.get_device_name()
      cpu:  {match: "cpu"}            # the literal device string "cpu"
    budgets:
      - {method: realtalk, stage: renderer, device_class: h100, ms_per_frame: 3.0, batch: 1, dtype: bf16}
      - {method: realtalk, stage: a2e, device_class: cpu, ratio: 40, batch: 1, method_args: {config: small}}
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.core.errors import BenchError


@dataclass(frozen=True)
class Budget:
    method: str
    stage: str
    device_class: str
    ms_per_frame: float | None = None  # absolute (GPU)
    ratio: float | None = None  # CPU: ms_per_frame <= ratio * reference_op_ms
    batch: int = 1
    dtype: str = "fp32"
    frames: int = 16
    method_args: dict[str, Any] | None = None  # keyword arguments for the method (e.g. {config: paper})

    def limit_ms(self, reference_ms: float | None) -> float:
        if self.ms_per_frame is not None:
            return self.ms_per_frame
        if self.ratio is None or reference_ms is None:
            raise BenchError(f"budget {self.method}/{self.stage} has neither ms_per_frame nor a reference time")
        return self.ratio * reference_ms


@dataclass(frozen=True)
class BudgetFile:
    device_classes: dict[str, str]  # class -> match substring
    budgets: list[Budget]

    def device_class(self, device: str, device_name: str) -> str | None:
        for cls, match in self.device_classes.items():
            if match == "cpu" and device == "cpu":
                return cls
            if match != "cpu" and device.startswith("cuda") and match.lower() in device_name.lower():
                return cls
        return None


def load_budgets(path: str | Path) -> BudgetFile:
    p = Path(path)
    try:
        raw: dict[str, Any] = yaml.safe_load(p.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise BenchError(f"cannot read budget file: {exc}", p) from exc
    classes = {k: str((v or {}).get("match", k)) for k, v in (raw.get("device_classes") or {}).items()}
    budgets = []
    for i, b in enumerate(raw.get("budgets") or []):
        try:
            b = dict(b)
            for key in ("ms_per_frame", "ratio"):  # YAML 1.1 reads "1e-3" as a string
                if b.get(key) is not None:
                    b[key] = float(b[key])
            budget = Budget(**b)
        except (TypeError, ValueError) as exc:
            raise BenchError(f"budget #{i} is malformed: {exc}", p) from exc
        if budget.method_args is not None and not isinstance(budget.method_args, dict):
            raise BenchError(f"budget #{i}: method_args must be a mapping", p)
        if budget.device_class not in classes:
            raise BenchError(f"budget #{i} names unknown device class {budget.device_class!r}", p)
        if (budget.ms_per_frame is None) == (budget.ratio is None):
            raise BenchError(f"budget #{i} needs exactly one of ms_per_frame / ratio", p)
        budgets.append(budget)
    return BudgetFile(classes, budgets)
