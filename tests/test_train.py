import dataclasses
import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from driftin.checkpoint import load_checkpoint
from driftin.data import class_pools, global_batch
from driftin.train import COMPILE_MODES, TrainConfig, parse_args, train
from driftin.train.recipe import compile_kwargs, uses_cudagraphs, without_cudagraphs
from tiny_configs import TINY



def test_tiny_ddpm_overfits_a_handful_of_images(image_folder, tmp_path):
    cfg = TrainConfig(**{**TINY, "data": image_folder, "steps": 150, "lr": 3e-3, "out": str(tmp_path), "ckpt_every": 1000})
    train(cfg, quiet=True)
    losses = [json.loads(line)["loss"] for line in open(tmp_path / "log.jsonl")]
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < first / 4, (first, last)


def test_kill_and_resume_is_bit_exact(image_folder, tmp_path):
    cfg = TrainConfig(**{**TINY, "data": image_folder, "steps": 6, "ckpt_every": 3})
    full = train(TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "full")}), quiet=True)
    part = TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "part")})
    train(part, stop_after=3, quiet=True)  # "killed" after the step-3 checkpoint
    assert load_checkpoint(tmp_path / "part" / "checkpoint.pt")["step"] == 3
    resumed = train(part, quiet=True)
    for key in ("model", "ema"):
        for (k, a), b in zip(full[key].state_dict().items(), resumed[key].state_dict().values()):
            assert torch.equal(a, b), f"{key}.{k} differs after resume"


def test_non_finite_loss_stops_with_clear_message(image_folder, tmp_path):
    cfg = TrainConfig(**{**TINY, "data": image_folder, "steps": 3, "lr": 1e30, "out": str(tmp_path)})
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        train(cfg, quiet=True)


def test_cli_flags_and_recipe(tmp_path):
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"objective": "drift", "steps": 5, "drift": {"kernel_norm": "y"}}))
    cfg, run = parse_args(["--init-from", "w", "--config", str(recipe), "--batch-size", "64", "--drift-temperatures", "[0.05]",
                           "--bf16", "false", "--max-minutes", "9.5", "--snapshot-every", "100"])
    assert (cfg.objective, cfg.steps, cfg.batch_size, cfg.bf16, cfg.snapshot_every) == ("drift", 5, 64, False, 100)
    assert cfg.drift.kernel_norm == "y" and cfg.drift.temperatures == (0.05,)
    assert (run.init_from, run.max_minutes) == ("w", 9.5)
    with pytest.raises(ValueError, match="objective"):
        TrainConfig(objective="gan")
    with pytest.raises(ValueError, match="compile_mode"):
        TrainConfig(compile_mode="fastest")


def test_cudnn_benchmark_flag_defaults_off_and_old_configs_load():
    assert TrainConfig().cudnn_benchmark is False and parse_args([])[0].cudnn_benchmark is False
    assert parse_args(["--cudnn-benchmark", "true"])[0].cudnn_benchmark is True
    assert parse_args(["--cudnn-benchmark", "false"])[0].cudnn_benchmark is False
    from driftin.config import from_dict

    old = {k: v for k, v in dataclasses.asdict(TrainConfig(compile_field=True)).items() if k != "cudnn_benchmark"}
    cfg = from_dict(TrainConfig, old)  # a checkpoint's or weights folder's config.json from before the key
    assert cfg.cudnn_benchmark is False and cfg.compile_field is True


def test_ema_extra_flag_takes_a_number_or_a_list_and_refuses_decays_outside_0_1():
    assert TrainConfig().ema_extra == () and parse_args(["--ema-extra", "0.9998"])[0].ema_extra == (0.9998,)
    assert parse_args(["--ema-extra", "[0.99, 0.9999]"])[0].ema_extra == (0.99, 0.9999)
    assert TrainConfig(ema_extra=[0.99]).ema_extra == (0.99,)  # a recipe's JSON list
    for bad in ((1.0,), (0.0,), (0.99, 1.5)):
        with pytest.raises(ValueError, match="ema_extra"):
            TrainConfig(ema_decay=0.9995, ema_extra=bad)
    # ema_decay itself and repeats are kept already: dropped, so one CHAIN_EMA_EXTRA list serves arms with other decays
    assert TrainConfig(ema_decay=0.9995, ema_extra=(0.9995, 0.99, 0.99, 0.9999)).ema_extra == (0.99, 0.9999)


