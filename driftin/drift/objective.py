"""The drifting objective (Deng et al. 2026) as a trainer callable loss(model, batch).

One step: the generator maps noise (+ class, + guidance alpha) to images; a frozen encoder turns
generated and real images into multi-resolution feature groups; features are gathered over all
ranks so the field sees the global batch; per group the field V pushes each generated feature
towards the data and away from the other generated samples; the loss regresses phi(x) onto
sg(phi(x) + V).

Options follow the paper where the default does not (issue #19; an ablation decides the defaults):
feature groups (patch_stats, max_locations, pixel_mode), normalisation scope (norm_scope), loss
reduction (loss_reduce), CFG (cfg_alpha, cfg_scale_weighted, uncond_source), MoCo-style sample queues
(pos_queue, uncond_queue) and random style embeddings (the UNet's style_tokens, preset "small-style").

Queues live in the DriftLoss (state_dict / load_state_dict; the trainer saves them in its checkpoint,
so a resumed run continues the uninterrupted trajectory exactly). They are filled from the global real
batch of each step, so every rank holds the same queues. Without that state (e.g. --init-from) they
start empty: the class queues are full again after pos_queue / queue_push steps (2 with the paper's
sizes), the unconditional queue after ceil(uncond_queue / batch) steps; until then fewer positives
are drawn (all that the queue holds).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import distributed as dist
from ..data import DeviceData, load_dataset, to_model_range
from ..diffusion import unwrap
from .encoders import build_encoder
from .features import PATCH_STATS, PIXEL_MODES, feature_groups
from .field import KERNEL_NORMS, PRECISIONS, drift_loss

NORM_SCOPES = ("row", "map")
LOSS_REDUCE = ("mean", "sum")
CFG_ALPHA = ("uniform", "power")
UNCOND_SOURCES = ("batch", "separate")


@dataclass(frozen=True)
class DriftConfig:
    encoder: str = "cifar"  # "cifar" | "pixels" | "timm:<name>"
    encoder_weights: str = ""  # local weights for the encoder ("" = its default)
    encoder_resize: int = 0  # timm encoders: input size (0 = the model's own)
    pixel_features: bool = True  # add the raw-pixel groups
    pixel_mode: str = "patches"  # "patches": 48-d 4x4 pixel patches | "energy" (paper): the input + per-channel mean x^2
    max_locations: int = 8  # per-location groups are pooled to at most this many per side (0 = every location)
    patch_stats: str = "grid"  # "grid": mean/std over a 2x2 and 4x4 grid of regions | "patches" (paper): every 2x2, 4x4 patch
    temperatures: tuple[float, ...] = (0.02, 0.05, 0.2)
    kernel_norm: str = "both"  # "both" (x and y) | "y" | "none"
    feature_norm: bool = True  # stop-grad scale so the mean pairwise distance is sqrt(C)
    norm_scope: str = "row"  # S and the field RMS per "row" (feature group x class) | per "map" (paper: shared)
    loss_reduce: str = "mean"  # "mean": mean over a map's groups, summed over maps | "sum" (paper): summed over groups
    uncond_per_group: int = 16  # unconditional real samples per class group (CFG negatives)
    uncond_source: str = "batch"  # "batch": from the step's real positives, shared by all classes |
    #   "separate" (paper): a set of its own per class group, from uncond_queue or else fresh from the dataset
    uncond_data: str = "cifar10"  # dataset for uncond_source "separate" without a queue, unless the trainer attaches its own
    cfg_max: float = 1.0  # alpha in [1, cfg_max] in training; 1 disables guidance
    cfg_alpha: str = "uniform"  # alpha ~ U[1, cfg_max] | "power" (paper): p(alpha) ~ alpha^-cfg_alpha_power
    cfg_alpha_power: float = 3.0  # the paper uses 3 or 5 (with cfg_max 4)
    cfg_scale_weighted: bool = False  # unconditional columns enter S with their CFG weight w (paper) instead of 1
    pos_queue: int = 0  # per-class queue of real images for the positives (paper 128); 0 = the batch's own
    queue_push: int = 64  # real images per class pushed into pos_queue each step (paper 64)
    pos_per_group: int = 0  # positives per class group drawn from pos_queue (0 = the batch's per-class count)
    uncond_queue: int = 0  # global queue of real images for the unconditional negatives (paper 1000)
    impl: str = "auto"  # drift field implementation ("auto" | "reference" | "torch" | "lean" | "triton")
    precision: str = "tf32x3"  # GEMM precision of the blocked lean/triton field on CUDA ("ieee" | "tf32x3" | "tf32")
    # The pre-#19 behaviour, only to reproduce old runs in ablations (the defaults are the fixes):
    rms_eps: float = 0.0  # > 0: per-tau RMS normalisation divides by sqrt(mean V^2 + rms_eps) (old: 1e-8)
    scale_self_pairs: bool = False  # True: the zero self pairs count in the feature scale S (old)
    field_autocast: bool = False  # True: the field runs under the trainer's bf16 autocast (old)

    def __post_init__(self):
        object.__setattr__(self, "temperatures", tuple(self.temperatures))
        for name, allowed in (("kernel_norm", KERNEL_NORMS), ("precision", PRECISIONS), ("pixel_mode", PIXEL_MODES),
                              ("patch_stats", PATCH_STATS), ("norm_scope", NORM_SCOPES), ("loss_reduce", LOSS_REDUCE),
                              ("cfg_alpha", CFG_ALPHA), ("uncond_source", UNCOND_SOURCES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.encoder == "pixels" and not self.pixel_features:
            raise ValueError("encoder 'pixels' needs pixel_features=True (there would be no features)")
        if self.norm_scope == "map" and self.kernel_norm == "none":
            raise ValueError("kernel_norm 'none' needs norm_scope 'row' (its shift is per row)")
        if self.max_locations < 0 or self.pos_queue < 0 or self.uncond_queue < 0 or self.pos_per_group < 0:
            raise ValueError("max_locations, pos_queue, uncond_queue and pos_per_group must be >= 0")
        if self.pos_queue and not 0 < self.queue_push <= self.pos_queue:
            raise ValueError(f"queue_push must be in [1, pos_queue={self.pos_queue}], got {self.queue_push}")
        if self.pos_per_group and not self.pos_queue:
            raise ValueError("pos_per_group needs pos_queue > 0 (without a queue the positives are the batch's)")
        if self.uncond_queue and self.uncond_source != "separate":
            raise ValueError("uncond_queue feeds uncond_source 'separate'; set it, or uncond_queue 0")
        if self.cfg_max < 1:
            raise ValueError(f"cfg_max must be >= 1, got {self.cfg_max}")


def sample_alpha(u: torch.Tensor, cfg: DriftConfig) -> torch.Tensor:
    """Guidance scales in [1, cfg_max] from uniforms u: uniform, or p(alpha) ~ alpha^-k by the inverse CDF."""
    a = cfg.cfg_max
    if cfg.cfg_alpha == "uniform" or a == 1.0:
        return 1 + (a - 1) * u
    e = 1.0 - cfg.cfg_alpha_power
    if abs(e) < 1e-12:  # k = 1: p ~ 1/alpha, log-uniform
        return a ** u
    return (1 - u * (1 - a ** e)) ** (1 / e)


def with_local_grad(local: torch.Tensor) -> torch.Tensor:
    """Global batch (gathered, detached) in which this rank's rows keep their gradient."""
    if dist.world() == 1:
        return local
    full = dist.all_gather_cat(local)
    n, r = local.shape[0], dist.rank()
    return torch.cat([full[: r * n], local, full[(r + 1) * n:]])


