"""The drift step's in-place masks and fills (driftin/drift/prep.py, blocked.py, field.py, objective.py) are views
or slices, not indexed assignments (an index_put_ of a Python scalar copies it host-to-device on CUDA: a sync per
step). Each is checked bit for bit against the indexed assignment it replaced, on random CPU inputs."""
import pytest
import torch

from driftin.drift.blocked import _dist_torch
from driftin.drift.field import feature_scale
from driftin.drift.objective import DriftConfig, DriftLoss
from driftin.drift.prep import _self_mask, _weight_tensor


@pytest.mark.parametrize("P,N,U,start,stop", [(5, 6, 0, 0, 6), (3, 7, 4, 2, 5), (0, 4, 2, 3, 4), (4, 9, 3, 0, 1)])
def test_self_mask_is_the_indexed_one(P, N, U, start, stop):
    K = P + N + U
    got = _self_mask({"self_neg": True, "P": P}, slice(start, stop), K, "cpu")
    i = torch.arange(start, stop)
    old = torch.zeros(len(i), K, dtype=torch.bool)
    old[torch.arange(len(i)), P + i] = True
    assert torch.equal(got, old)
    assert _self_mask({"self_neg": False, "P": P}, slice(start, stop), K, "cpu") is None


@pytest.mark.parametrize("self_neg", [True, False])
@pytest.mark.parametrize("row0,n", [(0, 6), (2, 3), (5, 1)])
def test_dist_torch_masks_the_indexed_self_pairs(self_neg, row0, n):
    g = torch.Generator().manual_seed(row0 * 10 + n)
    L, P, N, U = 3, 4, 6, 2
    G = torch.randn(L, n, P + N + U, generator=g)
    xn = torch.rand(L, n, generator=g) * 3
    old = (G + xn[..., None]).clamp_min_(0).sqrt_()
    if self_neg:
        i = torch.arange(n)
        old[:, i, P + row0 + i] = float("inf")
    assert torch.equal(_dist_torch(G.clone(), xn, row0, P, self_neg), old)


@pytest.mark.parametrize("offset,n", [(0, 5), (3, 4), (8, 1)])
def test_diagonal_zeroing_of_feature_scale_is_the_indexed_one(offset, n):
    d = torch.rand(2, n, 9, generator=torch.Generator().manual_seed(offset), dtype=torch.float64)
    old = d.clone()
    r = torch.arange(n)
    old[:, r, offset + r] = 0.0
    d.diagonal(offset, 1, 2).zero_()
    assert torch.equal(d, old)


def test_feature_scale_weights_as_floats_and_tensors_agree_exactly():
    g = torch.Generator().manual_seed(0)
    x, pos, extra = torch.randn(3, 7, 4, generator=g), torch.randn(3, 5, 4, generator=g), torch.randn(3, 2, 4, generator=g)
    for block in (1 << 25, 20):  # one block, several
        ref = feature_scale(x, [pos, x, extra], weights=[torch.ones(3), None, torch.full((3,), 2.5)], block_entries=block)
        assert torch.equal(feature_scale(x, [pos, x, extra], weights=[None, 1.0, 2.5], block_entries=block), ref)
    for w, dt in ((2.5, torch.float32), (0.1, torch.float64), (3, torch.float32), (torch.tensor([0.3]), torch.float64),
                  (torch.tensor([0.1, 0.2, 0.3]), torch.float32), ([0.1, 0.2, 0.3], torch.float64)):
        assert torch.equal(_weight_tensor(w, 3, dt, "cpu"), torch.as_tensor(w, dtype=dt).reshape(-1).expand(3))


def test_queue_push_matches_the_indexed_ring_buffer():
    """Random push sizes (wrapping, and larger than the queue) against the old arange % size assignment."""
    obj = DriftLoss(DriftConfig(encoder="pixels"), "cpu")
    g = torch.Generator().manual_seed(0)
    size, old, n = 7, torch.zeros(3, 7, 2), 0
    for step in range(40):
        imgs = torch.randint(0, 256, (3, int(torch.randint(1, 12, (), generator=g)), 2), generator=g, dtype=torch.uint8)
        obj._push("q", imgs, size)
        if imgs.shape[1] > size:
            n, imgs = n + imgs.shape[1] - size, imgs[:, -size:]
        k = imgs.shape[1]
        old[:, torch.arange(n, n + k) % size] = imgs.to(old.dtype)
        n += k
        assert obj.queues["q"].dtype == torch.uint8 and torch.equal(obj.queues["q"].float(), old)
        assert int(obj.queues["q_n"]) == n
