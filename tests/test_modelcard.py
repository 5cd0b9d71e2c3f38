"""driftin.modelcard: README.md + training_curve.png generated from a weights folder's data. Offline, CPU."""
import dataclasses
import json
from pathlib import Path
import shutil

import pytest
import torch

from driftin.config import preset
from driftin.hub import save_pretrained
from driftin.modelcard import (FD_METRIC, FID_METRIC, MARKER, find_recipe, load_eval, load_speed, read_log, sample_grid_args,
                               train_command, write_model_card)
from driftin.train import TrainConfig
from driftin.unet import UNet, count_params

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def weights(tmp_path):
    """A tiny drift weights folder (as `train export` writes it), its run folder with log and sample grid, and eval.json."""
    from PIL import Image

    tc = TrainConfig(objective="drift", preset="tiny", steps=200, batch_size=64, out=str(tmp_path / "run"))
    torch.manual_seed(0)
    model = UNet(tc.model_config())
    folder = tmp_path / "weights" / "drift-tiny"
    save_pretrained(model, folder, {"objective": "drift", "steps": 200,
                                    "train_config": json.loads(json.dumps(dataclasses.asdict(tc)))})
    run = tmp_path / "run"
    run.mkdir()
    recs = [{"step": s, "loss": 2.0 / (1 + s / 20), "grad_norm": 1.0, "lr": 2e-4, "img_per_s": 900.0 + s, "peak_mem_gb": 0.0}
            for s in range(10, 210, 10)]
    lines = [json.dumps(r) for r in recs[:12]] + [json.dumps(r) for r in recs[8:]]  # resumed at step 90: steps repeat
    (run / "log.jsonl").write_text("\n".join(lines) + '\n{"step": 210, "lo')  # a line cut by a kill
    Image.new("RGB", (40, 40), (200, 30, 30)).save(run / "samples_0000200.png")
    (folder / "eval.json").write_text(json.dumps({
        "drift_steps1_g1": {"fid": 31.75, "kid": 0.0271, "fd": 12.5, "precision": 0.61, "recall": 0.52, "is_analogue": 7.9, "n": 50000, "method": "drift",
                            "steps": 1, "guidance": 1.0, "classes": "uniform", "reference": {"split": "train"}},
        "drift_steps1_g1_n10000": {"fid": 34.5, "fd": 14.25, "n": 10000, "method": "drift", "steps": 1, "guidance": 1.0},
        "broken": {"note": "no metrics"}}))
    return folder, run, model


