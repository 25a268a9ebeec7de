"""What the training stages (train-rm, ppo, dpo, rs) share: trainable-model loading, autocast,
AdamW with its warm-up + cosine schedule, the optimiser steppers (one process or DeepSpeed) and
resumable checkpoints with staged final folders.

Sits above ``segtool.models`` and below ``segtool.eval`` and ``segtool.pipeline``: it imports
errors, core, config, distributed, inputs, artifacts and models, never eval, viz, pipeline or cli.
"""
