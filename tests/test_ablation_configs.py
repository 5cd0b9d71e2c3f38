"""training/ablation/rows.txt: every row is the shipped drift recipe plus its flags, parses as a trainer recipe with
the recipe's budget, changes exactly the keys it names, and its drift objective runs two steps on CPU under bf16
autocast (tiny UNet, a small random encoder of the shipped encoder's architecture, 2 images per class)."""
import dataclasses
import os

import pytest
import torch

from driftin.config import preset
from driftin.drift.objective import DriftLoss
from driftin.train import StepRandom, parse_args
from driftin.unet import UNet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(ROOT, "training", "drift_cifar10.json")


def read_rows() -> dict[str, list[str]]:
    """name -> flags, as scripts/gpu_lease.sh's ablation phase reads them (bash `read row flags`: whitespace-split)."""
    rows = {}
    with open(os.path.join(ROOT, "training", "ablation", "rows.txt")) as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                name, *flags = line.split()
                assert name not in rows, f"row {name} twice"
                rows[name] = flags
    return rows


ROWS = read_rows()


def changed_keys(a, b, prefix="") -> set[str]:
    out = set()
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if dataclasses.is_dataclass(x):
            out |= changed_keys(x, y, f.name + ".")
        elif x != y:
            out.add(prefix + f.name)
    return out


def test_rows_are_the_recipe_plus_their_flags():
    assert len(ROWS) >= 9 and ROWS["01_recipe"] == []
    recipe = parse_args(["--config", RECIPE])[0]
    expected = {"00_pre19": {"drift.rms_eps", "drift.scale_self_pairs", "drift.field_autocast"},
                "02_paper_groups": {"drift.patch_stats", "drift.max_locations", "drift.norm_scope", "drift.loss_reduce"},
                "03_paper_pixels": {"drift.pixel_mode"},
                "04_paper_cfg": {"drift.cfg_max", "drift.cfg_alpha", "drift.cfg_scale_weighted", "drift.uncond_source"},
                # (its --drift-cfg-alpha-power 3.0 restates the default: the paper's p(alpha) ~ alpha^-3)
                "05_queues": {"drift.pos_queue", "drift.uncond_queue", "drift.uncond_source"},  # (queue_push: default)
                "06_styles": {"preset"}, "07_group128": {"batch_size"}, "08_small_encoder": {"drift.encoder_weights"}}
    for name, flags in ROWS.items():
        cfg = parse_args(["--config", RECIPE, *flags])[0]
        assert changed_keys(cfg, recipe) == expected.get(name, set()), name
    assert parse_args(["--config", RECIPE, *ROWS["06_styles"]])[0].model_config().style_tokens == 32
    assert parse_args(["--config", RECIPE, *ROWS["02_paper_groups"]])[0].drift.patch_stats == "patches"


@pytest.mark.parametrize("name", sorted(ROWS))
def test_row_objective_runs_two_steps(name, tmp_path):
    from driftin.classifier import Encoder, save_classifier
    cfg = parse_args(["--config", RECIPE, *ROWS[name]])[0]
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
