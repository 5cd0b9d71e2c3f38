"""Triton (CUDA) version of the drifting field: the "lean" two-pass algorithm as fused kernels.

Flash-attention style: a program owns a tile of BM rows and sweeps tiles of BN columns, computing
distances as sqrt(|x|^2 + |y|^2 - 2 x.y) with tl.dot (fp32 accumulation) and never writing the
N x K matrix. Up to 4 temperatures share each distance tile (more are done in chunks of 4).

Pass 1 (_lse_kernel): per query row, logsumexp over keys of -d / tau_eff for every tau (online
  max/sum as in flash attention) plus the min distance. Row statistics r are the logaddexp over the
  column segments (pos, neg, extra); column statistics c of a segment are the same kernel with the
  roles swapped (keys = x), and for self-negatives they equal the row statistics of the x-vs-x
  segment because the distance is symmetric - one sweep saved.
Pass 2 (_accum_kernel): grid over (row tile, channel tile of BC, group); recomputes distances, forms
  A per tau and accumulates A @ Y[:, channel tile] and rowsum(A) per segment. V_tau = sn*P - sp*Q and
  the RMS normalisation are cheap elementwise work left to torch.
Extra memory: O(T * N * C) for the two per-segment accumulators plus O(T * (N + K)) statistics.

Precision: distances and A @ Y use tl.dot with input_precision `precision` ("tf32x3" ~ fp32 accuracy
at 3 tensor-core passes, "ieee" exact fp32 FMA, "tf32" fastest, ~1e-3 relative per product).
Setting TRITON_INTERPRET=1 runs these kernels on CPU tensors (slow; used for testing).
"""
from __future__ import annotations

import math
import os

import torch

try:
    import triton
    import triton.language as tl
    _HAVE_TRITON = True
except Exception:  # CPU-only machines without triton
    _HAVE_TRITON = False

MAX_T = 4  # temperatures handled per kernel launch (unrolled accumulators)
# Tile configurations (untuned first guesses; both compile for sm_90 at <= 255 registers, no spills).
# BK (chunk of the distance dot) and BC (channel tile of pass 2) are capped by these, floored at 16.
LSE_CFG = dict(BM=64, BN=64, BK=32, num_warps=4, num_stages=2)
# BC trades accumulator registers (T*BM*BC) against recomputing distances once per channel tile.
ACCUM_CFG = dict(BM=64, BN=32, BK=32, BC=128, num_warps=8, num_stages=2)


