"""Standard Inception FID (2048-d pool features at 299x299), pytorch-fid compatible.

Needs weights supplied by the user; nothing is downloaded unless asked for with "download":
- a path to pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (the TF FID Inception ported to
  PyTorch): numbers comparable with published CIFAR-10 FIDs;
- "download": torchvision's ImageNet Inception-v3 (network needed). Close but NOT identical to the
  TF FID network, so those numbers are not comparable with published FIDs.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models import inception as tvi

FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{FID_WEIGHTS_NAME}"
HOW_TO = (f"pass --inception-weights PATH to pytorch-fid's {FID_WEIGHTS_NAME} (download it from {FID_WEIGHTS_URL}), "
          "or --inception-weights download to fetch torchvision's ImageNet Inception-v3 (needs network; its FIDs are not "
          "comparable with published ones)")


class InceptionWeightsError(RuntimeError):
    """Inception weights missing, unreadable or not downloadable; the message says how to supply them."""


# The TF FID graph differs from torchvision's Inception in its pooling branches: average pools ignore
# the padding (count_include_pad=False) and the last block max-pools. Recompute the pool branch so.
class _FIDInceptionA(tvi.InceptionA):
    def _forward(self, x):
        out = super()._forward(x)  # recomputing one 1x1 branch is cheaper than copying the block
        out[-1] = self.branch_pool(F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
        return out


class _FIDInceptionC(tvi.InceptionC):
    def _forward(self, x):
        out = super()._forward(x)
        out[-1] = self.branch_pool(F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
        return out


class _FIDInceptionE1(tvi.InceptionE):
    def _forward(self, x):
        out = super()._forward(x)
        out[-1] = self.branch_pool(F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
        return out


class _FIDInceptionE2(tvi.InceptionE):
    def _forward(self, x):
        out = super()._forward(x)
        out[-1] = self.branch_pool(F.max_pool2d(x, 3, 1, 1))
        return out


def _fid_inception() -> tvi.Inception3:
    blocks = [tvi.BasicConv2d, _FIDInceptionA, tvi.InceptionB, _FIDInceptionC, tvi.InceptionD, _FIDInceptionE1, tvi.InceptionAux]
    net = tvi.Inception3(num_classes=1008, aux_logits=False, transform_input=False, inception_blocks=blocks, init_weights=False)
    net.Mixed_7c.__class__ = _FIDInceptionE2  # same parameters, only the pool branch differs
    return net


def _download_torchvision_state() -> dict:
    url = tvi.Inception_V3_Weights.IMAGENET1K_V1.url
    try:
        return torch.hub.load_state_dict_from_url(url, progress=True, check_hash=True)
    except Exception as e:  # URLError, timeouts, HTTP errors, bad hash: all mean "could not get the weights"
        raise InceptionWeightsError(f"could not download torchvision Inception-v3 weights from {url} "
                                    f"({type(e).__name__}: {e}); offline? {HOW_TO}") from None


def file_hash(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


class InceptionFeatures:
    """Callable: uint8 [N,3,H,W] (or float in [-1,1]) -> 2048-d pool features [N, 2048] float32 numpy."""

    def __init__(self, weights: str | Path | None, device=None, batch: int = 200):
        if weights is None:
            raise InceptionWeightsError(f"Inception FID needs weights: {HOW_TO}")
        if str(weights) == "download":
            net = tvi.Inception3(num_classes=1000, aux_logits=True, transform_input=False, init_weights=False)
            net.load_state_dict(_download_torchvision_state())
            self.name = "torchvision-inception_v3-IMAGENET1K_V1"
        else:
            path = Path(weights)
            if not path.is_file():
                raise InceptionWeightsError(f"Inception weights file {path} not found; {HOW_TO}")
            net = _fid_inception()
            try:
                sd = torch.load(path, map_location="cpu", weights_only=True)  # weights_only: no arbitrary unpickling
                net.load_state_dict(sd)
            except Exception as e:
                raise InceptionWeightsError(f"{path} is not a pytorch-fid Inception state dict ({type(e).__name__}: "
                                            f"{str(e)[:300]}); {HOW_TO}") from None
            self.name = f"pytorch-fid-inception-{file_hash(path)}"
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.net = net.to(self.device).eval().requires_grad_(False)
        self.batch = batch

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)  # as pytorch-fid
        for m in (n.Conv2d_1a_3x3, n.Conv2d_2a_3x3, n.Conv2d_2b_3x3, n.maxpool1, n.Conv2d_3b_1x1, n.Conv2d_4a_3x3, n.maxpool2,
                  n.Mixed_5b, n.Mixed_5c, n.Mixed_5d, n.Mixed_6a, n.Mixed_6b, n.Mixed_6c, n.Mixed_6d, n.Mixed_6e,
                  n.Mixed_7a, n.Mixed_7b, n.Mixed_7c):
            x = m(x)
        return x.mean((2, 3))  # [B, 2048]

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> np.ndarray:
        out = []
        for i in range(0, len(images), self.batch):
            x = images[i : i + self.batch].to(self.device)
            x = x.float() / 127.5 - 1 if x.dtype == torch.uint8 else x.float()  # the network expects [-1, 1]
            out.append(self._pool(x).cpu())
        return torch.cat(out).numpy()


def inception_reference_stats(extractor: InceptionFeatures, split: str = "train", images: torch.Tensor | None = None,
                              name: str = "cifar10-jpeg", cache: bool = True) -> dict:
    """mu, sigma of the Inception pool features of a reference set, cached like the evalnet statistics."""
    from driftin.data import load_cifar10_tar
    from driftin.eval.fd import feature_stats
    from driftin.eval.features import load_cached, save_cached, tensor_hash

    if images is None:
        images = load_cifar10_tar(split)[0]
    key = f"{extractor.name}-{name}-{split}-{len(images)}-{tensor_hash(images)}"
    hit = load_cached("inceptionref", key) if cache else None
    if hit is not None:
        return hit
    print(f"computing Inception reference statistics for {name}/{split} ({len(images)} images)")
    mu, sigma = feature_stats(extractor(images))
    return {"mu": mu, "sigma": sigma, **(save_cached("inceptionref", key, {"mu": mu, "sigma": sigma}) if cache else {"key": key})}
