"""One renderer training run for tests/test_realtalk_train_scale.py's DDP check, under torchrun or alone.

`python -m torch.distributed.run --standalone --nproc_per_node 2 tests/_ddp_renderer_worker.py DATA OUT BATCH
STEPS [--local-teeth]` (or plain `python tests/_ddp_renderer_worker.py ...` for one process). Not the CLI: the
renderer check needs the adversarial term on from step 0 (small's adv_start is 100, `train` has no flag
for it) and no VGG term (minutes on CPU; it is a mean over equal per-rank batches like L1, so it would add
nothing the L1 term does not check). --local-teeth restores the old per-rank teeth ratio (the mean of W
ratios) so the test can show its gate fails on it.
"""
from __future__ import annotations

import sys

import torch


def main(argv: list[str]) -> int:
    data, out, batch, steps = argv[0], argv[1], int(argv[2]), int(argv[3])
    torch.set_num_threads(1)
    from realtalk import ddp, losses
    from realtalk.audio_features import get_featurizer
    from realtalk.config import small
    from realtalk.face_models import load_default_face_model
    from realtalk.shards import ShardStore
    from realtalk.train import train_renderer
    from realtalk.train_config import TrainSettings

    if "--local-teeth" in argv:
        local = losses.masked_l1
        losses.masked_l1 = lambda x, y, m, world=None: local(x, y, m)  # each rank its own ratio
    fm, feat = load_default_face_model(), get_featurizer("logmel")
    cfg = small().with_face_model(fm.n_id, fm.n_exp, fm.n_pose).with_featurizer(feat)
    cfg.train.renderer_batch, cfg.train.log_every, cfg.train.adv_start, cfg.train.seed = batch, 1, 0, 3
    world = ddp.from_env("cpu")
    try:
        train_renderer(cfg, ShardStore(data, "train"), fm, out, steps, perceptual=False, progress=False,
                       log=lambda *a: None, world=world,
                       settings=TrainSettings(warmup_steps=2, workers=0, ema_decay=0.9))
    finally:
        ddp.shutdown(world)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
