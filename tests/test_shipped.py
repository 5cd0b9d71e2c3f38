"""The shipped weights in weights/: they load through the public API on CPU, generate, and the numbers
in their eval.json were measured with the shipped evaluation network (so a retrained evalnet without
re-running the evaluations fails here). Also guards the tracked-tree size the GPU runs depend on."""
import json
import re
import subprocess
from pathlib import Path

import pytest
import torch

from driftin import generate, load_pretrained
from driftin.classifier import load_classifier
from driftin.eval.features import load_evalnet, state_hash

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
GENERATORS = {"ddpm-cifar10": ("ddim", ["ddim_steps50_g1"]),  # the entries every shipped eval.json must hold
              "drift-cifar10": ("drift", ["drift_steps1_g1"])}


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generator_loads_and_generates_a_grid(name, tmp_path):
    from torchvision.utils import save_image

    method, _ = GENERATORS[name]
    model = load_pretrained(WEIGHTS / name)  # public API, CPU, safetensors shards + index
    assert model.meta["objective"] == ("drift" if method == "drift" else "ddpm")
    labels = torch.arange(10)
    x = generate(model, seeds=list(range(10)), method=method, steps=4, class_labels=labels)
    assert x.shape == (10, 3, 32, 32) and 0 <= x.min() and x.max() <= 1
    assert x.std(0).mean() > 0.05  # different seeds and classes give different images, not one constant output
    again = generate(model, seeds=[3], method=method, steps=4, class_labels=labels[3:4])
    torch.testing.assert_close(again[0], x[3], atol=1e-5, rtol=0)  # seeded: the same cell again
    save_image(x, tmp_path / "grid.png", nrow=5)
    assert (tmp_path / "grid.png").stat().st_size > 1000


def test_both_generators_share_the_architecture():
    d, p = (json.loads((WEIGHTS / n / "config.json").read_text())["model"] for n in ("drift-cifar10", "ddpm-cifar10"))
    # the drift net also takes the guidance scale as an input, and only DDPM zero-initialises its output layer
    # (a zero output would make every drift sample identical at init); the rest must match for a fair side-by-side
    diff = {k for k in d.keys() | p.keys() if k not in ("guidance_input", "zero_init_out") and d.get(k) != p.get(k)}
    assert not diff, f"drift and ddpm differ in {sorted(diff)}"


@pytest.fixture(scope="module")
def evalnet_hash():
    return state_hash(load_evalnet(WEIGHTS / "evalnet-cifar10"))


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_eval_json_has_standard_fid_and_the_shipped_evalnet(name, evalnet_hash):
    """Every shipped entry: Inception FID-50k with the standard network against the 50k train split (the headline,
    shown in bold in the card), and its classifier diagnostics measured with the shipped evalnet."""
    from driftin.eval.inception import FID_HELPER_SHA1

    results = json.loads((WEIGHTS / name / "eval.json").read_text())
    card = (WEIGHTS / name / "README.md").read_text()
    steps = json.loads((WEIGHTS / name / "config.json").read_text())["steps"]
    assert set(GENERATORS[name][1]) <= set(results)
    for key, entry in results.items():
        assert entry["train_steps"] == steps, f"{key} was measured on other weights (step {entry['train_steps']}, shipped {steps})"
        assert entry["n"] == 50_000 and entry["evalnet"]["hash"] == evalnet_hash, key
        assert entry["inception"] == f"tf-fid-inception-2015-12-05-sha1-{FID_HELPER_SHA1[:8]}", key
        assert entry["inception_reference"]["split"] == "train" and entry["inception_reference"]["n"] == 50_000, key
        assert f"**{entry['fid']:.2f}**" in card, f"{key} FID missing from the card"
        assert f"{entry['fd']:.2f}" in card, f"{key} evalnet FD missing from the card"


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_card_is_regenerated_from_the_folder(name):
    """The committed card is what `python -m driftin.publish card` makes from the folder now: a landed eval, curve or
    chain block without regenerating the card fails here."""
    from driftin.modelcard import build_card_text

    assert (WEIGHTS / name / "README.md").read_text() == build_card_text(WEIGHTS / name), \
        f"run `python -m driftin.publish card weights/{name}`"


