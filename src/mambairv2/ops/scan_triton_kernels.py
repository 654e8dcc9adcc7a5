"""Triton kernels of the selective scan (imported only by :mod:`scan_triton`, which imports this
module lazily: importing it imports triton).

Each program owns ``BLOCK_D`` channels of one batch item and one B/C group and walks the
sequence (in the forward: one segment of it) in chunks of ``BLOCK_L`` tokens, its ``BLOCK_D×BLOCK_N`` state kept in registers
between chunks. Inside a chunk the recurrence ``h_t = a_t·h_{t-1} + b_t`` runs as a parallel
associative scan over the pairs ``(a_t, b_t)``; the chunk's entry state is folded in afterwards
(``h_t = Πa·h_entry + scanned b``).

Triton decides between compiling and interpreting (``TRITON_INTERPRET=1``) when a function is
decorated, i.e. when this module is first imported: the interpreter is chosen, or not, once
per process.
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _linear_combine(a_left, b_left, a_right, b_right):
    """Composes two steps of ``h -> a·h + b`` (left first)."""
    return a_left * a_right, a_right * b_left + b_right


@triton.jit
def _delta(raw, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """Δ with its bias and torch's softplus (threshold 20) applied; returns (Δ, dΔ/draw)."""
    x = raw
    if HAS_BIAS:
        x = x + bias
    if SOFTPLUS:
        z = tl.exp(-tl.abs(x))
        w = 1.0 + z
        # log1p(z) without a log1p: log(w)·z/(w-1) is exact to rounding (and z where w rounds to 1)
        log1p_z = tl.where(w == 1.0, z, tl.log(w) * z / tl.where(w == 1.0, 1.0, w - 1.0))
        big = x > 20.0
        out = tl.where(big, x, tl.maximum(x, 0.0) + log1p_z)
        slope = tl.where(big, 1.0, tl.where(x >= 0, 1.0 / w, z / w))
    else:
        out = x
        slope = tl.full(x.shape, 1.0, x.dtype)
    return out, slope


