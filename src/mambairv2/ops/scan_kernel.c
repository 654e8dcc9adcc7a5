/* Selective scan forward for CPUs, float32: the recurrence of the reference backend in one pass.
 *
 *   delta = softplus(delta_in + bias[d])       (bias and softplus optional; delta_in given, or
 *                                               computed as W[d,:]·dt[:] from a rank-R input)
 *   h[n] = exp(max(delta*A[d,n], MIN_LOG_DECAY)) * h[n] + delta*u*B[n]
 *   y    = sum_n h[n]*C[n] + Dskip[d]*u
 *
 * per (batch, channel), sequentially over the tokens. Channels are processed in blocks of DB,
 * the innermost (vectorised) dimension, with the N×DB state in registers/L1; tasks (batch ×
 * channel block) are split over `nthreads` threads (kernel_parallel.h). Every tensor is given by
 * pointer and element strides, so token-major (B×L×D) and channel-major (B×D×L) layouts both work
 * without copies. Compiled on first use by native.py; no Python or torch headers needed.
 */
#include <math.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "kernel_parallel.h"

/* Channels per block: one vector register, 16 floats with AVX-512, else 8 (AVX2; 16 would spill
 * the state). With AVX-512, 16 with the exps below took 26-38% less CPU time than 8 (one thread,
 * the light and base models' calls). The light model's 48 channels then split 2:1 over two
 * threads; at about 1.3× the time of a block of 8 per block of 16 that should still beat 3:3
 * blocks of 8 (benchmarks/kernel_ab.py scan --threads 2 checks it). */
#ifndef DB
#if defined(__AVX512F__)
#define DB 16
#else
#define DB 8
#endif
#endif
#define NMAX 64
#define RMAX 64
#ifndef TL
#define TL 16  /* tokens per tile */
#endif
#define MIN_LOG_DECAY -60.0f

#define VW DB  /* the vectors of kernel_vec.h: one block of channels */
#include "kernel_vec.h"

/* exp(x) for x in [MIN_LOG_DECAY, 0] */
static inline vf exp_small(vf x) {
#if VW == 16 && defined(__AVX512F__)
    __m512 n;
    const __m512 p = exp_reduce512((__m512)x, &n);
    return (vf)_mm512_scalef_ps(p, n);
#else
    return exp_core(x);
#endif
}

/* max(x, lo); NaN stays NaN */
static inline vf at_least(vf x, vf lo) {
#if VW == 16 && defined(__AVX512F__)
    return (vf)_mm512_max_ps((__m512)lo, (__m512)x);  /* the second operand where either is NaN */
#else
    return sel(x < lo, lo, x);
#endif
}

/* log(w) for w in [1, 2] (Cephes' logf polynomial after the reduction to [sqrt(1/2), sqrt(2))). */
static inline vf log_1_2(vf w) {
    vi big = w > splat(1.41421356237f);
    vf e = sel(big, splat(1.0f), splat(0.0f));
    vf x = sel(big, w * splat(0.5f), w) - splat(1.0f);
    vf z = x * x;
    vf y = splat(7.0376836292e-2f);
    y = y * x + splat(-1.1514610310e-1f);
    y = y * x + splat(1.1676998740e-1f);
    y = y * x + splat(-1.2420140846e-1f);
    y = y * x + splat(1.4249322787e-1f);
    y = y * x + splat(-1.6668057665e-1f);
    y = y * x + splat(2.0000714765e-1f);
    y = y * x + splat(-2.4999993993e-1f);
    y = y * x + splat(3.3333331174e-1f);
    y = y * x * z + e * splat(-2.12194440e-4f) - splat(0.5f) * z;
    return x + y + e * splat(0.693359375f);
}

/* softplus(x) = max(x, 0) + log1p(exp(-|x|)), log1p(z) as log(1 + z)·z / ((1 + z) − 1) (exact
 * for small z); equal to torch's softplus (threshold 20) up to rounding. */
static inline vf softplus(vf x) {
    vi neg = x < splat(0.0f);
    vf na = sel(neg, x, -x);                                  /* -|x| */
    na = at_least(na, splat(MIN_LOG_DECAY));
    vf z = exp_small(na);
    vf w = splat(1.0f) + z;
    vf d = w - splat(1.0f);
    vi exact = d == splat(0.0f);                              /* z below rounding of 1 + z */
    vf l1p = sel(exact, z, log_1_2(w) * (z / sel(exact, splat(1.0f), d)));
    return sel(neg, splat(0.0f), x) + l1p;
}

typedef struct {
    int64_t batch, dim, length, nstate;
    const float *u; int64_t su[3];
    const float *delta; int64_t sdt[3];
    const float *A;        /* D×N, contiguous */
    const float *B; int64_t sb[3];
    const float *C; int64_t sc[3];
    const float *Dskip;    /* D or NULL */
    const float *bias;     /* D or NULL, added to delta */
    int softplus;
    const float *dtl; int64_t sdl[3]; int64_t rank;  /* rank-R delta input (B, R, L) or NULL */
    const float *dtw;      /* D×R projection of dtl */
    float *y; int64_t sy[3];
    int64_t task_begin, task_end;
} Job;

