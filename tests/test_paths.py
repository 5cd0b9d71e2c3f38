"""driftin.paths: default locations from env vars, the CWD and the checkout (what an installed package relies on)."""
import re
from pathlib import Path

from driftin import data, paths

ROOT = Path(__file__).resolve().parent.parent


def test_checkout_is_detected():
    assert paths.checkout_root() == ROOT and paths.project_root() == ROOT and data.REPO == ROOT


def test_weights_lookup_order(tmp_path, monkeypatch):
    env, cwd = tmp_path / "env", tmp_path / "cwd"
    (cwd / "weights" / "m").mkdir(parents=True)
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("DRIFTIN_WEIGHTS", raising=False)
    assert paths.find_weights("m") == (cwd / "weights" / "m").resolve()  # ./weights
    (env / "m").mkdir(parents=True)
    monkeypatch.setenv("DRIFTIN_WEIGHTS", str(env))
    assert paths.find_weights("m") == (env / "m").resolve()  # the env var comes first
    assert paths.find_weights("nothing-here") is None and paths.default_weights("nothing-here") == "weights/nothing-here"
    assert paths.weights_candidates("x")[-1] == ROOT / "weights" / "x"  # then the checkout


def test_hub_resolves_a_bare_name(tmp_path, monkeypatch):
    import pytest

    from driftin.hub import WeightsMissing, resolve

    (tmp_path / "w" / "tiny-model").mkdir(parents=True)
    monkeypatch.setenv("DRIFTIN_WEIGHTS", str(tmp_path / "w"))
    assert resolve("tiny-model") == (tmp_path / "w" / "tiny-model").resolve()
    with pytest.raises(WeightsMissing, match="looked in"):
        resolve("not-there")


def test_data_and_cache(tmp_path, monkeypatch):
    shared = tmp_path / "shared" / "data" / "cifar10"
    shared.mkdir(parents=True)
    (shared / "train.tar.gz").write_bytes(b"")
    work = tmp_path / "main"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("DRIFTIN_DATA", raising=False)
    assert shared in paths.data_candidates()  # ../shared relative to the CWD
    explicit = tmp_path / "mine"
    explicit.mkdir()
    (explicit / "train.tar.gz").write_bytes(b"")
    monkeypatch.setenv("DRIFTIN_DATA", str(explicit))
    assert data.default_cifar_root() == explicit  # DRIFTIN_DATA first
    monkeypatch.setenv("DRIFTIN_CACHE", str(tmp_path / "c"))
    assert data.cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()


def test_requirements_match_the_apps_gradio():
    reqs = (ROOT / "requirements.txt").read_text()
    assert re.search(r"^gradio>=6\b", reqs, re.M)  # the app uses Gradio 6 APIs
    assert 'gradio>=6,<7' in (ROOT / "pyproject.toml").read_text()
