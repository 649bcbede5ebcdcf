"""Metrics: one registry (metrics.base.REGISTRY), one module per metric."""

# Modules whose import registers a metric. Add one line per metric module.
METRIC_MODULES: list[str] = [
    "metrics.lmd",
    "metrics.ssim",
    "metrics.psnr",
    "metrics.fid",
    "metrics.lpips_metric",
    "metrics.csim",
    "metrics.syncnet_lse",
    "metrics.av_sync",
    "metrics.mouth_corr",
]
