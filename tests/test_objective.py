"""The drift objective's issue-#19 options (driftin/drift/objective.py): what reaches the field, checked
against the images it must come from, on tiny CPU problems (encoder "pixels", the input as one feature)."""
import math

import pytest
import torch

from driftin.data import STREAMS
from driftin.config import preset
from driftin.drift.field import drift_loss
from driftin.drift.objective import DriftConfig, DriftLoss, sample_alpha
from driftin.train import StepRandom
from driftin.unet import UNet

G, PER = 2, 4  # classes, real images per class in a batch


def batch(step):
    """A class-sorted batch of distinct images: pixel (0,0,0) of image i at step s is 1000 s + i."""
    g = torch.Generator().manual_seed(step)
    x = torch.rand(G * PER, 3, 32, 32, generator=g) * 2 - 1
    x[:, 0, 0, 0] = 1000 * step + torch.arange(G * PER, dtype=torch.float)
    return x, torch.arange(G).repeat_interleave(PER)


def run(cfg, steps=1, model=None):
    """Call the objective for steps 0..steps-1; returns the field calls (kwargs + x, pos) of the last step."""
    torch.manual_seed(0)
    net = model or UNet(preset("tiny", num_classes=G, guidance_input=cfg.cfg_max > 1, zero_init_out=False))
    obj = DriftLoss(cfg, "cpu", num_classes=G)
    calls = []

    def spy(x, pos, **kw):
        calls.append(dict(kw, x=x.detach(), pos=pos))
        return drift_loss(x, pos, **kw)
    obj.field_loss = spy
    for s in range(steps):
        calls.clear()
        x, y = batch(s)
        loss, logs = obj(net, {"x": x, "y": y, "rng": StepRandom(0, s, "cpu")})
        assert torch.isfinite(loss)
    return calls, logs, obj


ENERGY = dict(encoder="pixels", pixel_mode="energy", impl="torch")


def ids(rows):  # the image id written into pixel (0, 0, 0) of each feature row (the flattened input)
    return [int(round(v)) for v in rows[:, 0].tolist()]


def test_config_checks():
    for bad in (dict(norm_scope="loc"), dict(loss_reduce="max"), dict(cfg_alpha="beta"), dict(uncond_source="queue"),
                dict(patch_stats="x"), dict(pixel_mode="x"), dict(uncond_queue=10), dict(pos_per_group=8),
                dict(pos_queue=4, queue_push=8), dict(norm_scope="map", kernel_norm="none"), dict(cfg_max=0.5)):
        with pytest.raises(ValueError):
            DriftConfig(**bad)


@pytest.mark.parametrize("k", [1.0, 3.0, 5.0])
def test_power_alpha_follows_its_density(k):
    cfg = DriftConfig(cfg_max=4.0, cfg_alpha="power", cfg_alpha_power=k)
    a = sample_alpha(torch.rand(200_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64), cfg)
    assert a.min() >= 1 and a.max() <= 4
    for t in (1.2, 1.5, 2.0, 3.0):  # CDF of p ~ alpha^-k on [1, 4], integrated by a midpoint loop
        dens = [(1 + (i + 0.5) * 3 / 20000) ** -k for i in range(20000)]
        cdf = sum(dens[:int((t - 1) / 3 * 20000)]) / sum(dens)
        assert (a <= t).double().mean().item() == pytest.approx(cdf, abs=5e-3)
    u = torch.linspace(0, 1, 11)
    torch.testing.assert_close(sample_alpha(u, DriftConfig(cfg_max=2.0)), 1 + u)  # uniform is unchanged


