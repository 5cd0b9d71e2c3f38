"""Two small CIFAR-10 classifiers, one training loop, safetensors weights.

- "encoder": GroupNorm ResNet, the drift loss's feature encoder. GroupNorm (never BatchNorm) so a
  sample's features do not depend on which other samples share its batch. `features(x)` gives the
  four stage maps at 32/16/8/4.
- "resnet": the same GroupNorm ResNet at ResNet-18 size (widths 64-512, 2 blocks per stage, 11.2M
  parameters, 21 MiB in fp16): the stronger drift encoder recipe (training/encoder_resnet_cifar10.json).
  norm="batch" (`--norm batch`, training/encoder_resnet_bn_cifar10.json) swaps in BatchNorm: trained in train mode,
  used frozen in eval mode, where it is a fixed per-channel affine, so features stay per-sample.
- "evalnet": BatchNorm VGG-style net trained with label smoothing from another seed, used only to
  *evaluate* (FD, precision/recall, IS analogue). Independent of the encoder on purpose: a generator
  trained against the encoder's features must not be scored by the same features.

Both take float images in [-1, 1] and normalise inside.

Modules: nets (architectures), training (supervised training, MAE pretraining), storage (save / load through
driftin.hub's weights layer), card (README.md model cards), cli (the command line).

    python -m driftin.classifier train --arch encoder --out weights/encoder-cifar10
    python -m driftin.classifier train --arch evalnet --out weights/evalnet-cifar10
    python -m driftin.classifier train --config training/encoder_resnet_cifar10.json
    python -m driftin.classifier pretrain-mae --config training/encoder_resnet_mae_cifar10.json   # then:
    python -m driftin.classifier train --config training/encoder_resnet_mae_ft_cifar10.json
"""

from __future__ import annotations

from . import training  # noqa: F401 (the submodule, e.g. for monkeypatching its data loader)
from .card import write_card
from .cli import main, train_options
from .nets import ARCHS, NORMS, CIFAR_MEAN, CIFAR_STD, BasicBlock, Encoder, EvalNet, Normalize, ResNetEncoder, build_classifier
from .storage import MAX_FILE_BYTES, PICKLE_SUFFIXES, WEIGHTS_FILE, load_classifier, resolve_weights_dir, save_classifier
from .training import DEFAULTS, MAEDecoder, accuracy, augment, mae_loss, mae_mask, pretrain_mae, train_classifier
from ..hub import CONFIG_FILE

__all__ = ["ARCHS", "NORMS", "DEFAULTS", "CIFAR_MEAN", "CIFAR_STD", "CONFIG_FILE", "WEIGHTS_FILE", "MAX_FILE_BYTES", "PICKLE_SUFFIXES",
           "BasicBlock", "Encoder", "ResNetEncoder", "EvalNet", "Normalize", "MAEDecoder", "build_classifier",
           "save_classifier", "load_classifier", "resolve_weights_dir", "write_card", "train_classifier", "pretrain_mae",
           "augment", "accuracy", "mae_mask", "mae_loss", "main", "train_options"]