def _by_group(t: torch.Tensor, G: int) -> torch.Tensor:
    """[G * n, L, C] sorted by class -> [L * G, n, C]: one field row per (feature group, class)."""
    B, L, C = t.shape
    return t.view(G, B // G, L, C).permute(2, 0, 1, 3).reshape(L * G, B // G, C)


class DriftLoss:
    def __init__(self, cfg: DriftConfig, device, num_classes: int = 0):
        self.cfg, self.field_loss, self.num_classes = cfg, drift_loss, num_classes
        enc = build_encoder(cfg.encoder, cfg.encoder_weights, cfg.encoder_resize)
        self.device = torch.device(device)
        self.encoder = enc.to(device) if enc is not None else None
        self._features_compiled = None  # set by compile()
        self.data: DeviceData | None = None  # the dataset for uncond_source "separate" without a queue
        self.queues: dict[str, torch.Tensor] = {}  # "pos" [G, Q, ...], "unc" [U, ...] and their fill counts

    def batch_kwargs(self) -> dict:
        return {"num_classes": self.num_classes}  # class-balanced, class-sorted batches: one field group per class

    def attach_data(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """The trainer's dataset, for fresh unconditional samples (else uncond_data is loaded on first use).
        Kept where it is: the trainer's device copy (DeviceData), or the CPU one of its naive path."""
        self.data = DeviceData(images, labels, images.device)  # no copy; class-agnostic draws

    def state_dict(self) -> dict:
        return {k: v.clone() for k, v in self.queues.items()}

    def load_state_dict(self, state: dict) -> None:
        """Queues back on this objective's device; their fill counters (scalars) stay on the CPU, where reading
        them is no device sync."""
        self.queues = {k: v.to(self.device, copy=True) if v.dim() else v.clone() for k, v in state.items()}

    def _features_eager(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = self.encoder(x) if self.encoder is not None else []
        return feature_groups(maps, x if self.cfg.pixel_features else None, self.cfg.max_locations,
                              patch_stats=self.cfg.patch_stats, pixel_mode=self.cfg.pixel_mode)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return (self._features_compiled or self._features_eager)(x)

    def compile(self, enabled: bool = True, field: bool = False, **kwargs) -> None:
        """Compile the encoder and the feature groups as one graph (GroupNorm, pooling and the patch statistics fuse;
        eager they are a third of the drift step's GPU time); enabled=False: back to eager. One graph per batch
        size (generated, real, unconditional): dynamic=False.
        field: the field loss too, one graph per feature map (eager, its fp32 distance, softmax and field ops are
        hundreds of small kernels a step: ~19% of the step's device time on the H200, benchmarks/profiles/layout/).
        The "torch" / "reference" / "lean" fields only: "triton" and "auto" launch their own kernels."""
        self._features_compiled = torch.compile(self._features_eager, dynamic=False, **kwargs) if enabled else None
        compile_field = enabled and field and self.cfg.impl in ("torch", "reference", "lean")
        self.field_loss = torch.compile(drift_loss, dynamic=False, **kwargs) if compile_field else drift_loss

    def channels_last(self) -> None:
        """The encoder in NHWC, like the trainer's generator and batches: mixed layouts cost a conversion per layer."""
        if self.encoder is not None:
            self.encoder.to(memory_format=torch.channels_last)

    def _features_global(self, imgs: torch.Tensor) -> list[torch.Tensor]:
        """Features of a global set of images that every rank holds: each rank encodes its share, then gather."""
        w = dist.world()
        if w == 1 or len(imgs) % w:
            return self.features(imgs)
        k = len(imgs) // w
        return [dist.all_gather_cat(f) for f in self.features(imgs[dist.rank() * k:(dist.rank() + 1) * k])]

    # ---- queues (MoCo-style): ring buffers of real images, identical on every rank
    def _push(self, name: str, imgs: torch.Tensor, size: int) -> None:
        """imgs [G, k, ...] into queue `name` [G, size, ...] (oldest entries overwritten)."""
        q = self.queues.get(name)
        if q is None or q.shape[2:] != imgs.shape[2:] or q.shape[:2] != (imgs.shape[0], size):
            q = self.queues[name] = torch.zeros(imgs.shape[0], size, *imgs.shape[2:], dtype=imgs.dtype, device=imgs.device)
            self.queues[name + "_n"] = torch.zeros((), dtype=torch.long)  # pushed so far
        n = int(self.queues[name + "_n"])  # a CPU scalar: reading it is no device sync
        if imgs.shape[1] > size:  # more than the queue holds: only the newest fit (and no slot is written twice)
            n, imgs = n + imgs.shape[1] - size, imgs[:, -size:]
        k, s = imgs.shape[1], n % size
        a = min(k, size - s)  # slots s.. to the end, then the rest from slot 0: plain slices, no index tensors
        q[:, s:s + a] = imgs[:, :a]  # (an indexed assignment is an index_put_, which can sync with the host)
        q[:, :k - a] = imgs[:, a:]
        self.queues[name + "_n"] = torch.tensor(n + k)

    def _sample(self, name: str, count: int, gen: torch.Generator) -> torch.Tensor:
        """[G, count', ...] drawn per queue row without replacement (count' = min(count, fill))."""
        q = self.queues[name]
        fill = min(int(self.queues[name + "_n"]), q.shape[1])
        idx = torch.rand(q.shape[0], fill, generator=gen, device=q.device).argsort(1)[:, :min(count, fill)]
        return q[torch.arange(q.shape[0], device=q.device)[:, None], idx]

    def _positives(self, real: torch.Tensor, allreal: torch.Tensor | None, G: int, rng) -> list[torch.Tensor]:
        """Real features [G * P, L, C] per map, sorted by class: the batch's, or drawn from the class queues
        (allreal: the global real batch [B, ...], sorted by class, gathered once per step when a queue is on)."""
        cfg = self.cfg
        if not cfg.pos_queue:
            return [dist.all_gather_cat(g) for g in self.features(real)]
        per = allreal.view(G, allreal.shape[0] // G, *allreal.shape[1:])
        self._push("pos", per[:, :cfg.queue_push], cfg.pos_queue)
        P = cfg.pos_per_group or per.shape[1]
        pos = self._sample("pos", P, rng.stream("class_queue"))
        return self._features_global(pos.flatten(0, 1))

    def _unconditional(self, real: torch.Tensor, allreal: torch.Tensor | None, pos_groups, G: int, U: int, rng) -> list[torch.Tensor]:
        """Unconditional real features [L * G, U, C] per map (CFG negatives)."""
        cfg = self.cfg
        if cfg.uncond_source == "batch":  # one set from the positives, shared by every class group
            B, dev = pos_groups[0].shape[0], pos_groups[0].device
            idx = torch.randperm(B, generator=rng.stream("uncond_from_batch"), device=dev)[:U]
            out = []
            for r_all in pos_groups:
                unc = r_all[idx].permute(1, 0, 2)  # [L, U, C]
                out.append(unc[:, None].expand(-1, G, -1, -1).reshape(-1, U, unc.shape[-1]))
            return out
        dev, n = real.device, G * U
        gen = rng.stream("uncond_queue")
        if cfg.uncond_queue:
            self._push("unc", allreal[None], cfg.uncond_queue)
            fill = min(int(self.queues["unc_n"]), cfg.uncond_queue)
            if fill >= n:  # without replacement over all groups: every group gets its own samples
                idx = torch.rand(fill, generator=gen, device=dev).argsort()[:n]
            else:
                idx = torch.randint(fill, (n,), generator=gen, device=dev)
            imgs = self.queues["unc"][0][idx]
        else:
            if self.data is None:  # standalone: loaded on first use, then kept on the device (no copy per step)
                self.data = DeviceData(*load_dataset(cfg.uncond_data, "train"), dev)
            d = self.data  # class-agnostic, with replacement, random flips; drawn on dev, gathered where the data is
            idx, flip = d.indices(n, gen)
            u8, _ = d.gather(idx.to(d.device), flip.to(d.device))  # copies only for CPU data (the naive path)
            imgs = to_model_range(u8.to(dev)).to(real.dtype)
        return [_by_group(f, G) for f in self._features_global(imgs)]

    def __call__(self, model, batch: dict):
        cfg, rng, real, y = self.cfg, batch["rng"], batch["x"], batch["y"]
        n = real.shape[0]
        net = unwrap(model)
        num_classes = net.config.num_classes if y is not None else 0
        G = max(num_classes, 1)
        alpha_group = sample_alpha(torch.rand(G, generator=rng.gen, device=real.device), cfg)
        alpha = alpha_group[y] if (net.config.guidance_input and y is not None) else None
        noise = rng.randn(n, *real.shape[1:]).contiguous(memory_format=torch.contiguous_format)
        extra = {}
        if getattr(net.config, "style_tokens", 0):  # drawn after the noise: the noise stream is unchanged
            extra["style"] = rng.randint(net.config.style_codebook, n * net.config.style_tokens).view(n, -1)
        gen = model(noise, None, y, alpha, **extra).float()

        gen_groups = self.features(gen)
        guided = bool(num_classes) and cfg.cfg_max > 1.0
        with torch.no_grad():
            allreal = dist.all_gather_cat(real) if cfg.pos_queue or (guided and cfg.uncond_queue) else None  # once a step
            real_groups = self._positives(real, allreal, G, rng)
            unc_groups = self._unconditional(real, allreal, real_groups, G, cfg.uncond_per_group, rng) if guided else None
        total, logs = 0.0, {}
        for j, (g_local, r_all) in enumerate(zip(gen_groups, real_groups)):
            g_all = with_local_grad(g_local)  # [B, L, C] over the global batch
            L = g_all.shape[1]
            x, pos = _by_group(g_all, G), _by_group(r_all, G)  # rows sorted by class: (feature group, class)
            kw = {}
            if guided:
                # unconditional negatives: real samples of any class, weighted after the softmax
                kw["extra_neg"] = unc_groups[j]
                w = (alpha_group - 1) * (x.shape[1] - 1) / unc_groups[j].shape[1]  # [G]
                kw["extra_weight"] = w.repeat(L)
            loss, stats = self.field_loss(x, pos, temperatures=cfg.temperatures, kernel_norm=cfg.kernel_norm,
                                          feature_norm=cfg.feature_norm, impl=cfg.impl, precision=cfg.precision,
                                          eps=cfg.rms_eps, scale_self_pairs=cfg.scale_self_pairs,
                                          allow_autocast=cfg.field_autocast, shared_norm=cfg.norm_scope == "map",
                                          scale_extra_weighted=cfg.cfg_scale_weighted, **kw)
            if cfg.loss_reduce == "sum":  # the field loss is a mean over the map's L groups
                loss = loss * L
            total = total + loss
            logs[f"loss_g{j}"] = loss.detach()
        logs["drift_loss"] = logs["loss"] = total.detach()  # the logged loss: not world-scaled
        # each rank's loss covers the global batch but only its rows carry gradient; DDP averages
        # gradients over ranks, so scale by the world size to get the global-batch gradient
        return total * dist.world() if dist.world() > 1 else total, logs