def test_card_parses_and_carries_the_data(weights):
    from huggingface_hub import ModelCard
    from PIL import Image

    folder, run, model = weights
    # (not named infer_h100.json: the card refreshes that name from the repo's benchmarks/)
    (folder / "infer_test.json").write_text(json.dumps({"meta": {"gpu": "TestGPU"}, "rows": [
        {"preset": "tiny", "path": "fast", "kind": "drift", "bs": 256, "ms": 2.0736, "status": "ok"},
        {"preset": "tiny", "path": "fast", "kind": "ddim", "steps": 50, "bs": 256, "ms": 999.0, "status": "ok"}]}))
    path = write_model_card(folder, run_dir=run, repo_id="me/driftin-drift-tiny")
    card = ModelCard.load(path)
    d = card.data
    assert d.library_name == "driftin" and d.license == "mit" and d.datasets == ["cifar10"]
    assert d.pipeline_tag == "unconditional-image-generation"
    assert {"drifting", "one-step", "image-generation", "cifar10"} <= set(d.tags)
    fd = [r for r in d.eval_results if r.metric_type == FD_METRIC]
    assert [r.metric_value for r in fd] == [12.5]  # the quick n=10k run stays out of the metadata (it is in the table)
    assert fd[0].task_type == "unconditional-image-generation" and fd[0].dataset_type == "cifar10"
    assert "not Inception FID" in fd[0].metric_name
    fid = [r for r in d.eval_results if r.metric_type == FID_METRIC]
    assert [r.metric_value for r in fid] == [31.75] and "FID-50k (Inception, vs CIFAR-10 train)" in fid[0].metric_name
    assert "model-index" in path.read_text() and ModelCard(path.read_text()).data.eval_results

    text = card.text
    assert MARKER in text
    assert "![training curve](training_curve.png)" in text and "![samples](samples.png)" in text
    assert "| drift, 1 step | 50,000 | **31.75** | 27.10 | 12.50 |" in text and "| **34.50** |" in text
    assert "must not be used to compare" in text and "DDPM, 1000 steps (Ho et al. 2020) 3.17" in text
    assert "hf download me/driftin-drift-tiny --local-dir weights/drift-tiny" in text
    assert "python app.py --drift weights/drift-tiny" in text and 'load_pretrained("me/driftin-drift-tiny")' in text
    assert f"{count_params(model):,}" in text
    assert "Sampling speed on TestGPU" in text and "| fast | 1 step | 256 | 2.074 | 123,457 |" in text
    assert "DDIM-50" not in text  # only this model's sampler
    assert "torchrun --nproc_per_node=8 -m driftin.train" in text and "--preset tiny" in text

    png = folder / "training_curve.png"
    assert png.read_bytes()[:8] == PNG
    with Image.open(png) as im:
        im.verify()
    assert (folder / "samples.png").read_bytes() == (run / "samples_0000200.png").read_bytes()
    assert (folder / "train_log.jsonl").read_bytes() == (run / "log.jsonl").read_bytes()
    assert [r["step"] for r in read_log(folder / "train_log.jsonl")] == list(range(10, 210, 10))

    # the folder alone (as downloaded) regenerates the same card
    shutil.rmtree(run)
    before = path.read_text()
    write_model_card(folder, repo_id="me/driftin-drift-tiny")
    assert path.read_text() == before


def test_card_without_eval_log_or_grid(tmp_path):
    from huggingface_hub import ModelCard

    folder = tmp_path / "ddpm-tiny"
    save_pretrained(UNet(preset("tiny")), folder, {"objective": "ddpm"})
    card = ModelCard.load(write_model_card(folder))
    assert card.data.library_name == "driftin" and not card.data.eval_results
    assert "diffusion" in card.data.tags and "python -m driftin.eval --weights weights/ddpm-tiny" in card.text
    assert "<user>/driftin-ddpm-tiny" in card.text and 'method="ddim"' in card.text
    assert not (folder / "training_curve.png").exists() and "training_curve.png" not in card.text


def test_eval_and_speed_files_read_as_driftin_writes_them(tmp_path):
    """eval.json is {entry: metrics} (python -m driftin.eval); entries without a finite metric, non-dict entries and
    unreadable files are skipped rather than breaking the card; infer_*.json is {"meta", "rows"} (bench infer)."""
    (tmp_path / "eval.json").write_text(json.dumps({
        "drift_steps1_g1.5": {"fid": 30.5, "fd": 3.5, "precision": 0.7, "recall": 0.6, "is_analogue": 9.0, "n": 50000,
                              "method": "drift", "steps": 1, "guidance": 1.5, "reference": {"split": "train"}},
        "ddim_steps50_g1": {"fd": "nan", "method": "ddim"}, "junk": "x", "ddim_steps25_g1": {"method": "ddim", "steps": 25}}))
    rows = load_eval(tmp_path)
    assert len(rows) == 1 and rows[0]["fid"] == 30.5 and rows[0]["is"] == 9.0 and rows[0]["guidance"] == 1.5
    assert rows[0]["name"] == "drift_steps1_g1.5" and rows[0]["split"] == "train"
    (tmp_path / "eval.json").write_text("{not json")
    assert load_eval(tmp_path) == []
    (tmp_path / "infer_h100.json").write_text(json.dumps({"meta": {"gpu": "H100"}, "rows": [{"kind": "drift", "bs": 1}]}))
    (tmp_path / "infer_bad.json").write_text(json.dumps({"drift-tiny": {"img_per_s": 1e5}}))  # not bench infer output
    assert load_speed(tmp_path) == [("infer_h100.json", {"gpu": "H100"}, [{"kind": "drift", "bs": 1}])]