@pytest.mark.parametrize("on", [True, False])
def test_cudnn_benchmark_is_set_on_cuda_only(monkeypatch, on):
    """The one place both train and the bench set backend flags (every Trainer calls it): on CUDA cudnn.benchmark
    follows the config either way (a previous Trainer may have set it); elsewhere no flag is touched."""
    from driftin.train import Trainer
    from driftin.train.trainer import set_backends

    flags = [(torch.backends.cudnn, "benchmark"), (torch.backends.cudnn, "allow_tf32"),
             (torch.backends.cuda.matmul, "allow_tf32")]
    for mod, name in flags:  # monkeypatch puts the process-wide flags back after the test
        monkeypatch.setattr(mod, name, getattr(mod, name))
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", not on)
    cfg = TrainConfig(**{**TINY, "cudnn_benchmark": on})
    before = [getattr(mod, name) for mod, name in flags]
    Trainer(cfg, "cpu", torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8), torch.arange(8) % 2)
    assert [getattr(mod, name) for mod, name in flags] == before
    set_backends(cfg, torch.device("cpu"))
    assert torch.backends.cudnn.benchmark is (not on)
    set_backends(cfg, torch.device("cuda", 0))  # sets flags only: no CUDA device is needed for that
    assert torch.backends.cudnn.benchmark is on


@pytest.mark.parametrize("mode", COMPILE_MODES)
def test_cudagraph_modes_agree_with_torch(mode):
    """The trainer's CUDA-graph decisions (the step-begin mark, the drift features compiled without graphs) follow
    what torch.compile does with each mode; the mode minus graphs keeps every other option of the mode."""
    list_mode_options = getattr(getattr(torch, "_inductor", None), "list_mode_options", None)
    if list_mode_options is None:
        pytest.skip("torch._inductor.list_mode_options is not available")
    opts = list_mode_options(mode)
    assert uses_cudagraphs(mode) == bool(opts.get("triton.cudagraphs", False))
    plain = without_cudagraphs(mode)
    assert plain in COMPILE_MODES
    assert list_mode_options(plain) == {k: v for k, v in opts.items() if k != "triton.cudagraphs"}


@pytest.mark.parametrize("mode", COMPILE_MODES)
def test_drift_features_are_compiled_without_cudagraphs(monkeypatch, mode):
    from driftin.train import StepOptions, Trainer

    images, labels = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8), torch.arange(8) % 2
    cfg = TrainConfig(**{**TINY, "objective": "drift", "drift": {"encoder": "pixels"}})
    tr = Trainer(cfg, "cpu", images, labels, StepOptions(compile=True, compile_mode=mode))
    seen = []
    monkeypatch.setattr(tr.objective, "compile", lambda enabled=True, **kw: seen.append(kw))
    tr.prepare()  # torch.compile is lazy: nothing is compiled until a call
    assert seen == [{"field": False, "mode": without_cudagraphs(mode)}]
    assert not uses_cudagraphs(seen[0]["mode"])


@pytest.mark.parametrize("mode", COMPILE_MODES)
def test_forced_layout_keeps_the_modes_options_and_names_a_real_inductor_option(mode):
    """torch.compile takes a mode or options: forcing the layout optimisation passes the mode's own options along
    (so CUDA graphs and autotuning stay as the mode has them) plus an option inductor knows."""
    inductor = pytest.importorskip("torch._inductor")
    assert compile_kwargs(mode) == {"mode": mode}
    torch.compile(lambda x: x, **compile_kwargs(mode))  # every COMPILE_MODES name is a mode torch.compile takes
    kwargs = compile_kwargs(mode, force_layout=True)
    assert kwargs == {"options": {**inductor.list_mode_options(mode), "force_layout_optimization": True}}
    assert kwargs["options"].get("triton.cudagraphs", False) == uses_cudagraphs(mode)
    torch.compile(lambda x: x, **kwargs)  # checks the option names and types now (compiling itself is lazy)
    with pytest.raises(RuntimeError, match="nexpected optimization option"):
        torch.compile(lambda x: x, options={**kwargs["options"], "no_such_option": True})


