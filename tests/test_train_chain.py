"""Issue #17 on the CPU: the device-resident data path, the deferred finiteness check, runs continued
from inference weights (the boundary between GPU blocks), EMA snapshots, the time limit, and the
training bench."""
import dataclasses
import json

import pytest
import torch

from driftin import distributed as dist
from driftin.checkpoint import load_checkpoint
from driftin.data import DeviceData
from driftin.diffusion import ddpm_mse
from driftin.hub import load_pretrained
from driftin.train import StepOptions, StepRandom, Trainer, TrainConfig, export, lr_at, train
from tiny_configs import TINY



def read_log(path):
    return [json.loads(line) for line in open(path)]


def test_device_data_draws_class_balanced_batches_from_the_generator():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (50, 3, 4, 4), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 3, (50,), generator=gen)
    data = DeviceData(images, labels, "cpu", num_classes=3)
    idx, mask = data.indices(12, torch.Generator().manual_seed(5))
    assert torch.equal(labels[idx], torch.arange(3).repeat_interleave(4))  # 4 of each class, sorted by class
    again = data.indices(12, torch.Generator().manual_seed(5))
    assert torch.equal(idx, again[0]) and torch.equal(mask, again[1])  # a function of the seed
    assert not torch.equal(idx, data.indices(12, torch.Generator().manual_seed(6))[0])
    x, y = data.gather(idx, mask)
    assert torch.equal(y, labels[idx]) and mask.any() and (~mask).any()
    assert torch.equal(x[mask], images[idx][mask].flip(-1)) and torch.equal(x[~mask], images[idx][~mask])
    # draws cover each pool (no index beyond it, every member reachable)
    many = torch.cat([data.indices(300, torch.Generator().manual_seed(s))[0] for s in range(3)])
    assert set(many.tolist()) == set(range(50))
    with pytest.raises(ValueError, match="class 3 has no images"):
        DeviceData(images, labels, "cpu", num_classes=4)


@pytest.mark.parametrize("device_data", [True, False])
def test_batch_images_and_their_timesteps_are_independent_draws(device_data):
    """Regression: the batch indices and the step's own draws (timesteps, noise) once came from generators with
    equal seeds at seed 0, so timestep == image index mod 1000: every image was trained at one fixed timestep."""
    n = 2000
    images, labels = torch.zeros(n, 3, 32, 32, dtype=torch.uint8), torch.zeros(n, dtype=torch.long)
    cfg = TrainConfig(**{**TINY, "objective": "ddpm", "class_cond": False, "batch_size": 256, "seed": 0})
    opts = StepOptions() if device_data else StepOptions.naive()
    tr = Trainer(cfg, "cpu", images, labels, opts)
    same = 0
    for step in range(4):
        if device_data:
            idx = tr.batch_indices(step)[0]
        else:  # the naive path draws with the same seed on a CPU generator
            idx = torch.randint(n, (256,), generator=StepRandom(cfg.seed, step, "cpu").stream("batch"))
        t = tr.batch(step)["rng"].randint(1000, 256)  # what DDPMLoss draws first
        same += int((t == idx % 1000).sum())
    assert same < 0.02 * 4 * 256  # ~1/1000 by chance; all of them with the old seeds


@pytest.mark.parametrize("objective", ["ddpm", "drift"])
def test_every_rank_slices_the_same_global_batch(monkeypatch, objective):
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(40) % 2
    cfg = TrainConfig(**{**TINY, "objective": objective, "drift": {"encoder": "pixels"}})
    whole = Trainer(cfg, "cpu", images, labels).batch(7)
    for r in range(2):
        monkeypatch.setattr(dist, "world", lambda: 2)
        monkeypatch.setattr(dist, "rank", lambda r=r: r)
        part = Trainer(cfg, "cpu", images, labels).batch(7)
        assert torch.equal(part["x"], whole["x"][4 * r:4 * r + 4]) and torch.equal(part["y"], whole["y"][4 * r:4 * r + 4])


