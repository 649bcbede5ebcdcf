"""Metrics: one registry (metrics.base.REGISTRY), one module per metric."""

# Modules whose import registers a metric. Add one line per metric module.
METRIC_MODULES: list[str] = [
]