@pytest.mark.parametrize("objective", ["ddpm", "drift"])
def test_trainer_compiles_every_graph_with_the_forced_layout(monkeypatch, objective):
    from driftin.train import StepOptions, Trainer

    images, labels = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8), torch.arange(8) % 2
    cfg = TrainConfig(**{**TINY, "objective": objective, "compile_force_layout": True, "compile_mode": "reduce-overhead",
                         "drift": {"encoder": "pixels"}})
    opts = StepOptions.for_config(dataclasses.replace(cfg, compile=True), "cpu")
    assert opts.force_layout
    seen = []
    name = lambda fn: getattr(fn, "__name__", type(fn).__name__)  # noqa: E731 - ddpm_mse, or the UNet module
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: seen.append((name(fn), kw)) or fn)
    tr = Trainer(cfg, "cpu", images, labels, opts)
    if objective == "drift":
        monkeypatch.setattr(tr.objective, "compile", lambda enabled=True, **kw: seen.append(("features", kw)))
    tr.prepare()
    graphs = {"options": {"triton.cudagraphs": True, "force_layout_optimization": True}}
    no_graphs = {"options": {"force_layout_optimization": True}}  # the drift features: never CUDA graphs
    drift_calls = [("UNet", graphs), ("features", {"field": False, **no_graphs})]  # the field: only with compile_field
    assert seen == ([("ddpm_mse", graphs)] if objective == "ddpm" else drift_calls)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(args, nproc, out):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--master_port={free_port()}"] if nproc > 1 else [sys.executable]
    cmd = launcher + ["-m", "driftin.train", *args, "--out", str(out)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return load_checkpoint(out / "checkpoint.pt")


@pytest.mark.parametrize("objective", ["ddpm", "drift"])
def test_two_process_ddp_equals_one_process(image_folder, tmp_path, objective):
    args = ["--objective", objective, "--preset", "tiny", "--data", image_folder, "--batch-size", "8", "--num-classes", "2",
            "--steps", "3", "--bf16", "false", "--warmup", "1", "--sample-every", "0", "--lr", "1e-3"]
    if objective == "drift":
        args += ["--drift-encoder", "pixels", "--drift-cfg-max", "2.0", "--drift-uncond-per-group", "2"]
    one = run_cli(args, 1, tmp_path / "one")
    two = run_cli(args, 2, tmp_path / "two")
    # Adam is scale-invariant, so also compare the gradient norms: a wrong gradient scale under DDP shows there
    norms = [[json.loads(line)["grad_norm"] for line in open(tmp_path / run / "log.jsonl")] for run in ("one", "two")]
    assert norms[1] == pytest.approx(norms[0], rel=1e-4)
    # the logged loss is the global-batch loss on any world size (not the world-scaled backward loss)
    losses = [[json.loads(line)["loss"] for line in open(tmp_path / run / "log.jsonl")] for run in ("one", "two")]
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)
    for k, a in one["model"].items():
        # all-reduce order changes float rounding, which Adam amplifies for near-zero gradients:
        # allow 2e-5, far below one step's update (lr 1e-3)
        torch.testing.assert_close(two["model"][k], a, atol=2e-5, rtol=1e-5, msg=f"{k} differs between 1 and 2 processes")


def uncached_global_batch(images, labels, batch_size, generator, flip=True, num_classes=0):
    """global_batch as it was before the class pools were cached: rebuilt on every call."""
    if num_classes:
        k = batch_size // num_classes
        pools = [torch.nonzero(labels.cpu() == c).flatten() for c in range(num_classes)]
        idx = torch.cat([p[torch.randint(len(p), (k,), generator=generator)] for p in pools])
    else:
        idx = torch.randint(len(images), (batch_size,), generator=generator)
    x, y = images[idx], labels[idx]
    if flip:
        mask = torch.rand(batch_size, generator=generator) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    return x, y


def test_global_batch_caches_class_pools_without_changing_batches():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (60, 3, 4, 4), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 5, (60,), generator=gen)

    def check(labels, num_classes):
        for step in range(3):  # as the trainer calls it: a fresh generator per step
            got = global_batch(images, labels, 10, torch.Generator().manual_seed(step), num_classes=num_classes)
            want = uncached_global_batch(images, labels, 10, torch.Generator().manual_seed(step), num_classes=num_classes)
            assert all(torch.equal(a, b) for a, b in zip(got, want)), (step, num_classes)

    check(labels, 5)
    check(labels, 0)
    assert class_pools(labels, 5) is class_pools(labels, 5)  # built once per labels tensor
    assert torch.equal(torch.cat(class_pools(labels, 5)), labels.argsort(stable=True))
    labels[:20] = 4  # changed in place: the pools are rebuilt
    check(labels, 5)
    check(labels, 2)  # another class count: other pools
    check(labels.clone(), 2)  # an equal but new tensor
    check(torch.randint(0, 5, (60,), generator=gen), 2)  # new labels, same version counter and class count