def test_non_finite_loss_is_caught_at_the_next_checkpoint_without_per_step_syncs(image_folder, tmp_path):
    # no log step before the end: the check at the step-2 checkpoint must catch the step-1 blow-up
    cfg = TrainConfig(**{**TINY, "data": image_folder, "steps": 4, "lr": 1e30, "log_every": 100, "ckpt_every": 1, "out": str(tmp_path)})
    with pytest.raises(FloatingPointError, match=r"non-finite loss .*at step 1.*last good checkpoint is .*checkpoint.pt \(step 1\)"):
        train(cfg, quiet=True)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["step"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values())


def test_optimizer_state_moves_between_step_options():
    images, labels = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8), torch.arange(8) % 2
    cfg = TrainConfig(**TINY)
    naive = Trainer(cfg, "cpu", images, labels, StepOptions.naive())
    naive.step(0)
    fast = Trainer(cfg, "cpu", images, labels, StepOptions(device_data=False))  # same batches, foreach AdamW and EMA
    fast.load_optimizer(naive.opt.state_dict())
    assert fast.opt.param_groups[0]["foreach"] is True  # ours, not the writer's (False)
    fast.model.load_state_dict(naive.model.state_dict())
    naive.step(1)
    fast.step(1)
    for a, b in zip(naive.model.parameters(), fast.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)  # same state, same update


def test_run_continued_from_weights_keeps_steps_schedule_data_and_loss(image_folder, tmp_path, monkeypatch):
    drawn = {}
    orig = Trainer.batch_indices

    def spy(self, step, *rng):
        idx, mask = orig(self, step, *rng)
        drawn.setdefault(self.cfg.out, {})[step] = (idx.clone(), mask.clone())
        return idx, mask
    monkeypatch.setattr(Trainer, "batch_indices", spy)

    base = {**TINY, "data": image_folder, "steps": 20, "lr": 5e-3, "warmup": 3, "ema_decay": 0.5, "ckpt_every": 1000}
    full = train(TrainConfig(**base, snapshot_every=10, out=str(tmp_path / "full")), quiet=True)
    snap = tmp_path / "full" / "snapshots" / "step_0000010"
    meta = load_pretrained(snap).meta
    assert (meta["steps"], meta["images_seen"], meta["objective"]) == (10, 80, "ddpm")

    cont_cfg = TrainConfig(**base, out=str(tmp_path / "cont"))
    cont = train(cont_cfg, quiet=True, init_from=str(snap))
    assert (cont["step"], cont["images_seen"]) == (20, 160)
    # data order: the same batches at the same steps
    a, b = drawn[str(tmp_path / "full")], drawn[str(tmp_path / "cont")]
    assert sorted(b) == list(range(10, 20))
    assert all(torch.equal(a[s][0], b[s][0]) and torch.equal(a[s][1], b[s][1]) for s in b)
    # the log: a boundary record, then steps and images seen continue, the LR warms up again from step 10
    log = read_log(tmp_path / "cont" / "log.jsonl")
    assert log[0] == {**log[0], "event": "boundary", "step": 10, "images_seen": 80, "init_from": str(snap), "warmup_from": 10}
    recs = log[1:]
    assert [r["step"] for r in recs] == list(range(11, 21)) and recs[-1]["images_seen"] == 160
    assert [r["lr"] for r in recs] == pytest.approx([lr_at(s, cont_cfg, 10) for s in range(10, 20)])
    assert recs[0]["lr"] == pytest.approx(5e-3 / 3)
    # the loss goes on from where it was, far below a fresh model's
    full_loss = {r["step"]: r["loss"] for r in read_log(tmp_path / "full" / "log.jsonl")}
    fresh = sum(full_loss[s] for s in (1, 2, 3)) / 3
    before = sum(full_loss[s] for s in range(11, 16)) / 5
    after = sum(r["loss"] for r in recs[:5]) / 5
    assert abs(after - before) < 0.25 * (fresh - before), (fresh, before, after)
    # the next block knows where this one ended: checkpoint and exported weights carry steps, images, chain
    ck = load_checkpoint(tmp_path / "cont" / "checkpoint.pt")
    assert ck["meta"]["images_seen"] == 160 and ck["meta"]["warm_start"] == 10
    assert ck["meta"]["chain"] == [{"step": 10, "images_seen": 80, "init_from": str(snap)}]
    w = load_pretrained(export(tmp_path / "cont", tmp_path / "w"))
    assert (w.meta["steps"], w.meta["images_seen"], w.meta["chain"]) == (20, 160, ck["meta"]["chain"])
    # export of the uninterrupted run == its last snapshot (same meta, same fp16 weights)
    last = load_pretrained(tmp_path / "full" / "snapshots" / "step_0000020")
    exp = load_pretrained(export(tmp_path / "full", tmp_path / "w_full"))
    assert exp.meta == last.meta and exp.meta["images_seen"] == 160 and exp.meta["chain"] == []
    for (k, x), y in zip(exp.state_dict().items(), last.state_dict().values()):
        assert torch.equal(x, y), k
    for k, v in full["ema"].state_dict().items():
        torch.testing.assert_close(last.state_dict()[k], v.half().float(), msg=k)


