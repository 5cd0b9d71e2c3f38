"""The drifting objective (Deng et al. 2026) as a trainer callable loss(model, batch).

One step: the generator maps noise (+ class, + guidance alpha) to images; a frozen encoder turns
generated and real images into multi-resolution feature groups; features are gathered over all
ranks so the field sees the global batch; per group the field V pushes each generated feature
towards the data and away from the other generated samples; the loss regresses phi(x) onto
sg(phi(x) + V).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import distributed as dist
from ..diffusion import unwrap
from .encoders import build_encoder
from .features import feature_groups
from .field import KERNEL_NORMS, PRECISIONS, drift_loss


@dataclass(frozen=True)
class DriftConfig:
    encoder: str = "cifar"  # "cifar" | "pixels" | "timm:<name>"
    encoder_weights: str = ""  # local weights for the encoder ("" = its default)
    encoder_resize: int = 0  # timm encoders: input size (0 = the model's own)
    pixel_features: bool = True  # add the raw-pixel groups
    max_locations: int = 8  # per-location groups are pooled to at most this many per side
    temperatures: tuple[float, ...] = (0.02, 0.05, 0.2)
    kernel_norm: str = "both"  # "both" (x and y) | "y" | "none"
    feature_norm: bool = True  # stop-grad scale so the mean pairwise distance is sqrt(C)
    uncond_per_group: int = 16  # unconditional real samples per class group (CFG negatives)
    cfg_max: float = 1.0  # alpha ~ U[1, cfg_max] in training; 1 disables guidance
    impl: str = "auto"  # drift field implementation ("auto" | "reference" | "torch" | "lean" | "triton")
    precision: str = "tf32x3"  # GEMM precision of the blocked lean/triton field on CUDA ("ieee" | "tf32x3" | "tf32")
    # The pre-#19 behaviour, only to reproduce old runs in ablations (the defaults are the fixes):
    rms_eps: float = 0.0  # > 0: per-tau RMS normalisation divides by sqrt(mean V^2 + rms_eps) (old: 1e-8)
    scale_self_pairs: bool = False  # True: the zero self pairs count in the feature scale S (old)
    field_autocast: bool = False  # True: the field runs under the trainer's bf16 autocast (old)

    def __post_init__(self):
        object.__setattr__(self, "temperatures", tuple(self.temperatures))
        if self.kernel_norm not in KERNEL_NORMS:
            raise ValueError(f"kernel_norm must be one of {KERNEL_NORMS}, got {self.kernel_norm!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.encoder == "pixels" and not self.pixel_features:
            raise ValueError("encoder 'pixels' needs pixel_features=True (there would be no features)")


def with_local_grad(local: torch.Tensor) -> torch.Tensor:
    """Global batch (gathered, detached) in which this rank's rows keep their gradient."""
    if dist.world() == 1:
        return local
    full = dist.all_gather_cat(local)
    n, r = local.shape[0], dist.rank()
    return torch.cat([full[: r * n], local, full[(r + 1) * n:]])


class DriftLoss:
    def __init__(self, cfg: DriftConfig, device, num_classes: int = 0):
        self.cfg, self.field_loss, self.num_classes = cfg, drift_loss, num_classes
        enc = build_encoder(cfg.encoder, cfg.encoder_weights, cfg.encoder_resize)
        self.encoder = enc.to(device) if enc is not None else None

    def batch_kwargs(self) -> dict:
        return {"num_classes": self.num_classes}  # class-balanced, class-sorted batches: one field group per class

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = self.encoder(x) if self.encoder is not None else []
        return feature_groups(maps, x if self.cfg.pixel_features else None, self.cfg.max_locations)

    def __call__(self, model, batch: dict):
        cfg, rng, real, y = self.cfg, batch["rng"], batch["x"], batch["y"]
        n = real.shape[0]
        net = unwrap(model)
        num_classes = net.config.num_classes if y is not None else 0
        alpha_group = 1 + (cfg.cfg_max - 1) * torch.rand(max(num_classes, 1), generator=rng.gen, device=real.device)
        alpha = alpha_group[y] if (net.config.guidance_input and y is not None) else None
        noise = rng.randn(n, *real.shape[1:]).contiguous(memory_format=torch.contiguous_format)
        gen = model(noise, None, y, alpha).float()

        gen_groups = self.features(gen)
        with torch.no_grad():
            real_groups = [dist.all_gather_cat(g) for g in self.features(real)]
        G = max(num_classes, 1)
        total, logs = 0.0, {}
        for j, (g_local, r_all) in enumerate(zip(gen_groups, real_groups)):
            g_all = with_local_grad(g_local)  # [B, L, C] over the global batch
            B, L, C = g_all.shape
            # rows are sorted by class (class-balanced batch): group = (location/stat, class)
            x = g_all.view(G, B // G, L, C).permute(2, 0, 1, 3).reshape(L * G, B // G, C)
            pos = r_all.view(G, B // G, L, C).permute(2, 0, 1, 3).reshape(L * G, B // G, C)
            kw = {}
            if num_classes and cfg.cfg_max > 1.0:
                # unconditional negatives: real samples of any class, weighted after the softmax
                idx = torch.randperm(B, generator=torch.Generator().manual_seed(batch["step"]))[: cfg.uncond_per_group]
                unc = r_all[idx.to(r_all.device)].permute(1, 0, 2)  # [L, U, C]
                kw["extra_neg"] = unc[:, None].expand(L, G, -1, C).reshape(L * G, -1, C)
                n_neg = B // G
                w = (alpha_group - 1) * (n_neg - 1) / cfg.uncond_per_group  # [G]
                kw["extra_weight"] = w.repeat(L)
            loss, stats = self.field_loss(x, pos, temperatures=cfg.temperatures, kernel_norm=cfg.kernel_norm,
                                          feature_norm=cfg.feature_norm, impl=cfg.impl, precision=cfg.precision,
                                          eps=cfg.rms_eps, scale_self_pairs=cfg.scale_self_pairs,
                                          allow_autocast=cfg.field_autocast, **kw)
            total = total + loss
            logs[f"loss_g{j}"] = loss.detach()
        logs["drift_loss"] = logs["loss"] = total.detach()  # the logged loss: not world-scaled
        # each rank's loss covers the global batch but only its rows carry gradient; DDP averages
        # gradients over ranks, so scale by the world size to get the global-batch gradient
        return total * dist.world() if dist.world() > 1 else total, logs
