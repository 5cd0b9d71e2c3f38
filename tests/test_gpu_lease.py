"""scripts/gpu_lease.sh's job logic, run on CPU with its functions sourced and the device steps stubbed: `run` records
each step's command (and marks it done) instead of running it, `nvidia-smi` lists as many GPUs as the test asks."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROWS = [line.split()[0] for line in (ROOT / "training" / "ablation" / "rows.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def job(tmp_path, body: str, gpus: int, env: dict | None = None) -> list[str]:
    """Source the script, stub the device, run `body` from the repository root; the recorded steps, one per line."""
    listing = "".join(f"GPU {i}: NVIDIA H200 (UUID: GPU-{i})\\n" for i in range(gpus))
    script = f"""
        source scripts/gpu_lease.sh
        O={tmp_path} S={tmp_path}/stage
        nvidia-smi() {{ printf '{listing}'; }}
        run() {{ echo "$*" >> $O/steps; touch $O/$1.done; }}
        {body}
    """
    subprocess.run(["bash", "-c", script], cwd=ROOT, check=True, env={"PATH": "/usr/bin:/bin", **(env or {})})
    steps = tmp_path / "steps"
    return steps.read_text().splitlines() if steps.exists() else []


def gpu_of(steps: list[str], row: str) -> set[str]:
    """The CUDA_VISIBLE_DEVICES each of a row's three steps (train, export, eval) ran with."""
    mine = [s for s in steps if s.split()[0] in (f"abl_{row}", f"abl_{row}_export", f"abl_{row}_eval")]
    assert len(mine) == 3, mine
    return {s.split()[2] for s in mine}


@pytest.mark.parametrize("gpus", [1, 2, 8])
def test_ablation_runs_every_row_once_on_gpu_i_mod_the_gpus(tmp_path, gpus):
    steps = job(tmp_path, "ablation", gpus)
    assert len(steps) == 3 * len(ROWS)
    for i, row in enumerate(ROWS):
        assert gpu_of(steps, row) == {f"CUDA_VISIBLE_DEVICES={i % gpus}"}
    # each GPU runs its rows in file order, each row's train -> export -> eval in order
    for g in range(gpus):
        mine = [s.split()[0] for s in steps if s.split()[2] == f"CUDA_VISIBLE_DEVICES={g}"]
        assert mine == [f"abl_{r}{x}" for r in ROWS[g::gpus] for x in ("", "_export", "_eval")]


def test_ablation_rows_keep_their_flags_and_the_budget(tmp_path):
    steps = job(tmp_path, "ablation", 2, {"ABL_ROWS": "04_paper_cfg 07_group128", "ABL_STEPS": "300"})
    train = {s.split()[0]: s for s in steps if not s.endswith("eval.json") and "export" not in s.split()[0]}
    assert sorted(train) == ["abl_04_paper_cfg", "abl_07_group128"]
    assert "--drift-cfg-max 4.0 --drift-cfg-alpha power" in train["abl_04_paper_cfg"]
    assert "--batch-size 1280 --seed 0 --steps 300" in train["abl_07_group128"]
    assert gpu_of(steps, "04_paper_cfg") == {"CUDA_VISIBLE_DEVICES=0"}
    assert gpu_of(steps, "07_group128") == {"CUDA_VISIBLE_DEVICES=1"}


@pytest.mark.parametrize("gpus, first, used", [(8, 3, [3, 4, 5, 6, 7]), (2, 1, [1]), (1, 3, [0])])
def test_ablation_beside_the_chains_takes_the_gpus_from_abl_gpu_first(tmp_path, gpus, first, used):
    steps = job(tmp_path, "ablation", gpus, {"ABL_GPU_FIRST": str(first)})
    for i, row in enumerate(ROWS):
        assert gpu_of(steps, row) == {f"CUDA_VISIBLE_DEVICES={used[i % len(used)]}"}


def arms_gpu(steps: list[str]) -> dict[str, set[str]]:
    """Each chain arm's CUDA_VISIBLE_DEVICES over all its steps (train, export, curve, evals, extra EMAs)."""
    out = {}
    for s in steps:
        name, arm = s.split()[0], None
        for a in ("drift_trial", "drift", "ddpm"):  # the longest first: drift_trial's steps also contain "drift"
            if a in name:
                arm = a
                break
        out.setdefault(arm, set()).add(s.split()[2])
    return out


@pytest.mark.parametrize("gpus, expect", [(1, {"drift": "0", "ddpm": "0", "drift_trial": "0"}),
                                          (2, {"drift": "0", "ddpm": "1", "drift_trial": "0"}),
                                          (3, {"drift": "0", "ddpm": "1", "drift_trial": "2"})])
def test_chain_arms_each_run_every_step_on_their_gpu(tmp_path, gpus, expect):
    steps = job(tmp_path, "chains; trial", gpus, {"CHAIN_EMA_EXTRA": "0.9995", "CHAIN_MODELS": "drift ddpm"})
    assert arms_gpu(steps) == {arm: {f"CUDA_VISIBLE_DEVICES={g}"} for arm, g in expect.items()}
    names = {s.split()[0] for s in steps}
    assert {"chain_drift_trial", "export_drift_trial", "curve_drift_trial", "eval_drift_trial1", "chain_ddpm",
            "eval_drift_ema0.9995"} <= names