def test_lr_warms_up_holds_then_falls_linearly_to_zero_at_the_decay_end():
    cfg = TrainConfig(lr=1.0, steps=100, warmup=10, lr_decay=(80, 100))
    expect = {0: 0.1, 4: 0.5, 9: 1.0, 50: 1.0, 80: 1.0, 81: 0.95, 90: 0.5, 99: 0.05}
    assert {s: lr_at(s, cfg) for s in expect} == pytest.approx(expect)
    # a block continued at step 85 warms up again and meets the fall: the lower of the two ramps
    assert [lr_at(s, cfg, 85) for s in (85, 88, 95, 99)] == pytest.approx([0.1, 0.4, 0.25, 0.05])
    # the fall is in absolute steps: where the run stops (`steps`) does not move it; past its end the rate is 0
    assert lr_at(90, dataclasses.replace(cfg, steps=91)) == pytest.approx(0.5)
    assert lr_at(100, dataclasses.replace(cfg, steps=200)) == 0.0
    constant = dataclasses.replace(cfg, lr_decay=())
    assert [lr_at(s, constant) for s in (9, 99, 10_000)] == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("decay", [(5,), (10, 10), (-1, 4), (1.5, 4), (1, 2, 3), (False, True), 5, None])
def test_a_malformed_lr_decay_is_refused_by_name(decay):
    with pytest.raises(ValueError, match=r"lr_decay .*two steps \(FIRST, END\)"):
        TrainConfig(lr_decay=decay)


def test_the_optimizer_runs_the_decayed_rate_and_the_cli_sets_it(image_folder, tmp_path):
    from driftin.train.cli import parse_args

    cfg, _ = parse_args(["--lr-decay", "[2, 6]", "--steps", "6", "--preset", "tiny"])
    assert (cfg.lr_decay, cfg.steps) == ((2, 6), 6)
    cfg = TrainConfig(**{**TINY, "data": image_folder, "steps": 6, "lr_decay": [2, 6], "out": str(tmp_path)})
    r = train(cfg, quiet=True)
    lrs = [rec["lr"] for rec in read_log(tmp_path / "log.jsonl")]
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-3, 0.75e-3, 0.5e-3, 0.25e-3])
    assert r["optimizer"].param_groups[0]["lr"] == pytest.approx(0.25e-3)  # what the last step ran, not only logged


def test_a_block_starting_at_or_after_its_decay_end_is_refused(image_folder, tmp_path):
    cfg = TrainConfig(**{**TINY, "data": image_folder, "steps": 2, "snapshot_every": 2, "out": str(tmp_path / "a")})
    train(cfg, quiet=True)
    snap = tmp_path / "a" / "snapshots" / "step_0000002"
    late = dataclasses.replace(cfg, steps=8, lr_decay=(0, 2), out=str(tmp_path / "b"))  # a recipe's fall reused
    with pytest.raises(ValueError, match=r"lr_decay \[0, 2\] ends at step 2, but this run starts at step 2"):
        train(late, quiet=True, init_from=str(snap))


