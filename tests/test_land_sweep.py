"""scripts/land_sweep.py: a DDIM sweep lands in benchmarks/ and, for the shipped weights' step only, in their eval.json
and card (whose usage then samples at the best guidance)."""
import dataclasses
import importlib.util
import json
from pathlib import Path

from driftin.hub import save_pretrained
from driftin.train import TrainConfig
from driftin.unet import UNet

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "land_sweep.py"
spec = importlib.util.spec_from_file_location("land_sweep", SCRIPT)
land_sweep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(land_sweep)


def _entry(fid, guidance, n=50_000, step=200):
    return {"fid": fid, "fd": 1.0, "n": n, "method": "ddim", "steps": 50, "guidance": guidance, "classes": "uniform",
            "spacing": "uniform", "train_steps": step}


def test_sweep_lands_for_the_shipped_step_only(tmp_path, capsys, monkeypatch):
    drawn = []
    monkeypatch.setattr(land_sweep, "draw_samples", lambda folder: drawn.append(folder) or folder / "samples.png")
    tc = TrainConfig(objective="ddpm", preset="tiny", steps=200)
    folder = tmp_path / "ddpm-tiny"
    save_pretrained(UNet(tc.model_config()), folder, {"objective": "ddpm", "steps": 200,
                                                       "train_config": json.loads(json.dumps(dataclasses.asdict(tc)))})
    (folder / "eval.json").write_text(json.dumps({"ddim_steps50_g1": _entry(9.0, 1.0)}))
    sweep = {"ddim_steps50_g2_n10000": _entry(7.0, 2.0, n=10_000), "ddim_steps50_g2": _entry(6.0, 2.0),
             "ddim_steps50_g3": _entry(1.0, 3.0, step=100)}  # other weights: history, never the shipped number
    (tmp_path / "sweep.json").write_text(json.dumps(sweep))
    bench = tmp_path / "bench.json"

    assert land_sweep.main([str(tmp_path / "sweep.json"), "--weights", str(folder), "--bench", str(bench)]) == 0
    assert json.loads(bench.read_text()) == sweep
    assert set(json.loads((folder / "eval.json").read_text())) == {"ddim_steps50_g1", "ddim_steps50_g2"}
    assert 'method="ddim", steps=50, guidance=2)' in (folder / "README.md").read_text()
    out = capsys.readouterr().out
    assert "ddim_steps50_g3" in out and "best DDIM-50: guidance 2, uniform spacing, FID-50k 6.00" in out
    assert "set DDIM_GUIDANCE = 2 and DDIM_GUIDANCE_INTERVAL = None" in out  # 2 is not the app's default
    assert drawn == [folder] and "redrawn" in out  # the best setting changed: the grid follows it (sample_grid_args)
    drawn.clear()
    land_sweep.main([str(tmp_path / "sweep.json"), "--weights", str(folder), "--bench", str(bench)])
    assert drawn == []  # landed again: the same best, the grid stays
    # a best with a guidance interval: the app (every step guided) must not take its scale
    sweep["ddim_steps50_g3_i80-580"] = {**_entry(5.0, 3.0), "guidance_interval": [80, 580]}
    (tmp_path / "sweep.json").write_text(json.dumps(sweep))
    capsys.readouterr()
    land_sweep.main([str(tmp_path / "sweep.json"), "--weights", str(folder), "--bench", str(bench)])
    out = capsys.readouterr().out
    assert "guidance 3 (guided at t 80-580)" in out and "DDIM_GUIDANCE = 3 and DDIM_GUIDANCE_INTERVAL = (80, 580)" in out
    assert 'guidance=3, guidance_interval=(80, 580))' in (folder / "README.md").read_text()