/* What a block of channels carries from one tile of tokens to the next. */
typedef struct {
    vf At[NMAX], h[NMAX], skip, bias, Wt[RMAX];
} BlockState;

static void block_init(const Job *j, int64_t d0, int64_t nd, BlockState *s) {
    const int64_t N = j->nstate;
    for (int64_t n = 0; n < N; ++n) {
        s->h[n] = splat(0.0f);
        s->At[n] = splat(0.0f);
        for (int64_t k = 0; k < nd; ++k) s->At[n][k] = j->A[(d0 + k) * N + n];
    }
    s->skip = splat(0.0f);
    s->bias = splat(0.0f);
    for (int64_t k = 0; k < nd && j->Dskip; ++k) s->skip[k] = j->Dskip[d0 + k];
    for (int64_t k = 0; k < nd && j->bias; ++k) s->bias[k] = j->bias[d0 + k];
    for (int64_t r = 0; r < j->rank; ++r) {
        s->Wt[r] = splat(0.0f);
        for (int64_t k = 0; k < nd; ++k) s->Wt[r][k] = j->dtw[(d0 + k) * j->rank + r];
    }
}

/* Tokens l0 .. l0 + tl − 1 (tl ≤ TL) of one block: batch b, channels d0 .. d0 + nd − 1 (nd ≤ DB).
 * First everything that does not depend on the state (Δ, Δ·u and the decays: independent exps
 * that keep the vector units busy), then the recurrence itself, a chain of FMAs per state; one
 * pass with the exps inside the chain is latency-bound. Inlined with N constant for the released
 * models' state sizes, so that the state loops unroll into registers. */
static inline __attribute__((always_inline)) void scan_tile(const Job *j, int64_t b, int64_t d0,
                                                            int64_t nd, const int64_t N, int64_t l0,
                                                            int64_t tl, BlockState *s) {
    const vf floor_ = splat(MIN_LOG_DECAY), skip = s->skip, bias = s->bias;
    const int64_t su = j->su[1], sdt = j->sdt[1], sy = j->sy[1], sbn = j->sb[1], scn = j->sc[1];
    const float *u = j->u + b * j->su[0] + d0 * su + l0 * j->su[2];
    const float *dt = j->dtl ? NULL : j->delta + b * j->sdt[0] + d0 * sdt + l0 * j->sdt[2];
    const float *dtl = j->dtl ? j->dtl + b * j->sdl[0] + l0 * j->sdl[2] : NULL;
    const float *Bp = j->B + b * j->sb[0] + l0 * j->sb[2];
    const float *Cp = j->C + b * j->sc[0] + l0 * j->sc[2];
    float *y = j->y + b * j->sy[0] + d0 * sy + l0 * j->sy[2];
    vf dlt[TL], ut[TL], dut[TL], dA[TL * NMAX];  /* dA[i·N + n]: packed, no cache-set aliasing */
    vf h[NMAX];
    for (int64_t i = 0; i < tl; ++i) {
        vf dl = splat(0.0f), uu = splat(0.0f);
        if (nd == DB && su == 1) {  /* token-major: one vector load */
            memcpy(&uu, u + i * j->su[2], sizeof uu);
        } else {
            for (int64_t k = 0; k < nd; ++k) uu[k] = u[i * j->su[2] + k * su];
        }
        if (dtl) {  /* Δ = W·dt: R broadcast FMAs */
            const float *row = dtl + i * j->sdl[2];
            for (int64_t r = 0; r < j->rank; ++r) dl += splat(row[r * j->sdl[1]]) * s->Wt[r];
        } else if (nd == DB && sdt == 1) {
            memcpy(&dl, dt + i * j->sdt[2], sizeof dl);
        } else {
            for (int64_t k = 0; k < nd; ++k) dl[k] = dt[i * j->sdt[2] + k * sdt];
        }
        dl += bias;
        if (j->softplus) dl = softplus(dl);
        for (int64_t k = nd; k < DB; ++k) dl[k] = 0.0f;  /* padding lanes keep the state at 0 */
        dlt[i] = dl;
        ut[i] = uu;
        dut[i] = dl * uu;
    }
    for (int64_t i = 0; i < tl; ++i)
        for (int64_t n = 0; n < N; ++n) {
            vf a = dlt[i] * s->At[n];
            dA[i * N + n] = exp_small(at_least(a, floor_));
        }
    for (int64_t n = 0; n < N; ++n) h[n] = s->h[n];
    for (int64_t i = 0; i < tl; ++i) {
        const float *Bl = Bp + i * j->sb[2], *Cl = Cp + i * j->sc[2];
        vf acc = skip * ut[i];
        for (int64_t n = 0; n < N; ++n) {
            vf hn = dA[i * N + n] * h[n] + dut[i] * splat(Bl[n * sbn]);
            h[n] = hn;
            acc += hn * splat(Cl[n * scn]);
        }
        float *yl = y + i * j->sy[2];
        if (nd == DB && sy == 1)
            memcpy(yl, &acc, sizeof acc);
        else
            for (int64_t k = 0; k < nd; ++k) yl[k * sy] = acc[k];
    }
    for (int64_t n = 0; n < N; ++n) s->h[n] = h[n];
}

