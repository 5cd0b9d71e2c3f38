"""scripts/land_chain.py: shards rebuilt from the parts a lease returns, and the block's command made local."""
import importlib.util
import json
import shlex
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "land_chain.py"
spec = importlib.util.spec_from_file_location("land_chain", SCRIPT)
land_chain = importlib.util.module_from_spec(spec)
spec.loader.exec_module(land_chain)


def _export(tmp_path, arm="drift_trial"):
    """An export folder with its index and one shard, split into 3 parts the way `gpu_lease.sh collect` names them."""
    export, files_at = tmp_path / "res" / f"chain_{arm}" / "export", tmp_path / "device"
    export.mkdir(parents=True)
    files_at.mkdir()
    tensors = {"a.weight": torch.randn(64, 64), "b.bias": torch.arange(10.0)}
    save_file(tensors, tmp_path / "shard.safetensors")
    blob = (tmp_path / "shard.safetensors").read_bytes()
    name = "model-00001-of-00001.safetensors"
    (export / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {k: name for k in tensors}}))
    third = len(blob) // 3 + 1
    for i in range(3):
        (files_at / f"chain_{arm}_export_{name}.part{i:02d}").write_bytes(blob[i * third:(i + 1) * third])
    return export, files_at, name, tensors


def test_shards_are_rebuilt_from_their_parts_in_order(tmp_path):
    export, files_at, name, tensors = _export(tmp_path)
    (shard,) = land_chain.rebuild_shards(files_at, "drift_trial", export)
    assert shard == export / name
    got = load_file(shard)
    assert got.keys() == tensors.keys() and all(torch.equal(got[k], tensors[k]) for k in tensors)


def test_a_lost_part_or_arm_is_an_error_not_a_shipped_shard(tmp_path):
    export, files_at, name, _ = _export(tmp_path)
    (files_at / f"chain_drift_trial_export_{name}.part02").unlink()  # truncated: the header promises more bytes
    with pytest.raises(Exception):
        land_chain.rebuild_shards(files_at, "drift_trial", export)
    with pytest.raises(FileNotFoundError, match="arm 'drift'"):
        land_chain.rebuild_shards(files_at, "drift", export)


def test_an_extra_emas_export_is_rebuilt_from_its_own_parts_and_named_in_the_command(tmp_path):
    export, files_at, name, tensors = _export(tmp_path)
    ema = export.parent / "export_ema0.9998"  # gpu_lease's CHAIN_EMA_EXTRA exports; collect names its parts after it
    export.rename(ema)
    for p in files_at.iterdir():
        p.rename(p.with_name(p.name.replace("_export_", "_export_ema0.9998_")))
    (shard,) = land_chain.rebuild_shards(files_at, "drift_trial", ema)
    assert all(torch.equal(load_file(shard)[k], v) for k, v in tensors.items())
    assert land_chain.block_command(["--out", "/root/res/chain_drift"], "drift", 7, 0.9998).endswith(
        "\npython -m driftin.train export runs/drift-cifar10-b7 weights/drift-cifar10 --ema-decay 0.9998")


def test_a_block_command_stops_at_the_step_the_block_reached_not_after_minutes():
    args = ["--config", "training/drift_cifar10.json", "--steps", "10000000", "--max-minutes", "9", "--out", "/root/res/x"]
    cmd = land_chain.block_command(args, "drift", 8, 0.999, end_step=29700).split("\n")[0]
    assert cmd == "python -m driftin.train --config training/drift_cifar10.json --steps 29700 --out runs/drift-cifar10-b8"
    assert land_chain.stop_at(["--lr", "1e-4"], 500) == ["--lr", "1e-4", "--steps", "500"]


def test_a_cool_down_block_cut_short_by_its_minutes_reproduces_its_learning_rates():
    from driftin.train import lr_at
    from driftin.train.cli import parse_args

    recipe = str(SCRIPT.parents[1] / "training" / "drift_cifar10.json")
    ran = ["--config", recipe, "--steps", "63250", "--lr-decay", "[51250,63250]",
           "--max-minutes", "17", "--warmup", "100", "--out", "/root/res/chain_drift"]
    cmd = land_chain.block_command(ran, "drift", 11, end_step=62000).split("\n")[0]
    assert "--steps 62000 --lr-decay '[51250,63250]'" in cmd
    again = shlex.split(cmd)[3:]  # after `python -m driftin.train`
    (cfg_ran, _), (cfg_again, _) = parse_args(ran), parse_args(again)
    assert (cfg_again.steps, cfg_again.lr_decay) == (62000, (51250, 63250))
    rates = [lr_at(s, cfg_ran, 51250) for s in range(51250, 62000, 50)]
    assert [lr_at(s, cfg_again, 51250) for s in range(51250, 62000, 50)] == rates and rates[-1] < rates[10] / 5


