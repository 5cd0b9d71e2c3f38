"""training/ablation/*.json: every row parses as a trainer recipe with the same budget, and its drift
objective runs two steps on CPU under bf16 autocast (tiny UNet, a small random encoder of the shipped
encoder's architecture, 2 images per class)."""
import dataclasses
import glob
import os

import pytest
import torch

from driftin.config import preset
from driftin.drift.objective import DriftLoss
from driftin.train import StepRandom, parse_args
from driftin.unet import UNet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS = sorted(glob.glob(os.path.join(ROOT, "training", "ablation", "*.json")))


def test_rows_share_one_budget():
    assert len(ROWS) >= 8
    cfgs = {os.path.basename(p)[:-5]: parse_args(["--config", p])[0] for p in ROWS}
    for name, c in cfgs.items():
        assert c.out == f"runs/ablation/{name}" and c.objective == "drift"
        assert (c.seed, c.steps, c.lr, c.warmup) == (cfgs["01_fixes"].seed, cfgs["01_fixes"].steps,
                                                     cfgs["01_fixes"].lr, cfgs["01_fixes"].warmup)
        assert c.batch_size == (1280 if name == "07_group128" else 640)
    assert cfgs["06_styles"].model_config().style_tokens == 32


@pytest.mark.parametrize("path", ROWS, ids=lambda p: os.path.basename(p)[:-5])
def test_row_objective_runs_two_steps(path, tmp_path):
    from driftin.classifier import Encoder, save_classifier
    cfg = parse_args(["--config", path])[0]
    assert cfg.drift.encoder == "cifar"
    torch.manual_seed(1)
    save_classifier(Encoder(widths=(8, 16, 16, 32)), tmp_path / "enc")
    mc = cfg.model_config()
    torch.manual_seed(0)
    net = UNet(preset("tiny", num_classes=mc.num_classes, guidance_input=mc.guidance_input, zero_init_out=False,
                      style_tokens=mc.style_tokens, style_codebook=mc.style_codebook))
    obj = DriftLoss(dataclasses.replace(cfg.drift, impl="lean", encoder_weights=str(tmp_path / "enc")), "cpu", num_classes=10)
    g = torch.Generator().manual_seed(0)
    obj.attach_data(torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(40) % 10)
    x = torch.rand(20, 3, 32, 32, generator=g) * 2 - 1
    y = torch.arange(10).repeat_interleave(2)
    for step in range(2):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, logs = obj(net, {"x": x, "y": y, "rng": StepRandom(0, step, "cpu")})
        assert torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
