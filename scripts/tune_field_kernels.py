"""Time the drift-field Triton kernels over tile configurations (H100 tuning aid; prints a table).

python scripts/tune_field_kernels.py            # L=1, N=4096 (K=8192), three temperatures
"""
import itertools
import math

import torch

from driftin.drift import field_triton as ft


def bench(fn, reps=20):
    fn()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(reps):
        fn()
    b.record()
    torch.cuda.synchronize()
    return a.elapsed_time(b) / reps * 1e3  # us


def main(L=1, n=4096, K=8192, C=768):
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(L, n, C, device="cuda", generator=g) / math.sqrt(2)
    Y = torch.randn(L, K, C, device="cuda", generator=g) / math.sqrt(2)
    xn, yn = x.pow(2).sum(-1), Y.pow(2).sum(-1)
    G = torch.baddbmm(yn[:, None, :], x, Y.transpose(1, 2), alpha=-2.0)
    invt = torch.tensor([1 / (t * math.sqrt(C)) for t in (0.02, 0.05, 0.2)], device="cuda")
    colw = torch.ones(L, K, device="cuda")
    r = torch.zeros(3, L, n, device="cuda")
    c = torch.zeros(3, L, K, device="cuda")
    Ap, An = torch.empty(L, 3, n, K // 2, device="cuda"), torch.empty(L, 3, n, K // 2, device="cuda")
    print(f"G read once: {G.numel() * 4 / 3.0e12 * 1e6:.0f} us at 3 TB/s")
    for BM, BN, w in itertools.product((16, 32, 64), (32, 64, 128), (4, 8)):
        if BM * BN > 8192:
            continue
        ft.STATS_CFG.update(BM=BM, BN=BN, num_warps=w)
        ft.WEIGHTS_CFG.update(BM=BM, BN=BN, num_warps=w)
        try:
            ts = bench(lambda: ft.stats(G, xn, invt, 0, K // 2, True))
            tw = bench(lambda: ft.weights(G, xn, invt, r, c, colw, 0, K // 2, True, Ap, An))
        except Exception as e:  # noqa: BLE001 - report and go on
            print(BM, BN, w, "failed", type(e).__name__)
            continue
        print(f"BM={BM:3d} BN={BN:4d} warps={w}: stats {ts:7.1f} us  weights {tw:7.1f} us", flush=True)


if __name__ == "__main__":
    main()