def test_block_command_runs_from_a_checkout():
    args = ["--config", "training/ddpm_cifar10.json", "--init-from", "/root/stage/weights/ddpm-cifar10", "--steps", "10000000",
            "--max-minutes", "10", "--out", "/root/res/chain_ddpm", "--ema-decay", "0.9999"]
    assert land_chain.block_command(args, "ddpm", 4) == (
        "python -m driftin.train --config training/ddpm_cifar10.json --init-from weights/ddpm-cifar10 --steps 10000000 "
        "--max-minutes 10 --out runs/ddpm-cifar10-b4 --ema-decay 0.9999\n"
        "python -m driftin.train export runs/ddpm-cifar10-b4 weights/ddpm-cifar10")


def test_a_landed_config_names_the_repositorys_weight_folders_not_the_devices():
    config = {"train_config": {"drift": {"encoder_weights": "/root/stage/weights/encoder-resnet-bn-cifar10"}, "lr": 3e-4},
              "chain": [{"init_from": "/root/stage/weights/drift-cifar10", "step": 6000}],
              "train_args": ["--out", "/root/res/chain_drift"]}
    assert land_chain.local_paths(config) == {
        "train_config": {"drift": {"encoder_weights": "weights/encoder-resnet-bn-cifar10"}, "lr": 3e-4},
        "chain": [{"init_from": "weights/drift-cifar10", "step": 6000}],
        "train_args": ["--out", "/root/res/chain_drift"]}  # outputs stay as they ran: block_command names its own


def test_a_landed_configs_command_and_resume_folder_are_the_blocks_local_ones():
    config = {"chain": [{"step": 6000}, {"step": 8600}], "train_config": {"out": "/root/res/chain_ddpm"},
              "train_args": ["--init-from", "/root/stage/weights/ddpm-cifar10", "--out", "/root/res/chain_ddpm"]}
    local = land_chain.local_config(config, "ddpm")  # two boundaries before it: block 3
    assert local["train_args"] == ["--init-from", "weights/ddpm-cifar10", "--out", "runs/ddpm-cifar10-b3"]
    assert local["train_config"]["out"] == "runs/ddpm-cifar10-b3"
    assert land_chain.block_command(config["train_args"], "ddpm", land_chain.block_of(config)).endswith(
        "export runs/ddpm-cifar10-b3 weights/ddpm-cifar10")


def test_a_landed_block_redraws_its_grid_after_its_eval_is_in_place(tmp_path, monkeypatch):
    """The grid is drawn from the landed folder (modelcard.sample_grid_args reads its eval.json for the setting)."""
    export, files_at, _, _ = _export(tmp_path, arm="ddpm")
    (export / "eval.json").write_text(json.dumps({"g1.5": {"method": "ddim", "steps": 50, "n": 50000, "guidance": 1.5,
                                                           "classes": "uniform", "fid": 6.2}}))
    (export / "config.json").write_text(json.dumps({"objective": "ddpm", "chain": [{"step": 10}], "steps": 20,
                                                    "train_config": {"ema_decay": 0.9999, "out": "/root/res/chain_ddpm"},
                                                    "train_args": ["--out", "/root/res/chain_ddpm"]}))
    (export.parent / "log.jsonl").write_text("")
    root = tmp_path / "repo"
    (root / "weights" / "ddpm-cifar10").mkdir(parents=True)
    drawn = []
    monkeypatch.setattr(land_chain, "ROOT", root)
    monkeypatch.setattr(land_chain.subprocess, "run", lambda cmd, **kw: None)  # the card
    monkeypatch.setattr(land_chain, "draw_samples", lambda d: drawn.append((d, json.loads((d / "eval.json").read_text()))))
    command = land_chain.land(tmp_path / "res", files_at, "ddpm", "ddpm")
    assert drawn == [(root / "weights" / "ddpm-cifar10", {"g1.5": json.loads((export / "eval.json").read_text())["g1.5"]})]
    assert "--steps 20" in command  # the block stops where it stopped