def test_gpus_counts_one_where_nvidia_smi_lists_none(tmp_path):
    out = subprocess.run(["bash", "-c", "source scripts/gpu_lease.sh; nvidia-smi() { return 9; }; gpus"],
                         cwd=ROOT, check=True, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "1"


def test_exports_lists_each_arms_fids_best_first_with_its_collect_line(tmp_path):
    """Block 11's lease collected the worse of two exports by reading bare "fid" lines in glob order: `exports` names
    every export with its FID, marks the best of each arm and prints the collect argument for its shards."""
    evals = {"chain_drift/export": 9.58, "chain_drift/export_ema0.9995": 9.24, "chain_ddpm/export": 8.5}
    for folder, fid in evals.items():
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "eval.json").write_text(json.dumps({"g1": {"fid": fid, "n": 50000}}))
        for shard in ("model-00002-of-00002.safetensors", "model-00001-of-00002.safetensors"):
            (tmp_path / folder / shard).write_bytes(b"")
    out = subprocess.run(["bash", "-c", f"source scripts/gpu_lease.sh; O={tmp_path}; exports"], cwd=ROOT, check=True,
                         capture_output=True, text=True, env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"})
    lines = out.stdout.splitlines()
    drift = lines.index("chain_drift/export_ema0.9995  g1  FID-50000: 9.24  <- best")
    assert lines[drift + 1] == "chain_drift/export  g1  FID-50000: 9.58"
    assert lines[drift + 2] == ('  collect "chain_drift/export_ema0.9995/model-00001-of-00002.safetensors '
                                'chain_drift/export_ema0.9995/model-00002-of-00002.safetensors"   (or: collect best)')
    assert "chain_ddpm/export  g1  FID-50000: 8.50  <- best" in lines


def test_collect_best_brings_back_the_lowest_fid_export_of_each_arm(tmp_path):
    res, out = tmp_path / "res", tmp_path / "out"
    out.mkdir()
    for folder, fid in {"chain_drift/export": 9.58, "chain_drift/export_ema0.9995": 9.24}.items():
        (res / folder).mkdir(parents=True)
        (res / folder / "eval.json").write_text(json.dumps({"g1": {"fid": fid, "n": 50000}}))
        (res / folder / "model.safetensors").write_bytes(folder.encode())
    subprocess.run(["bash", "scripts/gpu_lease.sh", "collect", "best"], cwd=ROOT, check=True, capture_output=True,
                   env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "OUT": str(out), "DRIFTIN_LEASE_RES": str(res)})
    parts = sorted(p.name for p in out.iterdir())
    assert parts == ["chain_drift_export_ema0.9995_model.safetensors.part00", "results.tgz"]
    assert (out / parts[0]).read_bytes() == b"chain_drift/export_ema0.9995"


@pytest.mark.parametrize("env, pre, ft", [({}, None, None), ({"MAE_EPOCHS": "80", "MAE_FT_EPOCHS": "40"}, "80", "40")])
def test_mae_pretrains_then_fine_tunes_the_pretrained_net_for_the_epochs_asked(tmp_path, env, pre, ft):
    steps = job(tmp_path, "mae", 1, env)
    assert [s.split()[0] for s in steps] == ["mae_pretrain", "mae_finetune"]
    assert f"--init {tmp_path}/encoder-resnet-mae-cifar10 " in steps[1]
    for step, epochs in zip(steps, (pre, ft)):
        assert (f"--epochs {epochs} " in step) if epochs else ("--epochs" not in step)


def test_exports_skip_an_unreadable_or_unscored_eval_and_keep_the_others(tmp_path):
    """An eval cut short (half-written JSON, no FID) is named on stderr; the other exports and arms still count."""
    for folder, text in {"chain_drift/export": "{\"g1\": {\"fid\": 9", "chain_drift/export_ema0.9995": '{"g1": {"n": 5}}',
                         "chain_drift/export_ema0.9998": '{"g1": {"fid": 9.3, "n": 50000}}',
                         "chain_ddpm/export": '{"g1": {"fid": 8.5, "n": 50000}}'}.items():
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "eval.json").write_text(text)
        (tmp_path / folder / "model.safetensors").write_bytes(b"")
    (tmp_path / "chain_drift_trial").mkdir()  # an arm whose evals never ran
    (tmp_path / "chain_drift.log").write_text("")  # the job's logs beside the arms' folders are no arms
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    best = subprocess.run(["bash", "-c", f"source scripts/gpu_lease.sh; O={tmp_path}; exports best"], cwd=ROOT,
                          check=True, capture_output=True, text=True, env=env)
    assert best.stdout.split() == ["chain_ddpm/export/model.safetensors", "chain_drift/export_ema0.9998/model.safetensors"]
    assert "skipped chain_drift/export/eval.json" in best.stderr
    assert "skipped chain_drift/export_ema0.9995/eval.json [g1]: no FID" in best.stderr
    assert "chain_drift_trial has no scored export" in best.stderr