@triton.jit
def scan_forward_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, y_ptr, h_ptr, seg_ptr, dsum_ptr,
    L, G, DG, N, SEG_LEN,
    s_ub, s_ud, s_ul, s_db, s_dd, s_dl, s_ad, s_an,
    s_bb, s_bg, s_bn, s_bl, s_cb, s_cg, s_cn, s_cl,
    s_yb, s_yd, s_yl, s_hb, s_hd, s_hc, s_hn,
    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, SAVE_STATES: tl.constexpr,
    HAS_INIT: tl.constexpr, LOCAL_END: tl.constexpr,
    FP64: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,
):
    """The scan over segment ``program_id(2)`` (``SEG_LEN`` tokens, a multiple of BLOCK_L) of the
    sequence, with states ``batch×D×segments×N`` at ``seg_ptr``:

    - ``LOCAL_END``: from a zero state; writes the segment's end state to ``seg_ptr`` and its
      ``ΣΔ`` (``batch×D×segments``) to ``dsum_ptr`` (the caller carries states over segments);
    - otherwise y = C·h (+ D·u), from the segment's entry state read at ``seg_ptr`` with
      ``HAS_INIT`` (zero without); with SAVE_STATES the state entering every chunk is written to
      ``h_ptr`` (batch × D × chunks × N), all the backward needs besides the inputs.
    """
    ct = tl.float64 if FP64 else tl.float32
    pid_bg = tl.program_id(0)
    b = (pid_bg // G).to(tl.int64)  # 64-bit offsets: batch × D × L may pass 2³¹
    g = pid_bg % G
    seg = tl.program_id(2)
    nseg = tl.num_programs(2)
    offs_dg = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_dg < DG
    d = g * DG + offs_dg
    n = tl.arange(0, BLOCK_N)
    mask_n = n < N
    mask_dn = mask_d[:, None] & mask_n[None, :]
    A = tl.load(A_ptr + d[:, None] * s_ad + n[None, :] * s_an, mask=mask_dn, other=0.0).to(ct)
    if HAS_D:
        Dv = tl.load(D_ptr + d, mask=mask_d, other=0.0).to(ct)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d, mask=mask_d, other=0.0).to(ct)[:, None]
    else:
        bias = 0.0
    last = (tl.arange(0, BLOCK_L) == BLOCK_L - 1)[None, None, :]
    seg_off = ((b * (G * DG) + d[:, None]) * nseg + seg) * N + n[None, :]
    if HAS_INIT:
        h = tl.load(seg_ptr + seg_off, mask=mask_dn, other=0.0).to(ct)
    else:
        h = tl.zeros([BLOCK_D, BLOCK_N], dtype=ct)
    dsum = tl.zeros([BLOCK_D], dtype=ct)
    c0 = seg * (SEG_LEN // BLOCK_L)
    c1 = tl.minimum(tl.cdiv(L, BLOCK_L), c0 + SEG_LEN // BLOCK_L)
    for c in range(c0, c1):
        if SAVE_STATES:
            tl.store(h_ptr + b * s_hb + d[:, None] * s_hd + c * s_hc + n[None, :] * s_hn, h, mask=mask_dn)
        l = c * BLOCK_L + tl.arange(0, BLOCK_L)
        mask_l = l < L
        mask_dl = mask_d[:, None] & mask_l[None, :]
        mask_nl = mask_n[:, None] & mask_l[None, :]
        u = tl.load(u_ptr + b * s_ub + d[:, None] * s_ud + l[None, :] * s_ul, mask=mask_dl, other=0.0).to(ct)
        raw = tl.load(delta_ptr + b * s_db + d[:, None] * s_dd + l[None, :] * s_dl, mask=mask_dl, other=0.0).to(ct)
        dt, _ = _delta(raw, bias, HAS_BIAS, SOFTPLUS)
        dt = tl.where(mask_dl, dt, 0.0)  # Δ = 0 past the end: a = 1, b = 0 keep the state
        Bt = tl.load(B_ptr + b * s_bb + g * s_bg + n[:, None] * s_bn + l[None, :] * s_bl, mask=mask_nl, other=0.0).to(ct)
        a = tl.exp(dt[:, None, :] * A[:, :, None])
        bu = (dt * u)[:, None, :] * Bt[None, :, :]
        pa, pb = tl.associative_scan((a, bu), 2, _linear_combine)
        hs = pa * h[:, :, None] + pb
        if LOCAL_END:
            dsum += tl.sum(dt, axis=1)
        else:
            Ct = tl.load(C_ptr + b * s_cb + g * s_cg + n[:, None] * s_cn + l[None, :] * s_cl, mask=mask_nl, other=0.0).to(ct)
            y = tl.sum(hs * Ct[None, :, :], axis=1)
            if HAS_D:
                y += Dv[:, None] * u
            tl.store(y_ptr + b * s_yb + d[:, None] * s_yd + l[None, :] * s_yl, y.to(y_ptr.dtype.element_ty), mask=mask_dl)
        h = tl.sum(tl.where(last, hs, 0.0), axis=2)
    if LOCAL_END:
        tl.store(seg_ptr + seg_off, h, mask=mask_dn)
        tl.store(dsum_ptr + (b * (G * DG) + d) * nseg + seg, dsum, mask=mask_d)


@triton.jit
def scan_backward_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, dy_ptr, h_ptr,
    du_ptr, ddelta_ptr, dA_ptr, dB_ptr, dC_ptr,
    L, G, DG, N,
    s_ub, s_ud, s_ul, s_db, s_dd, s_dl, s_ad, s_an,
    s_bb, s_bg, s_bn, s_bl, s_cb, s_cg, s_cn, s_cl,
    s_yb, s_yd, s_yl, s_hb, s_hd, s_hc, s_hn,
    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    FP64: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_L: tl.constexpr,
):
    """Gradients by recomputation, chunks from the last to the first.

    Per chunk: the states ``h_{t-1}`` from the saved entry state (a scan of the pairs shifted by
    one token), ``h_t = a_t·h_{t-1} + b_t``, and the adjoint ``g_t = C_t·dy_t + a_{t+1}·g_{t+1}``
    (a scan of the chunk read backwards; ``g`` of the next chunk's first token carried in
    registers). Writes du and
    dΔ (w.r.t. the raw Δ: bias and softplus chained) as compute-dtype ``batch×D×L``; dA per
    batch item ``batch×D×N``; dB, dC per program ``batch×G×(D-blocks)×N×L`` (summed over channels
    in the program, over D-blocks by the caller: no atomics, a fixed order).
    """
    ct = tl.float64 if FP64 else tl.float32
    pid_bg = tl.program_id(0)
    pid_d = tl.program_id(1)
    b = (pid_bg // G).to(tl.int64)  # 64-bit offsets: batch × D × L may pass 2³¹
    g = pid_bg % G
    offs_dg = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_dg < DG
    d = g * DG + offs_dg
    n = tl.arange(0, BLOCK_N)
    mask_n = n < N
    mask_dn = mask_d[:, None] & mask_n[None, :]
    A = tl.load(A_ptr + d[:, None] * s_ad + n[None, :] * s_an, mask=mask_dn, other=0.0).to(ct)
    if HAS_D:
        Dv = tl.load(D_ptr + d, mask=mask_d, other=0.0).to(ct)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d, mask=mask_d, other=0.0).to(ct)[:, None]
    else:
        bias = 0.0
    j = tl.arange(0, BLOCK_L)
    last = (j == BLOCK_L - 1)[None, None, :]
    dgrid = tl.num_programs(1)
    part = ((b * G + g) * dgrid + pid_d) * N  # row of this program in the dB/dC partial sums
    g_next = tl.zeros([BLOCK_D, BLOCK_N], dtype=ct)  # adjoint of the next chunk's first token
    dA = tl.zeros([BLOCK_D, BLOCK_N], dtype=ct)
    nchunks = tl.cdiv(L, BLOCK_L)
    for i in range(0, nchunks):
        c = nchunks - 1 - i
        l = c * BLOCK_L + j
        mask_l = l < L
        mask_dl = mask_d[:, None] & mask_l[None, :]
        mask_nl = mask_n[:, None] & mask_l[None, :]
        off_u = b * s_ub + d[:, None] * s_ud + l[None, :] * s_ul
        off_d = b * s_db + d[:, None] * s_dd + l[None, :] * s_dl
        off_b = b * s_bb + g * s_bg + n[:, None] * s_bn + l[None, :] * s_bl
        # the adjoint runs backwards in time: its inputs are read in reversed token order, so
        # that a forward associative scan does it (no `reverse=True`, whose combine order on
        # GPUs has been reported wrong: triton-lang/triton#4362)
        lr = c * BLOCK_L + (BLOCK_L - 1 - j)
        mask_lr = lr < L
        mask_dlr = mask_d[:, None] & mask_lr[None, :]
        u = tl.load(u_ptr + off_u, mask=mask_dl, other=0.0).to(ct)
        raw = tl.load(delta_ptr + off_d, mask=mask_dl, other=0.0).to(ct)
        dt, dsoft = _delta(raw, bias, HAS_BIAS, SOFTPLUS)
        dt = tl.where(mask_dl, dt, 0.0)
        Bt = tl.load(B_ptr + off_b, mask=mask_nl, other=0.0).to(ct)
        dy = tl.load(dy_ptr + b * s_yb + d[:, None] * s_yd + l[None, :] * s_yl, mask=mask_dl, other=0.0).to(ct)
        C_r = tl.load(C_ptr + b * s_cb + g * s_cg + n[:, None] * s_cn + lr[None, :] * s_cl,
                      mask=mask_n[:, None] & mask_lr[None, :], other=0.0).to(ct)
        dy_r = tl.load(dy_ptr + b * s_yb + d[:, None] * s_yd + lr[None, :] * s_yl, mask=mask_dlr, other=0.0).to(ct)
        # the previous token (identity step at the chunk's first token: the entry state covers it)
        mask_p = mask_dl & (j > 0)[None, :]
        mask_pn = mask_nl & (j > 0)[None, :]
        u_p = tl.load(u_ptr + off_u - s_ul, mask=mask_p, other=0.0).to(ct)
        raw_p = tl.load(delta_ptr + off_d - s_dl, mask=mask_p, other=0.0).to(ct)
        dt_p, _ = _delta(raw_p, bias, HAS_BIAS, SOFTPLUS)
        dt_p = tl.where(mask_p, dt_p, 0.0)
        B_p = tl.load(B_ptr + off_b - s_bl, mask=mask_pn, other=0.0).to(ct)
        # the next token's decay a_{t+1}, reversed (1 past the end, where the adjoint is 0 anyway)
        mask_x = mask_d[:, None] & (lr + 1 < L)[None, :]
        raw_x = tl.load(delta_ptr + b * s_db + d[:, None] * s_dd + (lr[None, :] + 1) * s_dl, mask=mask_x,
                        other=0.0).to(ct)
        dt_x, _ = _delta(raw_x, bias, HAS_BIAS, SOFTPLUS)
        dt_x = tl.where(mask_x, dt_x, 0.0)

        h_entry = tl.load(h_ptr + b * s_hb + d[:, None] * s_hd + c * s_hc + n[None, :] * s_hn, mask=mask_dn, other=0.0)
        a_p = tl.exp(dt_p[:, None, :] * A[:, :, None])
        pa, pb = tl.associative_scan((a_p, (dt_p * u_p)[:, None, :] * B_p[None, :, :]), 2, _linear_combine)
        h_prev = pa * h_entry[:, :, None] + pb  # h_{t-1}
        a = tl.exp(dt[:, None, :] * A[:, :, None])
        dtu = dt * u
        h = a * h_prev + dtu[:, None, :] * Bt[None, :, :]

        a_x = tl.exp(dt_x[:, None, :] * A[:, :, None])
        qa, qb = tl.associative_scan((a_x, C_r[None, :, :] * dy_r[:, None, :]), 2, _linear_combine)
        adj_r = qa * g_next[:, :, None] + qb  # g, reversed
        g_next = tl.sum(tl.where(last, adj_r, 0.0), axis=2)  # g of the chunk's first token
        adj = tl.flip(adj_r, 2)  # g_t

        ga = adj * a * h_prev  # ∂/∂(log a_t)
        dA += tl.sum(ga * dt[:, None, :], axis=2)
        gB = adj * Bt[None, :, :]
        ddt = tl.sum(ga * A[:, :, None] + gB * u[:, None, :], axis=1) * dsoft
        du = tl.sum(gB, axis=1) * dt
        if HAS_D:
            du += Dv[:, None] * dy
        off_o = (b * (G * DG) + d[:, None]) * L + l[None, :]  # contiguous batch×D×L
        tl.store(du_ptr + off_o, du, mask=mask_dl)
        tl.store(ddelta_ptr + off_o, ddt, mask=mask_dl)
        off_p = (part + n[:, None]) * L + l[None, :]
        tl.store(dB_ptr + off_p, tl.sum(adj * dtu[:, None, :], axis=0), mask=mask_nl)
        tl.store(dC_ptr + off_p, tl.sum(h * dy[:, None, :], axis=0), mask=mask_nl)
    tl.store(dA_ptr + (b * G * DG + d[:, None]) * N + n[None, :], dA, mask=mask_dn)
