"""The ground every package stands on: media decoding, face tracking, splits, the cache, weight files,
errors, the method and latency contracts, plugin sources. It imports nothing from the rest of harness nor
from metrics/, realtalk/, baselines/ or reports/; they import from it, and the orchestration on top
(harness.runner, harness.evaluate, harness.executors, harness.cli) imports them all."""