def available() -> bool:
    return _HAVE_TRITON and (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1")


if _HAVE_TRITON:

    @triton.jit
    def _dist(q_base, k_base, qn, kn, offs_m, offs_n, row_ok, col_ok, C,
              BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, PREC: tl.constexpr):
        """[BM, BN] L2 distances between query rows offs_m and key rows offs_n (C contiguous)."""
        acc = tl.zeros((BM, BN), dtype=tl.float32)
        for k0 in range(0, C, BK):
            offs_k = k0 + tl.arange(0, BK)
            k_ok = offs_k < C
            q = tl.load(q_base + offs_m[:, None] * C + offs_k[None, :],
                        mask=row_ok[:, None] & k_ok[None, :], other=0.0)  # [BM, BK]
            kt = tl.load(k_base + offs_n[None, :] * C + offs_k[:, None],
                         mask=col_ok[None, :] & k_ok[:, None], other=0.0)  # [BK, BN]
            acc = tl.dot(q, kt, acc, input_precision=PREC)
        # Rounding can make the squared distance slightly negative for (near-)identical points.
        return tl.sqrt(tl.maximum(qn[:, None] + kn[None, :] - 2.0 * acc, 0.0))

    @triton.jit
    def _lse_update(d, valid, it, m, s):
        """Online logsumexp over columns of logits -d * it; m is kept finite so empty tiles give no nan."""
        logit = tl.where(valid, -d * it, float("-inf"))
        m_new = tl.maximum(m, tl.max(logit, axis=1))
        s = s * tl.exp(m - m_new) + tl.sum(tl.exp(logit - m_new[:, None]), axis=1)
        return m_new, s

    @triton.jit
    def _lse_kernel(q_ptr, qn_ptr, k_ptr, kn_ptr, it_ptr, lse_ptr, dmin_ptr, R, S, C,
                    T: tl.constexpr, DIAG: tl.constexpr, PREC: tl.constexpr,
                    BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
        pid = tl.program_id(0)
        g = tl.program_id(1).to(tl.int64)  # int64: group offsets exceed 2^31 for big L*N*C
        q_base = q_ptr + g * R * C
        k_base = k_ptr + g * S * C
        offs_m = pid * BM + tl.arange(0, BM)
        row_ok = offs_m < R
        qn = tl.load(qn_ptr + g * R + offs_m, mask=row_ok, other=0.0)
        it0 = tl.load(it_ptr)
        it1 = tl.load(it_ptr + 1) if T > 1 else 0.0
        it2 = tl.load(it_ptr + 2) if T > 2 else 0.0
        it3 = tl.load(it_ptr + 3) if T > 3 else 0.0
        m0 = tl.full((BM,), -1e30, tl.float32)
        m1 = m0
        m2 = m0
        m3 = m0
        s0 = tl.zeros((BM,), tl.float32)
        s1 = s0
        s2 = s0
        s3 = s0
        dmin = tl.full((BM,), float("inf"), tl.float32)
        for n0 in range(0, S, BN):
            offs_n = n0 + tl.arange(0, BN)
            col_ok = offs_n < S
            kn = tl.load(kn_ptr + g * S + offs_n, mask=col_ok, other=0.0)
            d = _dist(q_base, k_base, qn, kn, offs_m, offs_n, row_ok, col_ok, C, BM, BN, BK, PREC)
            valid = row_ok[:, None] & col_ok[None, :]
            if DIAG:  # self pair (x_i, x_i) among the negatives
                valid = valid & (offs_m[:, None] != offs_n[None, :])
            dmin = tl.minimum(dmin, tl.min(tl.where(valid, d, float("inf")), axis=1))
            m0, s0 = _lse_update(d, valid, it0, m0, s0)
            if T > 1:
                m1, s1 = _lse_update(d, valid, it1, m1, s1)
            if T > 2:
                m2, s2 = _lse_update(d, valid, it2, m2, s2)
            if T > 3:
                m3, s3 = _lse_update(d, valid, it3, m3, s3)
        out = lse_ptr + g * T * R + offs_m
        tl.store(out, m0 + tl.log(s0), mask=row_ok)
        if T > 1:
            tl.store(out + R, m1 + tl.log(s1), mask=row_ok)
        if T > 2:
            tl.store(out + 2 * R, m2 + tl.log(s2), mask=row_ok)
        if T > 3:
            tl.store(out + 3 * R, m3 + tl.log(s3), mask=row_ok)
        tl.store(dmin_ptr + g * R + offs_m, dmin, mask=row_ok)

    @triton.jit
    def _weights(d, valid, it, r, c_ptr, offs_n, col_ok, w, BOTH: tl.constexpr):
        """A for one tau: exp(logit - (r_i + c_j)/2) ("both") or exp(logit - r_i) ("y"; "none" with
        r_i = group max logit), times the segment's weight; masked entries 0."""
        if BOTH:
            c = tl.load(c_ptr + offs_n, mask=col_ok, other=0.0)
            e = -d * it - 0.5 * (r[:, None] + c[None, :])
        else:
            e = -d * it - r[:, None]
        return tl.where(valid, tl.exp(e), 0.0) * w

    @triton.jit
    def _accum_kernel(x_ptr, xn_ptr, y_ptr, yn_ptr, it_ptr, r_ptr, c_ptr, w_ptr, out_ptr, rs_ptr,
                      N, S, C,
                      T: tl.constexpr, BOTH: tl.constexpr, DIAG: tl.constexpr, ACCUM: tl.constexpr,
                      PREC: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                      BC: tl.constexpr):
        pid_m = tl.program_id(0)
        pid_c = tl.program_id(1)
        g = tl.program_id(2).to(tl.int64)
        x_base = x_ptr + g * N * C
        y_base = y_ptr + g * S * C
        offs_m = pid_m * BM + tl.arange(0, BM)
        row_ok = offs_m < N
        offs_c = pid_c * BC + tl.arange(0, BC)
        c_ok = offs_c < C
        xn = tl.load(xn_ptr + g * N + offs_m, mask=row_ok, other=0.0)
        w = tl.load(w_ptr + g)
        r_base = r_ptr + g * T * N + offs_m
        c_base = c_ptr + g * T * S
        it0 = tl.load(it_ptr)
        r0 = tl.load(r_base, mask=row_ok, other=0.0)
        it1 = tl.load(it_ptr + 1) if T > 1 else 0.0
        r1 = tl.load(r_base + N, mask=row_ok, other=0.0) if T > 1 else r0
        it2 = tl.load(it_ptr + 2) if T > 2 else 0.0
        r2 = tl.load(r_base + 2 * N, mask=row_ok, other=0.0) if T > 2 else r0
        it3 = tl.load(it_ptr + 3) if T > 3 else 0.0
        r3 = tl.load(r_base + 3 * N, mask=row_ok, other=0.0) if T > 3 else r0
        acc0 = tl.zeros((BM, BC), tl.float32)
        acc1 = acc0
        acc2 = acc0
        acc3 = acc0
        rs0 = tl.zeros((BM,), tl.float32)
        rs1 = rs0
        rs2 = rs0
        rs3 = rs0
        for n0 in range(0, S, BN):
            offs_n = n0 + tl.arange(0, BN)
            col_ok = offs_n < S
            yn = tl.load(yn_ptr + g * S + offs_n, mask=col_ok, other=0.0)
            d = _dist(x_base, y_base, xn, yn, offs_m, offs_n, row_ok, col_ok, C, BM, BN, BK, PREC)
            valid = row_ok[:, None] & col_ok[None, :]
            if DIAG:
                valid = valid & (offs_m[:, None] != offs_n[None, :])
            y = tl.load(y_base + offs_n[:, None] * C + offs_c[None, :],
                        mask=col_ok[:, None] & c_ok[None, :], other=0.0)  # [BN, BC]
            a = _weights(d, valid, it0, r0, c_base, offs_n, col_ok, w, BOTH)
            rs0 += tl.sum(a, axis=1)
            acc0 = tl.dot(a, y, acc0, input_precision=PREC)
            if T > 1:
                a = _weights(d, valid, it1, r1, c_base + S, offs_n, col_ok, w, BOTH)
                rs1 += tl.sum(a, axis=1)
                acc1 = tl.dot(a, y, acc1, input_precision=PREC)
            if T > 2:
                a = _weights(d, valid, it2, r2, c_base + 2 * S, offs_n, col_ok, w, BOTH)
                rs2 += tl.sum(a, axis=1)
                acc2 = tl.dot(a, y, acc2, input_precision=PREC)
            if T > 3:
                a = _weights(d, valid, it3, r3, c_base + 3 * S, offs_n, col_ok, w, BOTH)
                rs3 += tl.sum(a, axis=1)
                acc3 = tl.dot(a, y, acc3, input_precision=PREC)
        # out [L, T, N, C], rs [L, T, N]; ACCUM adds to the previous segment of the same side.
        o = out_ptr + (g * T * N + offs_m[:, None]) * C + offs_c[None, :]
        om = row_ok[:, None] & c_ok[None, :]
        rp = rs_ptr + g * T * N + offs_m
        rm = row_ok & (pid_c == 0)  # every channel tile has the row sums; one writes them
        _store(o, acc0, om, rp, rs0, rm, ACCUM)
        if T > 1:
            _store(o + N * C, acc1, om, rp + N, rs1, rm, ACCUM)
        if T > 2:
            _store(o + 2 * N * C, acc2, om, rp + 2 * N, rs2, rm, ACCUM)
        if T > 3:
            _store(o + 3 * N * C, acc3, om, rp + 3 * N, rs3, rm, ACCUM)

    @triton.jit
    def _store(o, acc, om, rp, rs, rm, ACCUM: tl.constexpr):
        if ACCUM:
            acc += tl.load(o, mask=om, other=0.0)
            rs += tl.load(rp, mask=rm, other=0.0)
        tl.store(o, acc, mask=om)
        tl.store(rp, rs, mask=rm)


def _pow2(n: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, triton.next_power_of_2(n)))


def _row_lse(q, qn, k, kn, invt, diag, prec):
    """logsumexp over rows of k of -||q_i - k_j|| * invt: ([L, T, R], min distance [L, R])."""
    L, R, C = q.shape
    S, T = k.shape[1], invt.numel()
    lse = torch.empty(L, T, R, device=q.device, dtype=torch.float32)
    dmin = torch.empty(L, R, device=q.device, dtype=torch.float32)
    cfg = LSE_CFG
    _lse_kernel[(triton.cdiv(R, cfg["BM"]), L)](
        q, qn, k, kn, invt, lse, dmin, R, S, C, T=T, DIAG=diag, PREC=prec, BM=cfg["BM"], BN=cfg["BN"],
        BK=_pow2(C, 16, cfg["BK"]), num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
    return lse, dmin


def _accum(x, xn, y, yn, invt, r, c, w, out, rs, diag, both, accum, prec):
    L, N, C = x.shape
    S, T = y.shape[1], invt.numel()
    cfg = ACCUM_CFG
    BC = _pow2(C, 16, cfg["BC"])
    grid = (triton.cdiv(N, cfg["BM"]), triton.cdiv(C, BC), L)
    _accum_kernel[grid](x, xn, y, yn, invt, r, c if c is not None else r, w, out, rs, N, S, C,
                        T=T, BOTH=both, DIAG=diag, ACCUM=accum, PREC=prec, BM=cfg["BM"], BN=cfg["BN"],
                        BK=_pow2(C, 16, cfg["BK"]), BC=BC, num_warps=cfg["num_warps"],
                        num_stages=cfg["num_stages"])


def _field_chunk(p, invt, kernel_norm, prec):
    """Unnormalised V_tau [L, T, N, C] for up to MAX_T temperatures."""
    x, L, N, C = p["x"], p["L"], p["N"], p["C"]
    T = invt.numel()
    ones = torch.ones(L, device=x.device, dtype=torch.float32)
    # (keys, self-masked, weight after normalisation, side): side 0 = positive, 1 = negative
    segs = [(p["pos"], False, ones, 0), (p["negs"], p["self_neg"], ones, 1)]
    if p["extra"] is not None:
        segs.append((p["extra"], False, p["w"].float(), 1))
    segs = [s for s in segs if s[0].shape[1] > 0]
    xn = x.pow(2).sum(-1)  # [L, N]
    norms = [s[0].pow(2).sum(-1).contiguous() for s in segs]

    # pass 1: row statistics per segment, merged; column statistics per segment
    row = [_row_lse(x, xn, s[0], kn, invt, s[1], prec) for s, kn in zip(segs, norms)]
    if kernel_norm == "none":
        dmin = torch.stack([d.amin(1) for _, d in row]).amin(0)  # [L]
        r = (-dmin[:, None, None] * invt[None, :, None]).expand(L, T, N).contiguous()
    else:
        r = torch.stack([lse for lse, _ in row]).logsumexp(0).contiguous()  # [L, T, N]
    cols = [None] * len(segs)
    if kernel_norm == "both":
        for i, (s, kn) in enumerate(zip(segs, norms)):
            # self-negatives: column j's lse over rows i != j equals row j's lse (symmetric d)
            cols[i] = row[i][0] if s[1] else _row_lse(s[0], kn, x, xn, invt, False, prec)[0]

    # pass 2: accumulate per side
    acc = [torch.empty(L, T, N, C, device=x.device, dtype=torch.float32) for _ in range(2)]
    rsum = [torch.zeros(L, T, N, device=x.device, dtype=torch.float32) for _ in range(2)]
    started = [False, False]
    for (y, diag, w, side), yn, c in zip(segs, norms, cols):
        _accum(x, xn, y, yn, invt, r, c, w, acc[side], rsum[side], diag, kernel_norm == "both",
               started[side], prec)
        started[side] = True
    for side in (0, 1):  # a side without columns contributes nothing
        if not started[side]:
            acc[side].zero_()
    # V_tau = sn * P - sp * Q, in place to keep the peak at two accumulators
    V = acc[0].mul_(rsum[1][..., None]).sub_(acc[1].mul_(rsum[0][..., None]))
    return V


def drift_field_triton(x, pos, neg=None, *, extra_neg=None, extra_weight=1.0,
                       temperatures=(0.02, 0.05, 0.2), kernel_norm="both", eps=1e-8,
                       precision="tf32x3", block=None):
    """Same contract as field.drift_field (fp32 compute and output). `block` is ignored."""
    from .field import _check, _prepare, _normalise_sum
    if not _HAVE_TRITON:
        raise RuntimeError("triton is not installed")
    _check(kernel_norm, temperatures)
    p = _prepare(x.float(), pos, neg, extra_neg, extra_weight)  # fp32 everywhere (x sets the dtype)
    C = p["C"]
    inv = torch.tensor([1.0 / (t * math.sqrt(C)) for t in temperatures], dtype=torch.float32,
                       device=x.device)
    Vt = torch.cat([_field_chunk(p, inv[i:i + MAX_T].contiguous(), kernel_norm, precision)
                    for i in range(0, inv.numel(), MAX_T)], 1)  # [L, T, N, C]
    return _normalise_sum(Vt.transpose(0, 1), eps)