static void scan_tile_any(const Job *j, int64_t b, int64_t d0, int64_t nd, int64_t l0, int64_t tl,
                          BlockState *s) {
    switch (j->nstate) {
        case 8: scan_tile(j, b, d0, nd, 8, l0, tl, s); break;
        case 16: scan_tile(j, b, d0, nd, 16, l0, tl, s); break;
        default: scan_tile(j, b, d0, nd, j->nstate, l0, tl, s); break;
    }
}

/* A thread's tasks (batch, channel block), batch by batch; within a batch all its blocks advance
 * together tile by tile, so each tile's rows of u and Δ and of B and C are read from memory once
 * and then served from cache to every block (one block at a time through the whole sequence
 * re-reads B and C per block and uses a fraction of each cache line of u and Δ). */
static void *run_job(void *arg) {
    const Job *j = (const Job *)arg;
    const int64_t nblk = (j->dim + DB - 1) / DB;
    BlockState *states = NULL;
    if (j->task_end > j->task_begin && posix_memalign((void **)&states, 64,
            sizeof(BlockState) * (size_t)(j->task_end - j->task_begin)) != 0)
        return (void *)1;
    for (int64_t t0 = j->task_begin; t0 < j->task_end;) {
        const int64_t b = t0 / nblk;
        const int64_t t1 = (b + 1) * nblk < j->task_end ? (b + 1) * nblk : j->task_end;
        for (int64_t t = t0; t < t1; ++t) {
            const int64_t d0 = (t % nblk) * DB;
            block_init(j, d0, j->dim - d0 < DB ? j->dim - d0 : DB, &states[t - t0]);
        }
        for (int64_t l0 = 0; l0 < j->length; l0 += TL) {
            const int64_t tl = j->length - l0 < TL ? j->length - l0 : TL;
            for (int64_t t = t0; t < t1; ++t) {
                const int64_t d0 = (t % nblk) * DB;
                scan_tile_any(j, b, d0, j->dim - d0 < DB ? j->dim - d0 : DB, l0, tl, &states[t - t0]);
            }
        }
        t0 = t1;
    }
    free(states);
    return NULL;
}

/* Strides are in elements, in the order (batch, channel, state or rank, token). `delta` is
 * ignored when `dtl` (with `sdl`, `rank` and the D×R `dtw`) is given. Returns 0 on success,
 * 1 for an unsupported state size or rank, 2 when memory for the block states ran out. */
int mambairv2_scan_f32(int64_t batch, int64_t dim, int64_t length, int64_t nstate,
                       const float *u, const int64_t *su, const float *delta, const int64_t *sdt,
                       const float *A, const float *B, const int64_t *sb,
                       const float *C, const int64_t *sc, const float *Dskip,
                       const float *bias, int softplus, const float *dtl, const int64_t *sdl,
                       int64_t rank, const float *dtw, float *y, const int64_t *sy, int nthreads) {
    if (nstate < 1 || nstate > NMAX || (dtl && (rank < 1 || rank > RMAX))) return 1;
    Job base;
    memset(&base, 0, sizeof base);
    base.batch = batch; base.dim = dim; base.length = length; base.nstate = nstate;
    base.u = u; base.delta = delta; base.A = A; base.B = B; base.C = C; base.Dskip = Dskip; base.y = y;
    base.bias = bias; base.softplus = softplus;
    base.dtl = dtl; base.dtw = dtw; base.rank = dtl ? rank : 0;
    if (dtl) memcpy(base.sdl, sdl, sizeof base.sdl);
    memcpy(base.su, su, sizeof base.su); memcpy(base.sdt, sdt, sizeof base.sdt);
    memcpy(base.sb, sb, sizeof base.sb); memcpy(base.sc, sc, sizeof base.sc);
    memcpy(base.sy, sy, sizeof base.sy);
    const int64_t ntask = batch * ((dim + DB - 1) / DB);
    nthreads = thread_count(nthreads, ntask, 1);
    Job jobs[MAX_THREADS];
    SPLIT_TASKS(jobs, base, nthreads, ntask);
    int failed = run_parallel(run_job, jobs, sizeof(Job), nthreads);
    return failed ? 2 : 0;  /* 2: out of memory for the block states */
}
