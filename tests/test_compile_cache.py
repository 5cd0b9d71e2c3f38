"""driftin.train.compile_cache: a run loads the compiled code of an earlier machine before its first step and saves
its own when it ends (DRIFTIN_COMPILE_ARTIFACTS), only when it compiles; the file is replaced whole."""
import pytest
import torch

from driftin.train import TrainConfig, train
from driftin.train.compile_cache import ENV, load_artifacts, save_artifacts
from tiny_configs import TINY as TINY_TRAIN

TINY = {**TINY_TRAIN, "steps": 2}


@pytest.fixture
def compiler_calls(monkeypatch, aot_eager_compile):
    """torch.compiler's artifact functions recorded (the real ones need inductor's code generation); torch.compile
    without code generation (conftest)."""
    calls = []
    monkeypatch.setattr(torch.compiler, "load_cache_artifacts", lambda data: calls.append(("load", data)))
    monkeypatch.setattr(torch.compiler, "save_cache_artifacts", lambda: calls.append(("save",)) or (b"compiled here", None))
    return calls


def test_a_compiled_run_loads_the_artifacts_first_and_replaces_them_at_the_end(image_folder, tmp_path, monkeypatch,
                                                                                compiler_calls):
    path = tmp_path / "cache" / "ddpm.bin"
    path.parent.mkdir()
    path.write_bytes(b"from the last lease")
    monkeypatch.setenv(ENV, str(path))
    train(TrainConfig(**{**TINY, "data": image_folder, "compile": True, "out": str(tmp_path / "run")}), quiet=True)
    assert compiler_calls == [("load", b"from the last lease"), ("save",)]
    assert path.read_bytes() == b"compiled here" and list(path.parent.iterdir()) == [path]  # no temporary left


def test_without_the_variable_or_without_compiling_nothing_is_read_or_written(image_folder, tmp_path, monkeypatch,
                                                                               compiler_calls):
    train(TrainConfig(**{**TINY, "data": image_folder, "compile": True, "out": str(tmp_path / "a")}), quiet=True)
    monkeypatch.setenv(ENV, str(tmp_path / "art.bin"))
    train(TrainConfig(**{**TINY, "data": image_folder, "out": str(tmp_path / "b")}), quiet=True)  # eager
    assert compiler_calls == [] and not (tmp_path / "art.bin").exists()


def test_a_missing_file_is_a_first_run_and_nothing_compiled_writes_nothing(tmp_path, monkeypatch):
    assert load_artifacts(tmp_path / "none.bin") is False and load_artifacts(None) is False
    monkeypatch.setattr(torch.compiler, "save_cache_artifacts", lambda: None)
    assert save_artifacts(tmp_path / "a.bin") is None and not (tmp_path / "a.bin").exists()


def test_unusable_artifacts_warn_and_the_run_compiles_as_without(tmp_path, monkeypatch):
    def refuse(data):
        raise RuntimeError("written by another torch")

    monkeypatch.setattr(torch.compiler, "load_cache_artifacts", refuse)
    (tmp_path / "a.bin").write_bytes(b"old")
    with pytest.warns(UserWarning, match="another torch"):
        assert load_artifacts(tmp_path / "a.bin") is False