def test_default_groups_classes_and_shares_batch_unconditionals():
    calls, _, _ = run(DriftConfig(**ENERGY, cfg_max=2.0, uncond_per_group=3))
    inp = calls[0]  # the input-as-one-vector group: [G, PER, 3072]
    x, y = batch(0)
    assert inp["pos"].shape == (G, PER, 3072) and inp["x"].shape == (G, PER, 3072)
    for g in range(G):
        assert ids(inp["pos"][g]) == [i for i in range(G * PER) if y[i] == g]
    unc = inp["extra_neg"]
    assert unc.shape == (G, 3, 3072) and torch.equal(unc[0], unc[1])  # one set, shared by the classes
    alpha = sample_alpha(torch.rand(G, generator=StepRandom(0, 0, "cpu").gen), DriftConfig(cfg_max=2.0))
    torch.testing.assert_close(inp["extra_weight"], (alpha - 1) * (PER - 1) / 3)
    assert not inp["shared_norm"] and not inp["scale_extra_weighted"]


def test_class_queue_positives_come_from_the_last_pushes_without_replacement():
    cfg = DriftConfig(**ENERGY, pos_queue=4, queue_push=2, pos_per_group=3)
    for steps in (1, 2, 3):
        calls, _, obj = run(cfg, steps)
        pos = calls[0]["pos"]
        s = steps - 1
        for g in range(G):
            # the queue holds the first 2 images of class g from each of the last two steps (one at step 0)
            pushed = [1000 * t + g * PER + i for t in range(max(0, s - 1), s + 1) for i in range(2)]
            got = ids(pos[g])
            assert len(got) == min(3, len(pushed)) and len(set(got)) == len(got) and set(got) <= set(pushed), (steps, g)
        # the energy group sees the same images
        for g in range(G):
            raw = torch.stack([batch(i // 1000)[0][i % 1000] for i in ids(pos[g])])
            torch.testing.assert_close(calls[1]["pos"][g], raw.square().mean((2, 3)))
    assert int(obj.state_dict()["pos_n"]) == 6
    # state round trip: a fresh objective with the saved queues draws the same positives
    fresh = DriftLoss(cfg, "cpu", num_classes=G)
    fresh.load_state_dict(obj.state_dict())
    assert torch.equal(fresh.queues["pos"], obj.queues["pos"])


def test_separate_unconditionals_from_the_global_queue_differ_per_group():
    cfg = DriftConfig(**ENERGY, cfg_max=3.0, uncond_source="separate", uncond_queue=6, uncond_per_group=2,
                      cfg_scale_weighted=True, cfg_alpha="power", cfg_alpha_power=5.0)
    calls, _, _ = run(cfg, steps=2)
    unc = calls[0]["extra_neg"]  # [G, 2, 3072]
    got = [ids(unc[g]) for g in range(G)]
    flat = got[0] + got[1]
    assert len(set(flat)) == 4  # without replacement over all groups: every group has its own
    assert set(flat) <= {1000 + i for i in range(2, 8)}  # the queue keeps the newest 6 of the 8 pushed
    assert calls[0]["scale_extra_weighted"]
    alpha = sample_alpha(torch.rand(G, generator=StepRandom(0, 1, "cpu").gen), cfg)
    torch.testing.assert_close(calls[0]["extra_weight"], (alpha - 1) * (PER - 1) / 2)


def test_separate_unconditionals_from_the_dataset():
    cfg = DriftConfig(**ENERGY, cfg_max=2.0, uncond_source="separate", uncond_per_group=3)
    torch.manual_seed(0)
    net = UNet(preset("tiny", num_classes=G, guidance_input=True, zero_init_out=False))
    obj = DriftLoss(cfg, "cpu", num_classes=G)
    data = torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    obj.attach_data(data, torch.zeros(50, dtype=torch.long))
    seen = []
    obj.field_loss = lambda x, pos, **kw: (seen.append(kw), drift_loss(x, pos, **kw))[1]
    x, y = batch(0)
    obj(net, {"x": x, "y": y, "rng": StepRandom(0, 0, "cpu")})
    unc = seen[0]["extra_neg"].view(G * 3, 3, 32, 32)
    pool = (data.float() / 127.5 - 1)
    for im in unc:  # each is a dataset image, possibly flipped
        assert any(torch.allclose(im, p, atol=1e-6) or torch.allclose(im, p.flip(-1), atol=1e-6) for p in pool)


def test_loss_reduce_sum_and_norm_scope_map():
    base = dict(encoder="pixels", impl="torch")  # 4x4 pixel patches: 106 groups in one map
    calls_m, logs_m, _ = run(DriftConfig(**base))
    calls_s, logs_s, _ = run(DriftConfig(**base, loss_reduce="sum"))
    assert calls_m[0]["x"].shape[0] == 106 * G
    assert logs_s["loss_g0"].item() == pytest.approx(106 * logs_m["loss_g0"].item(), rel=1e-6)
    calls, _, _ = run(DriftConfig(**base, norm_scope="map"))
    assert calls[0]["shared_norm"]


def test_styles_are_drawn_per_sample_and_step():
    torch.manual_seed(0)
    net = UNet(preset("tiny", num_classes=G, zero_init_out=False, style_tokens=4, style_codebook=8))
    got = []
    fwd = net.forward

    def record(*a, **kw):
        got.append(kw["style"])
        return fwd(*a, **kw)
    net.forward = record
    run(DriftConfig(**ENERGY), steps=2, model=net)
    assert [tuple(s.shape) for s in got] == [(G * PER, 4)] * 2 and not torch.equal(got[0], got[1])
    assert got[0].min() >= 0 and got[0].max() < 8


def test_old_behaviour_switches_reach_the_field():
    calls, _, _ = run(DriftConfig(**ENERGY, rms_eps=1e-8, scale_self_pairs=True, field_autocast=True))
    kw = calls[0]
    assert kw["eps"] == 1e-8 and kw["scale_self_pairs"] and kw["allow_autocast"]
    calls, _, _ = run(DriftConfig(**ENERGY))
    assert calls[0]["eps"] == 0.0 and not calls[0]["scale_self_pairs"] and not calls[0]["allow_autocast"]
    assert math.isfinite(float(drift_loss(calls[0]["x"], calls[0]["pos"])[0]))


def test_restored_queues_continue_like_an_uninterrupted_run():
    cfg = DriftConfig(**ENERGY, cfg_max=2.0, pos_queue=4, queue_push=2, pos_per_group=3, uncond_source="separate",
                      uncond_queue=10, uncond_per_group=2)
    _, logs_a, _ = run(cfg, steps=3)  # steps 0, 1, 2 in one objective
    _, _, first = run(cfg, steps=2)  # steps 0, 1 ...
    torch.manual_seed(0)
    net = UNet(preset("tiny", num_classes=G, guidance_input=True, zero_init_out=False))
    resumed = DriftLoss(cfg, "cpu", num_classes=G)
    resumed.load_state_dict(first.state_dict())  # ... then step 2 in a fresh objective with the saved queues
    x, y = batch(2)
    _, logs_b = resumed(net, {"x": x, "y": y, "rng": StepRandom(0, 2, "cpu")})
    assert logs_b["loss"].item() == logs_a["loss"].item()
    empty = DriftLoss(cfg, "cpu", num_classes=G)  # without the state the step differs (fewer queued samples)
    _, logs_c = empty(net, {"x": x, "y": y, "rng": StepRandom(0, 2, "cpu")})
    assert logs_c["loss"].item() != logs_a["loss"].item()


DATASET = torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("kw", [dict(uncond_per_group=3),  # unconditionals from the batch
                                dict(uncond_source="separate", uncond_per_group=3),  # fresh from the dataset
                                dict(pos_queue=4, queue_push=2, pos_per_group=3, uncond_source="separate",
                                     uncond_queue=6, uncond_per_group=2)])  # from the queues
def test_draws_are_a_function_of_seed_and_step_not_of_the_global_rng(kw):
    """The objective's own draws come from generators seeded by (seed, step, stream) (made on the batch's device,
    so no CPU draw has to be copied over): reseeding the global RNG between the calls changes nothing."""
    cfg = DriftConfig(**ENERGY, cfg_max=2.0, **kw)

    def losses(global_seed):
        torch.manual_seed(0)
        net = UNet(preset("tiny", num_classes=G, guidance_input=True, zero_init_out=False))
        obj = DriftLoss(cfg, "cpu", num_classes=G)
        obj.attach_data(DATASET, torch.arange(50) % G)
        out = []
        for s in range(2):
            x, y = batch(s)
            torch.manual_seed(global_seed + s)  # the global RNG differs from run to run
            out.append(obj(net, {"x": x, "y": y, "rng": StepRandom(0, s, "cpu")})[0])
        return torch.stack(out)

    assert torch.equal(losses(1), losses(123))


def test_draw_streams_are_independent_of_each_other_and_of_the_step_rng():
    first = lambda gen: torch.rand(4, generator=gen)  # noqa: E731
    rng = StepRandom(0, 3, "cpu")
    seen = [first(rng.gen)] + [first(StepRandom(seed, step, "cpu").stream(k))
                               for seed, step in ((0, 3), (0, 4), (1, 3)) for k in STREAMS]
    assert len({tuple(t.tolist()) for t in seen}) == len(seen)
    assert torch.equal(first(StepRandom(0, 3, "cpu").stream(list(STREAMS)[1])), seen[2])  # a function of (seed, step, kind)


def test_queue_is_a_ring_buffer_and_is_sampled_without_replacement():
    obj = DriftLoss(DriftConfig(**ENERGY), "cpu", num_classes=G)
    draw = lambda step: StepRandom(0, step, "cpu").stream("class_queue")  # noqa: E731
    push = lambda first, k: obj._push("q", torch.arange(first, first + 2 * k).view(2, k).float(), 5)  # noqa: E731
    push(0, 3)  # row 0 gets 0 1 2, row 1 gets 3 4 5, into slots 0-2
    one = obj._sample("q", 4, draw(0))
    assert one.shape == (2, 3)  # only what was pushed (3 < 4), never an empty slot
    assert sorted(one[0].tolist()) == [0, 1, 2] and sorted(one[1].tolist()) == [3, 4, 5]
    push(10, 3)  # slots 3, 4, then 0 (the oldest) again
    assert obj.queues["q"].tolist() == [[12, 1, 2, 10, 11], [15, 4, 5, 13, 14]] and int(obj.queues["q_n"]) == 6
    push(20, 7)  # more than the queue holds: the 2 oldest count as pushed and overwritten, the newest 5 land in 3, 4, 0-2
    assert obj.queues["q"].tolist() == [[24, 25, 26, 22, 23], [31, 32, 33, 29, 30]] and int(obj.queues["q_n"]) == 13
    seen = set()
    for step in range(30):
        got = obj._sample("q", 3, draw(step))
        for row, q in zip(got.tolist(), obj.queues["q"].tolist()):
            assert len(set(row)) == 3 and set(row) <= set(q)  # without replacement, from this row's queue
        seen.add(tuple(got[0].tolist()))
    assert len(seen) > 10  # and a different draw per step
    full = obj._sample("q", 9, draw(0))  # more than the queue holds: all of it, each once
    assert [sorted(r) for r in full.tolist()] == [sorted(r) for r in obj.queues["q"].tolist()]


@pytest.mark.parametrize("device_data", [True, False])
def test_trainer_hands_its_dataset_to_the_objective(device_data):
    from driftin.train import StepOptions, Trainer, TrainConfig
    images, labels = DATASET[:8], torch.arange(8) % 2
    cfg = TrainConfig(preset="tiny", batch_size=8, num_classes=2, bf16=False, objective="drift",
                      drift={"encoder": "pixels", "cfg_max": 2.0, "uncond_source": "separate", "uncond_per_group": 2})
    tr = Trainer(cfg, "cpu", images, labels, StepOptions(device_data=device_data))
    held = tr.data.images if device_data else tr.images
    assert tr.objective.data.images is held  # the trainer's copy (on the device for DeviceData): none of its own
    assert torch.isfinite(tr.step(0)[0])
