"""What the inference benchmark times: the sampling paths (PATHS), the random-init models of a preset, and one
callable per point (path, kind, steps, batch, guidance) on pre-drawn noise, with the eager fp32 reference outputs."""
from __future__ import annotations

import torch

from driftin import fast
from driftin.config import preset
from driftin.generate import make_noise
from driftin.unet import UNet

PATHS = {
    "eager-fp32": None,
    "eager-bf16": fast.FastOptions(dtype="bf16", compile=False, graphs=False, channels_last=False, fuse_emb=False),
    "graph-bf16": fast.FastOptions(dtype="bf16", compile=False, graphs=True, channels_last=False),
    "fast": fast.FastOptions(),  # the default of generate(fast=True) with no DRIFTIN_* variables
    "fast-autotune": fast.FastOptions(mode="max-autotune-no-cudagraphs", dynamic=False),
    "fast-static": fast.FastOptions(dynamic=False),  # one compile per batch size
    "fast-nocl": fast.FastOptions(channels_last=False),
    "static-fp32": fast.FastOptions(dtype="fp32", compile=False, graphs=False, channels_last=False),
}


def flops_per_image(net, device) -> float | None:
    try:
        from torch.utils.flop_counter import FlopCounterMode

        x = torch.randn(1, 3, net.config.image_size, net.config.image_size, device=device)
        y = torch.zeros(1, dtype=torch.long, device=device)
        alpha = torch.ones(1, device=device) if net.config.guidance_input else None
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            net(x, None, y, alpha)
        return float(fc.get_total_flops())
    except Exception:  # noqa: BLE001
        return None



class Calls:
    """The timed callables of one preset: per (path, kind, steps, batch, guidance), on pre-drawn noise, and the
    eager fp32 reference outputs they are compared against."""

    def __init__(self, nets: dict, device: torch.device):
        self.nets, self.device, self.cuda = nets, device, device.type == "cuda"
        self.inputs, self.refs = {}, {}

    def get_inputs(self, bs: int):
        if bs not in self.inputs:
            seeds = list(range(bs))
            self.inputs[bs] = (seeds, make_noise(seeds, (3, 32, 32), self.device), torch.arange(bs, device=self.device) % 10)
        return self.inputs[bs]

    def caller(self, path, kind, steps, bs, guidance):
        seeds, noise, y = self.get_inputs(bs)
        net, method = self.nets["drift" if kind == "drift" else "ddim"], "drift" if kind == "drift" else "ddim"
        opts = PATHS[path]
        if opts is None:
            return lambda: fast.eager_generate(net, noise, method, steps, y, guidance, 0.0, seeds)
        if self.cuda or path.startswith("fast"):  # on CPU fast_generate picks the eager path itself
            return lambda: fast.fast_generate(net, noise, method, steps, y, guidance, 0.0, seeds, options=opts)
        s = fast.get_sampler(net, opts, self.device)
        return lambda: s.generate(noise, method, steps, y, guidance, 0.0, seeds)

    def reference(self, kind, steps, bs, guidance):
        key = (kind, steps, bs)
        if key not in self.refs:
            with torch.no_grad():
                self.refs[key] = self.caller("eager-fp32", kind, steps, bs, guidance)().clamp(-1, 1)
        return self.refs[key]


def make_models(name: str, device: torch.device) -> dict:
    """Random-init class-conditional UNets of a preset: the drift generator (with guidance input) and the DDIM model."""
    torch.manual_seed(0)
    return {"drift": UNet(preset(name, num_classes=10, guidance_input=True, zero_init_out=False)).to(device).eval(),
            "ddim": UNet(preset(name, num_classes=10, zero_init_out=False)).to(device).eval()}