def test_init_from_refuses_the_other_objective(image_folder, tmp_path):
    cfg = TrainConfig(**{**TINY, "data": image_folder, "steps": 1, "snapshot_every": 1, "out": str(tmp_path / "a")})
    train(cfg, quiet=True)
    meta = json.loads((tmp_path / "a" / "snapshots" / "step_0000001" / "config.json").read_text())
    meta["objective"] = "drift"
    (tmp_path / "a" / "snapshots" / "step_0000001" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="holds 'drift' weights"):
        train(TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "b"), "steps": 2}), quiet=True,
              init_from=str(tmp_path / "a" / "snapshots" / "step_0000001"))


def test_a_run_may_continue_weights_with_dropout_but_not_another_architecture(image_folder, tmp_path):
    """dropout has no weights: a block may turn it on (the DDPM paper's 0.1) over weights trained without; its
    UNet then drops activations in training mode. A real architecture change is still refused, naming the key."""
    cfg = TrainConfig(**{**TINY, "data": image_folder, "steps": 1, "snapshot_every": 1, "out": str(tmp_path / "a")})
    train(cfg, quiet=True)
    snap = str(tmp_path / "a" / "snapshots" / "step_0000001")
    assert json.loads((tmp_path / "a" / "snapshots" / "step_0000001" / "config.json").read_text())["model"]["dropout"] == 0.0
    drop = TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "b"), "steps": 2, "dropout": 0.1})
    assert drop.model_config().dropout == 0.1
    r = train(drop, quiet=True, init_from=snap)
    assert r["step"] == 2 and r["model"].config.dropout == 0.1
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.1 for m in r["model"].modules())
    with pytest.raises(ValueError, match="different architecture: keys .*base_channels") as refused:
        train(TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "c"), "steps": 2, "preset": "small", "dropout": 0.1}),
              quiet=True, init_from=snap)
    assert "dropout" not in str(refused.value)  # only what has weights is named


def test_time_limit_stops_with_a_checkpoint_and_the_run_resumes(image_folder, tmp_path):
    cfg = TrainConfig(**{**TINY, "data": image_folder, "steps": 5, "log_every": 2, "out": str(tmp_path)})
    r = train(cfg, quiet=True, max_minutes=1e-9)
    assert r["step"] == 2 and load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 2
    r = train(cfg, quiet=True)
    assert (r["step"], r["images_seen"]) == (5, 40)