def test_training_command_uses_a_matching_recipe(tmp_path):
    (tmp_path / "training").mkdir()
    recipe = {"objective": "drift", "preset": "base", "batch_size": 1024, "steps": 50000, "out": "runs/drift_cifar10",
              "drift": {"cfg_max": 2.0}}
    (tmp_path / "training" / "drift_cifar10.json").write_text(json.dumps(recipe))
    (tmp_path / "training" / "ddpm_cifar10.json").write_text(json.dumps({"objective": "ddpm", "out": "runs/ddpm"}))
    from driftin.config import from_dict

    tc = json.loads(json.dumps(dataclasses.asdict(from_dict(TrainConfig, recipe))))
    assert find_recipe(tc, tmp_path) == ("training/drift_cifar10.json", [])
    assert train_command(tc, tmp_path) == "torchrun --nproc_per_node=8 -m driftin.train --config training/drift_cifar10.json"
    tc["lr"], tc["drift"]["temperatures"] = 1e-4, [0.05]
    assert train_command(tc, tmp_path).endswith("--config training/drift_cifar10.json --lr 0.0001 --drift-temperatures '[0.05]'")
    # no recipe: flags reconstructed from the trainer's defaults, and they parse back to the same config
    recipe, flags = find_recipe(tc, tmp_path / "nowhere")
    assert recipe is None
    import shlex

    from driftin.train import parse_args

    argv = shlex.split(" ".join(flags))
    assert json.loads(json.dumps(dataclasses.asdict(parse_args(argv)[0]))) == tc


def test_bench_infer_rows_pick_this_preset_and_sampler():
    from driftin.modelcard import _speed_rows
    rows = [dict(preset=p, path=path, kind=k, bs=bs, steps=st, ms=ms, status=s, guidance=g)
            for p, path, k, bs, st, ms, s, g in [
                ("small", "fast", "drift", 1, None, 0.8, "ok", 2.0), ("small", "eager-fp32", "drift", 1, None, 12.0, "ok", 2.0),
                ("small", "fast", "drift", 256, None, 5.0, "skipped (time budget)", 2.0),
                ("base", "fast", "drift", 1, None, 1.1, "ok", 2.0), ("small", "fast", "ddim", 1, 50, 38.8, "ok", None),
                ("small", "graph-bf16", "drift", 1, None, 0.9, "ok", 2.0)]]
    cols, cells = _speed_rows(rows, "small", drift=True)
    assert cols == ["path", "sampler", "batch", "ms per call", "images/s"]
    assert cells == [["fast", "1 step", 1, "0.800", "1,250"], ["eager-fp32", "1 step", 1, "12.000", "83"]]
    cols, cells = _speed_rows(rows, "small", drift=False)
    assert cells == [["fast", "DDIM-50", 1, "38.800", "26"]]


def test_card_shows_the_recorded_training_command(tmp_path):
    """A folder whose config.json records the trainer's arguments (train_args) shows them, not a derived command."""
    from driftin.modelcard import reproduce_command
    from driftin.train import weights_meta

    tc = json.loads(json.dumps(dataclasses.asdict(TrainConfig(objective="ddpm", preset="tiny", steps=5))))
    meta = weights_meta(tc, 5, 40, [], ["--config", "training/ddpm_cifar10.json", "--steps", "5", "--out", "runs/my run"])
    assert meta["train_args"][-1] == "runs/my run" and "train_args" not in weights_meta(tc, 5, 40, [])
    cmd = reproduce_command(meta, tmp_path)
    assert cmd == "torchrun --nproc_per_node=8 -m driftin.train --config training/ddpm_cifar10.json --steps 5 --out 'runs/my run'"
    assert reproduce_command({"train_config": tc}, tmp_path / "nowhere").startswith("torchrun --nproc_per_node=8 -m driftin.train --")
    folder = tmp_path / "ddpm-tiny"
    save_pretrained(UNet(preset("tiny")), folder, meta)
    assert cmd in write_model_card(folder).read_text()