def test_drift_was_trained_with_a_shipped_encoder():
    """The encoder the drift model's config names (the recipe's default or, since block 4, a weights folder) ships
    beside it and gives the feature maps its config says: a continued block must find the same features."""
    from driftin.drift.encoders import DEFAULT_CIFAR_ENCODER

    cfg = json.loads((WEIGHTS / "drift-cifar10" / "config.json").read_text())["train_config"]["drift"]
    assert cfg["encoder"] == "cifar"
    assert DEFAULT_CIFAR_ENCODER == WEIGHTS / "encoder-cifar10"
    name = cfg["encoder_weights"]  # a weights name since block 6 (the recipe's), a repository path before
    folder = (WEIGHTS / name if "/" not in name else WEIGHTS.parent / name) if name else DEFAULT_CIFAR_ENCODER
    assert folder.parent == WEIGHTS and (folder / "config.json").is_file(), f"{folder} is not a shipped weights folder"
    enc = load_classifier(folder)
    maps = enc.features(torch.zeros(1, 3, 32, 32))
    assert [m.shape[1] for m in maps] == json.loads((folder / "config.json").read_text())["widths"]


@pytest.mark.parametrize("name", ["encoder-cifar10", "encoder-resnet-bn-cifar10", "encoder-resnet-bn-cutout-cifar10",
                                  "evalnet-cifar10"])
def test_classifier_card_metadata_matches_config(name):
    from huggingface_hub import ModelCard

    cfg = json.loads((WEIGHTS / name / "config.json").read_text())
    card = ModelCard.load(WEIGHTS / name / "README.md")
    assert card.data.library_name == "driftin" and card.data.eval_results[0].metric_value == round(cfg["test_acc"], 4)


# What each staging call of scripts/lease_tree.sh carries besides the tracked files outside weights/: the weight
# folders it keeps (read from the script; call d: every folder calls a-c leave out) and its staged blobs (the FID
# network in two sha1-checked halves, the two CIFAR-10 tarballs; call d: an encoder not in git for a trial arm and the
# packed compile artifacts, ~8 MB a chain).
STAGED = {"a": 43_667_731 + 16_191_976,  # .stage_a/fid.part00 + data/cifar10/train.tar.gz
          "b": 43_667_730 + 3_241_103,  # .stage_b/fid.part01 + test.tar.gz
          "c": 0,
          "d": 22_378_404 + 2 * 8_074_088}  # .stage_enc: a ResNet-18 encoder (fp16); .stage_c: drift's drift.bin.xz.part00
                                             # (block 7, compile_field on), twice for a DDPM one


def lease_calls(shipped) -> dict[str, tuple[list[str], int]]:
    """shipped: the weights folder names the repository tracks (call d keeps those calls a-c do not)."""
    script = (WEIGHTS.parent / "scripts" / "lease_tree.sh").read_text()
    keeps = {call.lower(): names.split() for call, names in re.findall(r'\b([ABC])_KEEP="([^"]*)"', script)}
    assert set(keeps) == set(STAGED) - {"d"}, f"lease_tree.sh keeps for calls {sorted(keeps)}"
    assert re.search(r"^\s*d\) keep \$\(others\); carry \.stage_enc\b", script, re.M), \
        "call d no longer stages the folders a-c leave out and the trial encoder (.stage_enc)"
    kept = {n for names in keeps.values() for n in names}
    keeps["d"] = sorted(set(shipped) - kept)
    return {call: (keeps[call], staged) for call, staged in STAGED.items()}


def test_shipped_weights_and_each_lease_call_fit_their_budgets():
    """All shipped weights together stay within ~100 MB (#21), and every staging call of a GPU lease within the
    device's 64 MiB working tree: tracked files outside weights/ + that call's weight folders + its staged blobs."""
    root = WEIGHTS.parent
    try:
        files = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    sizes = {f: (root / f).stat().st_size for f in files.decode().split("\0") if f and (root / f).is_file()}
    weights = {}
    for f, size in sizes.items():
        if f.startswith("weights/"):
            weights[f.split("/")[1]] = weights.get(f.split("/")[1], 0) + size
    rest = sum(size for f, size in sizes.items() if not f.startswith("weights/"))
    assert sum(weights.values()) <= 100e6, f"shipped weights take {sum(weights.values()) / 1e6:.1f} MB (> 100 MB)"
    for call, (folders, staged) in lease_calls(weights).items():
        total = rest + staged + sum(weights[w] for w in folders)
        assert total <= 64 * 2**20, f"lease call {call} would carry {total / 2**20:.1f} MiB (> 64 MiB)"
