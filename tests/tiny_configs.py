"""Tiny seeded training settings the CPU tests share (a 2-class `tiny` UNet, fp32, a step or two)."""
TINY = dict(preset="tiny", batch_size=8, num_classes=2, bf16=False, warmup=1, log_every=1, sample_every=0, lr=1e-3)
