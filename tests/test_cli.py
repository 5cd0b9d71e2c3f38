"""The `driftin` command: dispatch to the module CLIs, one-line errors, sample defaults."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from driftin import cli

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from driftin.config import preset
    from driftin.hub import save_pretrained
    from driftin.unet import UNet

    folder = tmp_path_factory.mktemp("w") / "drift-cifar10"
    torch.manual_seed(0)
    save_pretrained(UNet(preset("tiny", num_classes=10, zero_init_out=False)), folder, {"objective": "drift"})
    return folder


def test_help_lists_the_commands(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("train", "sample", "eval", "publish", "app"):
        assert f"\n  {cmd} " in out
    assert cli.main([]) == 2 and "usage: driftin" in capsys.readouterr().err
    assert cli.main(["frobnicate"]) == 2 and "unknown command" in capsys.readouterr().err


@pytest.mark.parametrize("cmd", ["train", "sample", "publish", "app"])
def test_subcommand_help_is_the_modules(cmd, capsys):
    assert cli.main([cmd, "--help"]) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.startswith("usage: ") and cmd in first and "--" in out  # (publish/eval name themselves `python -m ...`)


def test_errors_are_one_line_without_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    # a real process, so nothing (not even an interpreter's last-resort traceback) goes unseen; the `driftin`
    # command itself is run the same way in test_package.py
    r = subprocess.run([sys.executable, "-m", "driftin.sample", "--weights", str(tmp_path / "nope")],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "error:" in r.stderr and "does not exist" in r.stderr
    r = subprocess.run([sys.executable, "-m", "driftin.cli", "--debug", "sample", "--weights", str(tmp_path / "nope")],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode != 0 and "Traceback" in r.stderr and "WeightsMissing" in r.stderr


def test_corrupt_weights_error_says_corrupt(tiny, tmp_path, capsys):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny, bad)
    (bad / "config.json").write_text("{not json")
    assert cli.main(["sample", "--weights", str(bad), "--out", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err
    assert "corrupt" in err and err.count("\n") == 1


def test_sample_defaults_to_a_class_per_image(tiny, tmp_path, monkeypatch, capsys):
    from PIL import Image
    from torchvision.utils import save_image

    from driftin.generate import generate
    from driftin.hub import load_pretrained

    monkeypatch.setenv("DRIFTIN_WEIGHTS", str(tiny.parent))  # a bare name is looked up there
    out = tmp_path / "grid.png"
    assert cli.main(["sample", "--weights", "drift-cifar10", "--n", "12", "--device", "cpu", "--out", str(out)]) == 0
    net = load_pretrained(tiny)
    for labels, same in ((torch.arange(12) % 10, True), (None, False)):
        ref = tmp_path / "ref.png"
        save_image(generate(net, 12, 0, class_labels=labels), ref, nrow=8)
        assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(ref))) == same
    uncond = tmp_path / "uncond.png"
    assert cli.main(["sample", "--weights", str(tiny), "--n", "12", "--class", "unconditional", "--out", str(uncond)]) == 0
    assert np.array_equal(np.asarray(Image.open(uncond)), np.asarray(Image.open(ref)))  # one flag away
    assert cli.main(["sample", "--weights", str(tiny), "--class", "dragon"]) == 1
    assert "dragon" in capsys.readouterr().err


def test_class_names_and_indices_mean_the_same_in_the_cli_and_the_app():
    from driftin.data import class_index
    from driftin.demo import parse_class
    from driftin.sample import class_labels

    for name, want in (("cat", 3), (" Truck", 9), ("0", 0), ("9", 9), ("10", None), ("dragon", None), ("-1", None)):
        assert class_index(name) == want
        if want is not None:
            assert class_labels(name, 4, 10) == want and parse_class(name) == want
    assert class_index("truck", num_classes=5) is None and class_index("4", num_classes=5) == 4


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_app_bad_device_is_one_line(capsys, tmp_path):
    pytest.importorskip("gradio")
    assert cli.main(["app", "--device", "cuda", "--drift", str(tmp_path), "--ddpm", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "CUDA is not available" in err and err.count("\n") == 1 and "Traceback" not in err