def test_bench_train_reports_the_trainer_step_and_the_baseline(tmp_path, monkeypatch):
    from driftin.bench.__main__ import main
    from driftin.train import trainer

    seen = []  # the overridden cudnn_benchmark reaches every Trainer the bench builds (their one backend set-up)
    real = trainer.set_backends
    monkeypatch.setattr(trainer, "set_backends", lambda cfg, device: seen.append(cfg.cudnn_benchmark) or real(cfg, device))

    out, md = tmp_path / "train.json", tmp_path / "train.md"
    rc = main(["train", "--device", "cpu", "--presets", "tiny", "--batch", "20", "--variants", "baseline", "eager",
               "--steps", "2", "--warmup", "1", "--num-images", "40", "--drift-config", "training/drift_pixels_cifar10.json",
               "--peak-tflops", "1", "--out", str(out), "--md", str(md), "--profile", str(tmp_path / "prof"), "--profile-steps", "2",
               "--force-layout", "true", "--compile-field", "true", "--drift-encoder-weights", "some/encoder",
               "--cudnn-benchmark", "true"])
    assert rc == 0 and len(seen) == 6 and all(seen)  # per objective: the FLOP count's Trainer, then one per variant
    res = json.loads(out.read_text())
    assert res["meta"]["peak_tflops"] == 1 and res["meta"]["steps"] == 2
    rows = res["rows"]
    assert [(r["objective"], r["variant"]) for r in rows] == [("ddpm", "baseline"), ("ddpm", "eager"), ("drift", "baseline"), ("drift", "eager")]
    for r in rows:
        assert r["status"] == "ok" and r["preset"] == "tiny" and r["batch"] == 20 and r["compile_fallback"] is None
        assert r["force_layout"] is None and r["compile_field"] is None  # asked for, but compiled steps only
        assert r["cudnn_benchmark"] is None  # asked for, but CUDA only
        assert r.get("encoder_weights") == ("some/encoder" if r["objective"] == "drift" else None)  # (pixels: unused)
        assert r["ms_per_step"] > 0 and r["img_per_s"] == pytest.approx(20 / r["ms_per_step"] * 1e3)
        assert r["flop_per_step"] > 1e8 and r["tflops"] == pytest.approx(r["flop_per_step"] / r["ms_per_step"] / 1e9)
        assert r["mfu"] == pytest.approx(r["tflops"]) and r["loss"] == r["loss"]  # peak 1 TFLOP/s; loss not NaN
    assert rows[0]["speedup_vs_baseline"] == 1.0 and rows[1]["speedup_vs_baseline"] == pytest.approx(rows[0]["ms_per_step"] / rows[1]["ms_per_step"])
    assert "| ddpm | tiny | 20 | eager |" in md.read_text()
    for r in rows:  # the profiler summary of each row (no device on CPU: only host numbers), its op table on disk
        assert r["profile"]["calls"] == 2 and r["profile"]["wall_ms"] > 0 and r["profile"]["device_busy_ms"] is None
    assert "by self host time" in (tmp_path / "prof" / "drift_tiny_20_eager.txt").read_text()
    from driftin.bench.train import markdown  # a compiled row with the forced layout says so in its variant column

    compiled = {**rows[1], "variant": "graphs", "force_layout": True}
    assert "| ddpm | tiny | 20 | graphs force-layout |" in markdown({**res, "rows": [compiled]})
    compiled = {**rows[3], "variant": "compiled", "force_layout": True, "compile_field": True}
    assert "| drift | tiny | 20 | compiled force-layout + field |" in markdown({**res, "rows": [compiled]})
    assert "| ddpm | tiny | 20 | eager cudnn-benchmark |" in markdown({**res, "rows": [{**rows[1], "cudnn_benchmark": True}]})


def test_drift_queues_are_checkpointed_and_resume_bit_exactly(image_folder, tmp_path):
    drift = {"encoder": "pixels", "cfg_max": 2.0, "uncond_per_group": 2, "pos_queue": 4, "queue_push": 2,
             "uncond_source": "separate", "uncond_queue": 16}
    cfg = TrainConfig(**{**TINY, "objective": "drift", "data": image_folder, "steps": 4, "ckpt_every": 2, "drift": drift})
    full = train(TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "full")}), quiet=True)
    part = TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "part")})
    train(part, stop_after=2, quiet=True)
    saved = load_checkpoint(tmp_path / "part" / "checkpoint.pt")["objective"]
    assert {"pos", "unc"} <= set(saved) and int(saved["unc_n"]) == 16  # two pushes of the 8-image global batch
    resumed = train(part, quiet=True)
    for key in ("model", "ema"):
        for (k, a), b in zip(full[key].state_dict().items(), resumed[key].state_dict().values()):
            assert torch.equal(a, b), f"{key}.{k} differs after resume"


def _compiled_trainer(monkeypatch, backend):
    """A compile=True DDPM trainer whose torch.compile uses `backend` (CPU tests cannot afford inductor)."""
    import functools

    from driftin import diffusion
    real_compile = torch.compile
    monkeypatch.setattr(diffusion.torch, "compile", functools.partial(real_compile, backend=backend))
    images, labels = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8), torch.arange(8) % 2
    torch._dynamo.reset()
    return Trainer(TrainConfig(**{**TINY, "compile": True}), "cpu", images, labels), images, labels


