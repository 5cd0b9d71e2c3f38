"""Model cards of saved classifiers: README.md with Hub metadata (huggingface_hub.ModelCard / ModelCardData),
written from the folder's config.json."""
from __future__ import annotations

import json
from pathlib import Path

from ..hub import CONFIG_FILE


def _card_metadata(name: str, info: dict) -> str:
    """YAML front matter (Hub model-card metadata): library, license, dataset, tags, test accuracy."""
    from huggingface_hub import EvalResult, ModelCardData

    results = None
    if "test_acc" in info:
        results = [EvalResult(task_type="image-classification", task_name="Image Classification", dataset_type="cifar10",
                              dataset_name="CIFAR-10", dataset_split="test", metric_type="accuracy",
                              metric_value=round(info["test_acc"], 4), metric_name="CIFAR-10 test accuracy")]
    tags = ["driftin", "cifar10", "evaluation-network" if info["arch"] == "evalnet" else "drift-encoder"]
    data = ModelCardData(model_name=name, library_name="driftin", license="mit", datasets=["cifar10"], tags=tags,
                         pipeline_tag="image-classification", eval_results=results)
    return f"---\n{data.to_yaml()}\n---\n\n"


def write_card(folder: str | Path) -> Path:
    """(Re)write a saved classifier's README.md from its config.json."""
    folder = Path(folder)
    info = json.loads((folder / CONFIG_FILE).read_text())
    write_card_from_info(folder, info)
    return folder / "README.md"


def write_card_from_info(out, info: dict) -> None:
    """README.md for the classifier folder `out` described by `info` (its config.json content)."""
    enc_role = "Feature encoder for the drift loss (`features(x)` -> 4 stage maps at 32/16/8/4). " + (
        "BatchNorm, used frozen in eval mode (a fixed per-channel affine): features do not depend on batch composition."
        if info.get("norm") == "batch" else "GroupNorm: features do not depend on batch composition.")
    role = {"encoder": enc_role, "resnet": enc_role,
            "evalnet": "Evaluation network for FD / precision-recall / IS-analogue (`penultimate(x)` features, softmax). "
                       "Independent of the drift encoder (other architecture, seed, objective)."}[info["arch"]]
    acc = f"{info['test_acc']:.4f}" if "test_acc" in info else "(not measured)"
    augment = "crop+flip" + (f"+Cutout {info['cutout_size']}" if info.get("cutout_size") else "") + " augmentation"
    train = (f"CIFAR-10 train split (JPEG copy), {info['epochs']} epochs, batch {info['batch']}, SGD nesterov, lr {info['lr']}, "
             f"label smoothing {info['label_smoothing']}, seed {info['seed']}, {augment}; "
             f"{info['train_seconds']} s on {info['device']}") if "epochs" in info else "(untrained save)"
    if info.get("pretrain") == "mae":
        train = (f"MAE pretraining only ({info['mask_ratio']:.0%} of 2x2 patches masked, l2 on the masked region), "
                 f"{info['mae_epochs']} epochs, AdamW lr {info['lr']}; the classification head is untrained")
    elif info.get("init"):
        train += f"; initialised from {info['init']}"
    blocks = f", blocks {info['blocks']}" if "blocks" in info else ""
    text = _card_metadata(Path(out).name, info) + f"""# {Path(out).name}

{role}

- Architecture: `{info['arch']}`, widths {info['widths']}{blocks}, {info['params']:,} parameters, stored {info['dtype']}
- Input: float images in [-1, 1], [B, 3, 32, 32]; CIFAR-10 normalisation happens inside the model.
- Training: {train}
- CIFAR-10 test accuracy: {acc}
- Command: `{info.get('train_command') or 'n/a'}`
- Load: `from driftin.classifier import load_classifier; net = load_classifier("{out}")`
"""
    from huggingface_hub import ModelCard

    ModelCard(text).save(Path(out) / "README.md")  # parses the metadata back: a malformed card fails here, not on the Hub