def test_chain_blocks_shown_however_the_folder_is_named(monkeypatch):
    """A card built for "." (python -m driftin.publish card . from inside the folder) still finds its chain script."""
    from driftin.modelcard import build_card_text

    folder = Path(__file__).resolve().parents[1] / "weights" / "drift-cifar10"
    if not (folder / "config.json").exists() or not json.loads((folder / "config.json").read_text()).get("chain"):
        pytest.skip("no chained drift weights in this checkout")
    monkeypatch.chdir(folder)
    assert "(`training/chains/drift-cifar10.sh`)" in build_card_text(".")


def test_card_names_the_exports_ema_decay_and_the_ddim_spacing(tmp_path):
    """An export of one of the run's ema_extra averages says its own decay (config.json's ema_decay, not the recipe's),
    and a quadratic-spacing DDIM entry gets its own label beside the uniform one."""
    tc = TrainConfig(objective="ddpm", preset="tiny", steps=200, ema_decay=0.999, ema_extra=(0.9998,))
    folder = tmp_path / "ddpm-tiny"
    save_pretrained(UNet(tc.model_config()), folder, {"objective": "ddpm", "steps": 200, "ema_decay": 0.9998,
                                                       "train_config": json.loads(json.dumps(dataclasses.asdict(tc)))})
    entry = {"fid": 9.5, "fd": 1.0, "n": 50000, "method": "ddim", "steps": 50, "guidance": 1.0, "classes": "uniform"}
    (folder / "eval.json").write_text(json.dumps({"ddim_steps50_g1": {**entry, "spacing": "uniform"},
                                                  "ddim_steps50_g1_quadratic": {**entry, "fid": 7.5, "spacing": "quadratic"},
                                                  "ddim_steps50_g1.5_n10000": {**entry, "fid": 5.0, "n": 10000, "guidance": 1.5}}))
    assert [r["spacing"] for r in load_eval(folder) if r["n"] == 50000] == ["uniform", "quadratic"]
    text = Path(write_model_card(folder)).read_text()
    assert "EMA (decay 0.9998) at step 200" in text and "EMA (decay 0.999)" not in text
    assert "ddim, 50 steps, quadratic spacing" in text and "ddim, 50 steps |" in text
    # the usage snippet samples with the best FID-50k setting (a lower FID-10k does not count)
    assert 'method="ddim", steps=50, spacing="quadratic")' in text and "guidance=1.5" not in text
    assert "--n 64 --spacing quadratic --out grid.png" in text  # the CLI line samples the same way
    # ... and a guided FID-50k that beats both is shown with its guidance (its spacing uniform: no spacing argument)
    (folder / "eval.json").write_text(json.dumps({"ddim_steps50_g1": {**entry, "spacing": "uniform"},
                                                  "ddim_steps50_g1.5": {**entry, "fid": 6.2, "guidance": 1.5}}))
    text = Path(write_model_card(folder)).read_text()
    assert 'method="ddim", steps=50, guidance=1.5)' in text and "--n 64 --guidance 1.5 --out grid.png" in text
    # ... and guidance in a limited interval: its label, the snippet, the CLI line and the sample grid all carry it
    (folder / "eval.json").write_text(json.dumps({"ddim_steps50_g1.5": {**entry, "fid": 6.2, "guidance": 1.5},
                                                  "ddim_steps50_g2.5_i80-580": {**entry, "fid": 5.9, "guidance": 2.5,
                                                                                "guidance_interval": [80, 580]}}))
    text = Path(write_model_card(folder)).read_text()
    assert "ddim, 50 steps, guidance 2.5, guided at t 80-580" in text
    assert 'steps=50, guidance=2.5, guidance_interval=(80, 580))' in text
    assert "--n 64 --guidance 2.5 --guidance-interval 80 580 --out grid.png" in text
    assert sample_grid_args(folder) == ["--weights", str(folder), "--n", "100", "--nrow", "10", "--method", "ddim",
                                        "--steps", "50", "--guidance", "2.5", "--guidance-interval", "80", "580",
                                        "--out", str(folder / "samples.png")]
