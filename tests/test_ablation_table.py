"""scripts/ablation_table.py: rows from run folders, including the arms of a chain block continued from weights."""
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ablation_table.py"
spec = importlib.util.spec_from_file_location("ablation_table", SCRIPT)
table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(table)


def _arm(root, name, encoder, fids):
    """A chain arm as gpu_lease.sh leaves it: config, a log starting with its boundary record, export/eval.json."""
    d = root / name
    (d / "export").mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"batch_size": 640, "steps": 10_000_000, "out": str(d),
                                               "drift": {"encoder_weights": encoder}}))
    log = [{"event": "boundary", "step": 8600, "images_seen": 5_504_000},
           {"step": 8650, "loss": 31.0, "img_per_s": 100.0, "images_seen": 5_536_000},
           {"step": 8700, "loss": 30.0, "img_per_s": 3000.0, "images_seen": 5_568_000}]
    (d / "log.jsonl").write_text("\n".join(json.dumps(r) for r in log) + "\n")
    (d / "export" / "eval.json").write_text(json.dumps(
        {f"drift_steps1_g{g}": {"fid": f, "kid": 0.01, "fd": 0.8, "n": 50_000} for g, f in fids.items()}))


def test_chain_arms_are_rows_counted_from_their_boundary(tmp_path):
    _arm(tmp_path, "chain_drift", "", {1: 23.5, 1.5: 22.5})
    _arm(tmp_path, "chain_drift_trial", "enc-bn", {1: 21.0})
    out = table.main([str(tmp_path), "--rows", "chain_drift", "chain_drift_trial", "--reference", "chain_drift",
                      "--entry", "drift_steps1_g1", "--out", str(tmp_path / "t.json"), "--md", str(tmp_path / "t.md")])
    main, trial = out["rows"]
    assert (main["steps"], main["images_seen"], main["from_step"], main["fid"]) == (100, 64_000, 8600, 23.5)
    assert main["change"] == {} and trial["change"] == {"drift.encoder_weights": "enc-bn"} and trial["fid"] == 21.0
    assert main["img_per_s_median"] == 3000.0  # the first window (compile) left out
    assert "21.00 (50k)" in (tmp_path / "t.md").read_text()


def test_an_eval_with_several_entries_needs_one_named(tmp_path):
    _arm(tmp_path, "chain_drift", "", {1: 23.5, 1.5: 22.5})
    with pytest.raises(ValueError, match="--entry"):
        table.main([str(tmp_path), "--reference", "chain_drift", "--out", str(tmp_path / "t.json")])


def test_rows_read_at_a_step_take_the_chains_snapshot_there(tmp_path):
    """--at-step: a row continued from the shipped weights to step N is compared with the chain's snapshot at N
    (its eval there, its log up to N), not with the chain's final export."""
    _arm(tmp_path, "chain_drift", "", {1: 23.5, 1.5: 22.5})
    snap = tmp_path / "chain_drift" / "snapshots" / "step_0008650"
    snap.mkdir(parents=True)
    (snap / "eval.json").write_text(json.dumps({"drift_steps1_g1_n10000": {"fid": 26.0, "kid": 0.02, "fd": 0.9, "n": 10_000}}))
    row = tmp_path / "ablation" / "05_queues"
    row.mkdir(parents=True)
    (row / "config.json").write_text(json.dumps({"batch_size": 640, "out": str(row), "drift": {"encoder_weights": "", "pos_queue": 128}}))
    (row / "log.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"event": "boundary", "step": 8600, "images_seen": 5_504_000},
        {"step": 8650, "loss": 29.0, "img_per_s": 2000.0, "images_seen": 5_536_000}]) + "\n")
    (row / "eval.json").write_text(json.dumps({"drift_steps1_g1_n10000": {"fid": 25.0, "kid": 0.02, "fd": 0.9, "n": 10_000}}))
    out = table.main([str(tmp_path), "--rows", "chain_drift", "ablation/05_queues", "--reference", "chain_drift",
                      "--at-step", "8650", "--out", str(tmp_path / "t.json")])
    chain, queues = out["rows"]
    assert (chain["steps"], chain["images_seen"], chain["fid"], chain["n"]) == (50, 32_000, 26.0, 10_000)
    assert (queues["row"], queues["steps"], queues["fid"]) == ("05_queues", 50, 25.0)
    assert queues["change"] == {"drift.pos_queue": 128}


def test_at_step_refuses_a_row_that_did_not_get_there(tmp_path):
    _arm(tmp_path, "chain_drift", "", {1: 23.5})  # logged up to step 8700, no snapshots
    args = [str(tmp_path), "--rows", "chain_drift", "--reference", "chain_drift", "--out", str(tmp_path / "t.json")]
    with pytest.raises(ValueError, match="stopped at step 8700, before --at-step 9000"):
        table.main([*args, "--at-step", "9000"])
    with pytest.raises(ValueError, match="went on to step 8700 and has no evaluated snapshot at 8650"):
        table.main([*args, "--at-step", "8650"])
    assert table.main([*args, "--at-step", "8700"])["rows"][0]["fid"] == 23.5  # ended there: its own eval