def test_whole_ddpm_loss_compiles_and_matches_eager(monkeypatch):
    tr, images, labels = _compiled_trainer(monkeypatch, "aot_eager")  # dynamo + AOT autograd, no code generation
    eager = Trainer(TrainConfig(**TINY), "cpu", images, labels)
    for s in range(2):
        a, b = tr.step(s), eager.step(s)
        torch.testing.assert_close(a[0], b[0])
        torch.testing.assert_close(a[2], b[2])
    assert tr.compiled and tr.compile_error is None and tr.objective.mse is not ddpm_mse


def test_drift_compiles_generator_and_features_and_matches_eager(aot_eager_compile):
    """compile=True for drift: the generator and the encoder + feature groups are compiled (here with dynamo + AOT
    autograd, no code generation) and the step equals the eager one; channels_last puts the encoder in NHWC too."""
    # seeded: with unseeded images (the global RNG, i.e. whatever tests ran before) the step-1 grad norms of the
    # compiled and eager steps differed by up to ~0.1%, at this test's bound, on some draws
    gen = torch.Generator().manual_seed(0)
    images, labels = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=gen), torch.arange(40) % 2
    cfg = TrainConfig(**{**TINY, "objective": "drift", "drift": {"encoder": "cifar", "cfg_max": 2.0, "uncond_per_group": 2}})
    fast = Trainer(dataclasses.replace(cfg, compile=True), "cpu", images, labels, StepOptions(compile=True, channels_last=True))
    slow = Trainer(cfg, "cpu", images, labels, StepOptions())
    conv = next(m for m in fast.objective.encoder.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    for s in range(2):
        a, b = fast.step(s), slow.step(s)
        torch.testing.assert_close(a[0], b[0], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(a[2], b[2], rtol=1e-3, atol=1e-3)
    assert fast.compiled and fast.compile_error is None and fast.objective._features_compiled is not None
    fast._eager_again(RuntimeError("test"))  # the fallback switches the features back to eager too
    assert fast.objective._features_compiled is None


def test_compiled_drift_field_matches_eager_and_falls_back(aot_eager_compile):
    """compile_field: the field loss compiled as well (one graph per feature map) gives the eager step's loss and
    gradient; the eager fallback restores the plain field; the Triton field keeps its own kernels."""
    from driftin.drift.field import drift_loss

    gen = torch.Generator().manual_seed(0)
    images, labels = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=gen), torch.arange(40) % 2
    cfg = TrainConfig(**{**TINY, "objective": "drift", "compile": True, "compile_field": True,
                         "drift": {"encoder": "pixels", "cfg_max": 2.0, "uncond_per_group": 2, "impl": "torch"}})
    opts = StepOptions.for_config(cfg, "cpu")
    assert opts.compile_field
    fast = Trainer(cfg, "cpu", images, labels, opts)
    slow = Trainer(dataclasses.replace(cfg, compile=False), "cpu", images, labels, StepOptions())
    for s in range(2):
        a, b = fast.step(s), slow.step(s)
        torch.testing.assert_close(a[0], b[0], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(a[2], b[2], rtol=1e-3, atol=1e-3)
    assert fast.compiled and fast.compile_error is None and fast.objective.field_loss is not drift_loss
    assert slow.objective.field_loss is drift_loss
    fast._eager_again(RuntimeError("test"))
    assert fast.objective.field_loss is drift_loss
    for impl in ("triton", "auto"):  # "auto" may pick Triton on a GPU
        other = Trainer(dataclasses.replace(cfg, drift=dataclasses.replace(cfg.drift, impl=impl)), "cpu", images, labels, opts)
        other.objective.compile(field=True)
        assert other.objective.field_loss is drift_loss


def test_a_failing_compile_falls_back_to_eager_with_the_same_step(monkeypatch):
    def broken(gm, example_inputs):
        raise RuntimeError("no compiler here")
    tr, images, labels = _compiled_trainer(monkeypatch, broken)
    loss, _, gnorm = tr.step(0)
    assert not tr.compiled and "no compiler here" in tr.compile_error
    eager = Trainer(TrainConfig(**TINY), "cpu", images, labels)
    torch.testing.assert_close(eager.step(0)[0], loss)  # the retried step is the same step
    monkeypatch.setenv("DRIFTIN_COMPILE_STRICT", "1")
    strict, _, _ = _compiled_trainer(monkeypatch, broken)
    with pytest.raises(Exception, match="no compiler here"):
        strict.step(0)


def test_each_kind_of_draw_has_its_own_stream():
    """Two kinds of draw on one stream id would draw the same bits (the seed-collision bug this table prevents)."""
    from driftin.data import STREAMS

    assert len(set(STREAMS.values())) == len(STREAMS) and min(STREAMS.values()) >= 1


def test_extra_emas_follow_their_decays_resume_bit_exactly_and_export(image_folder, tmp_path):
    """ema_extra: each extra EMA is the lerp chain of the weights after every step at its own decay (a slow reference
    here), survives a kill and resume bit-exactly, starts from the main EMA where a checkpoint lacks it, and export
    picks it by decay (an unknown decay is refused, naming the kept ones)."""
    base = {**TINY, "data": image_folder, "steps": 6, "ckpt_every": 3, "ema_decay": 0.9, "ema_extra": (0.5,)}
    cfg = TrainConfig(**base, out=str(tmp_path / "full"))
    images, labels = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8), torch.arange(8) % 2
    tr = Trainer(cfg, "cpu", images, labels)
    ref = {k: v.clone() for k, v in tr.model.state_dict().items()}
    for step in range(3):
        tr.step(step)
        for k, v in tr.model.state_dict().items():
            ref[k] = 0.5 * ref[k] + 0.5 * v if v.is_floating_point() else v.clone()
    for k, v in tr.ema_extra[0.5].state_dict().items():
        torch.testing.assert_close(v, ref[k], msg=k)
    assert any(not torch.equal(a, b) for a, b in zip(tr.ema_extra[0.5].parameters(), tr.ema.parameters()))

    full = train(cfg, quiet=True)
    part = TrainConfig(**base, out=str(tmp_path / "part"))
    train(part, stop_after=3, quiet=True)
    resumed = train(part, quiet=True)
    for (k, a), b in zip(full["trainer"].ema_extra[0.5].state_dict().items(), resumed["trainer"].ema_extra[0.5].state_dict().values()):
        assert torch.equal(a, b), f"ema_extra 0.5 {k} differs after resume"

    # a checkpoint without the extra EMA (written before it was asked for): it starts from the main EMA
    state = load_checkpoint(tmp_path / "part" / "checkpoint.pt")
    assert set(state["ema_extra"]) == {"0.5"}
    more = Trainer(TrainConfig(**{**base, "ema_extra": (0.5, 0.99)}), "cpu", images, labels)
    more.load_state(state)
    assert all(torch.equal(a, b) for a, b in zip(more.ema_extra[0.99].state_dict().values(), state["ema"].values()))
    assert all(torch.equal(a, b) for a, b in zip(more.ema_extra[0.5].state_dict().values(), state["ema_extra"]["0.5"].values()))

    main_w = load_pretrained(export(tmp_path / "full", tmp_path / "w_main"))
    extra_w = load_pretrained(export(tmp_path / "full", tmp_path / "w_extra", 0.5))
    assert (main_w.meta["ema_decay"], extra_w.meta["ema_decay"]) == (0.9, 0.5)
    for k, v in full["trainer"].ema_extra[0.5].state_dict().items():
        torch.testing.assert_close(extra_w.state_dict()[k], v.half().float(), msg=k)
    with pytest.raises(ValueError, match=r"no EMA with decay 0.7: it kept \[0.9, 0.5\]"):
        export(tmp_path / "full", tmp_path / "w_bad", 0.7)
