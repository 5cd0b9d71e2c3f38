import functools
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """A handful of smooth 32x32 images in two classes, as an ImageFolder."""
    from PIL import Image

    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    for c in range(2):
        (root / f"class{c}").mkdir()
        for i in range(4):
            col = rng.uniform(0, 1, 3)
            img = np.stack([col[k] * (xx if (i + k + c) % 2 else yy) for k in range(3)], -1)
            Image.fromarray((img * 255).astype(np.uint8)).save(root / f"class{c}" / f"{i}.png")
    return str(root)


@pytest.fixture
def aot_eager_compile(monkeypatch):
    """torch.compile with dynamo + AOT autograd only (no code generation: CPU tests cannot afford inductor), from a
    fresh dynamo state. Every module sees it: they all call the one torch.compile."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    torch._dynamo.reset()
