"""The drift objective on CUDA makes no host sync in a step: its random draws are made on the device
(a CPU draw copied over would be a blocking host-to-device copy, i.e. a stream sync, every step).

python -m pytest -q tests/test_objective_gpu.py      (skipped without CUDA)
"""
import pytest
import torch

from driftin.config import preset
from driftin.drift.objective import DriftConfig, DriftLoss
from driftin.train import StepRandom
from driftin.unet import UNet

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

G, PER = 10, 8
CONFIGS = {
    "batch-uncond": dict(cfg_max=2.0, uncond_per_group=4),
    "queues": dict(cfg_max=3.0, pos_queue=16, queue_push=4, pos_per_group=6, uncond_source="separate",
                   uncond_queue=50, uncond_per_group=4, cfg_alpha="power", cfg_scale_weighted=True),
    "dataset-uncond": dict(cfg_max=2.0, uncond_source="separate", uncond_per_group=4, norm_scope="map",
                           loss_reduce="sum"),
}


def _batch(step):
    g = torch.Generator("cuda").manual_seed(step)
    x = torch.rand(G * PER, 3, 32, 32, generator=g, device="cuda") * 2 - 1
    y = torch.arange(G, device="cuda").repeat_interleave(PER)
    return {"x": x, "y": y, "rng": StepRandom(0, step, "cuda")}


def _steps(cfg, data_device, steps=3, check_from=2):
    """Losses of steps 0..steps-1 (forward and backward); from step check_from on any host sync raises."""
    torch.manual_seed(0)
    net = UNet(preset("tiny", num_classes=G, guidance_input=True, zero_init_out=False)).cuda()
    obj = DriftLoss(cfg, "cuda", num_classes=G)
    images = torch.randint(0, 256, (100, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    obj.attach_data(images.to(data_device), (torch.arange(100) % G).to(data_device))
    losses = []
    for s in range(steps):
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error" if s >= check_from else 0)  # warm-up steps may sync (lazy init)
        try:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss, _ = obj(net, _batch(s))
            loss.backward()
        finally:
            torch.cuda.set_sync_debug_mode(0)
        losses.append(loss.detach())
    return torch.stack(losses)


@pytest.mark.parametrize("impl", ["torch", "lean", "triton"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_a_drift_step_makes_no_host_sync(name, impl):
    if impl == "triton":
        pytest.importorskip("triton")
    cfg = DriftConfig(encoder="pixels", impl=impl, **CONFIGS[name])
    losses = _steps(cfg, "cuda")
    assert torch.isfinite(losses).all()


def test_dataset_on_the_cpu_gives_the_same_draws():
    """The naive path (dataset on the CPU) copies the device-drawn indices over: the same step, with a sync."""
    cfg = DriftConfig(encoder="pixels", impl="torch", **CONFIGS["dataset-uncond"])
    assert torch.equal(_steps(cfg, "cpu", check_from=99), _steps(cfg, "cuda"))
