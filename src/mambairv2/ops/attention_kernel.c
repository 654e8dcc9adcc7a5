/* Window attention forward for CPUs, float32: softmax(q·kᵀ·scale + bias + mask)·v per window and
 * head, for small heads (the light model's 12 channels, the base model's 29), where general
 * matrix-multiply kernels waste much of their work on thin operands; attention_compiled.py uses
 * it up to 32 channels (at the small model's 33 PyTorch's flash attention is as fast). Any head
 * size up to 64 gives correct results.
 *
 *   qkv: windows·n rows (row stride ldqkv), each [q | k | v], each heads × hd
 *   bias: heads × n × n (contiguous), mask: n × n or NULL, both added to the scaled scores
 *   out: windows·n rows (row stride ldout) of heads × hd: the heads side by side, as the
 *        projection that follows wants them
 *
 * A task is one (window, head): kᵀ is packed hd × n (contiguous in the key index, the vectorised
 * dimension of the scores) and v n × hd (rounded up to whole vectors: the vectorised dimension of
 * the weighted sum), then rows of queries go through scores, softmax and the weighted sum of v,
 * all from L1/L2. Tasks are split over `nthreads` threads (kernel_parallel.h). Compiled on
 * first use by native.py; no Python or torch headers needed.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_parallel.h"
#include "kernel_vec.h"

/* Query rows per pass (their scores share each load of kᵀ and vᵀ) and output channels per pass
 * of the weighted sum: ROWS·VBLK accumulators plus VBLK + 1 operands fit the vector registers. */
#ifndef ROWS
#if VW == 16
#define ROWS 8
#else
#define ROWS 2
#endif
#endif
#ifndef VBLK
#if VW == 16
#define VBLK 3
#else
#define VBLK 2
#endif
#endif
#define MIN_EXP -87.0f
#define UNROLL _Pragma("GCC unroll 16")

static inline float hmax(vf v) {
    float m = v[0];
    for (int k = 1; k < VW; ++k) m = v[k] > m ? v[k] : m;
    return m;
}

/* exp(x) for x <= 0, 0 below MIN_EXP: results that small would be subnormal, and subnormal
 * operands slow the weighted sum down several times. */
#if VW == 16 && defined(__AVX512F__) && !defined(ATTENTION_PORTABLE_EXP)
/* With AVX-512 the same Cephes polynomial as exp_core, with the rounding and the scaling by 2ⁿ
 * as single instructions (exp_reduce512, vscalefps) and the cut-off as a zeroing mask: the exp is
 * the costliest step of the softmax, about a fifth of the kernel's time with the portable form. */
static inline vf exp_neg(vf x) {
    const __m512 xv = (__m512)x;
    __m512 n;
    const __m512 p = exp_reduce512(xv, &n);
    const __mmask16 keep = _mm512_cmp_ps_mask(xv, _mm512_set1_ps(MIN_EXP), _CMP_GE_OQ);
    return (vf)_mm512_maskz_scalef_ps(keep, p, n);
}
#else
static inline vf exp_neg(vf x) {
    const vi tiny = x < splat(MIN_EXP);
    return sel(tiny, splat(0.0f), exp_core(sel(tiny, splat(MIN_EXP), x)));
}
#endif

typedef struct {
    int64_t windows, n, heads, hd, ldqkv, ldout;
    const float *qkv, *bias, *mask;
    float scale;
    float *out;
    int64_t task_begin, task_end;
} Job;

/* Scores of `rows` query rows (scaled q in q[r·hd + d]) against all keys, plus bias and mask,
 * into s[r·np + j]; then each row becomes exp(s − max) and its sum goes to sums[r]. */
static inline __attribute__((always_inline)) void scores(const Job *j, int64_t h, int64_t i0,
                                                         const int rows, const int64_t hd,
                                                         const float *q, const float *kt,
                                                         int64_t np, float *s, float *sums) {
    const int64_t n = j->n;
    vf mx[ROWS];
    UNROLL
    for (int r = 0; r < rows; ++r) mx[r] = splat(-INFINITY);
    for (int64_t c = 0; c < np; c += VW) {
        vf acc[ROWS];
        const int full = c + VW <= n;
        UNROLL
        for (int r = 0; r < rows; ++r) {
            const float *b = j->bias + (h * n + i0 + r) * n + c;
            const float *m = j->mask ? j->mask + (i0 + r) * n + c : NULL;
            if (full) {
                acc[r] = m ? loadu(b) + loadu(m) : loadu(b);
            } else {  /* the last, partial chunk: keys beyond n get −inf */
                vf a = splat(0.0f);
                for (int k = 0; k < VW; ++k) a[k] = c + k < n ? b[k] + (m ? m[k] : 0.0f) : -INFINITY;
                acc[r] = a;
            }
        }
        for (int64_t d = 0; d < hd; ++d) {
            const vf kv = loadu(kt + d * np + c);
            UNROLL
            for (int r = 0; r < rows; ++r) acc[r] += splat(q[r * hd + d]) * kv;
        }
        UNROLL
        for (int r = 0; r < rows; ++r) {
            storeu(s + r * np + c, acc[r]);
            mx[r] = sel(acc[r] > mx[r], acc[r], mx[r]);
        }
    }
    UNROLL
    for (int r = 0; r < rows; ++r) {
        float *sr = s + r * np;
        const vf m = splat(hmax(mx[r]));
        vf sum = splat(0.0f);
        for (int64_t c = 0; c < np; c += VW) {
            vf e = exp_neg(loadu(sr + c) - m);
            sum += e;
            storeu(sr + c, e);
        }
        sums[r] = hsum(sum);
    }
}

/* out[r][0 .. hd) = Σ_j p[r][j] · v[j][0 .. hd) / sums[r], vectorised over the channels with v
 * packed n × hp (hp: hd rounded up to whole vectors, zero beyond hd). Summing over the keys in
 * the lanes instead would end with one horizontal sum per output, which costs more than the
 * products themselves for the base model's windows of 64 keys. */
static inline __attribute__((always_inline)) void weighted_sum(const int rows, const int nv, int64_t n,
                                                               const float *vp, int64_t hp,
                                                               const float *p, int64_t np,
                                                               const float *sums, float *out,
                                                               int64_t ldout, int64_t hd) {
    vf acc[ROWS][VBLK];
    UNROLL
    for (int r = 0; r < rows; ++r)
        UNROLL
        for (int b = 0; b < nv; ++b) acc[r][b] = splat(0.0f);
    for (int64_t i = 0; i < n; ++i) {
        vf v[VBLK];
        UNROLL
        for (int b = 0; b < nv; ++b) v[b] = loadu(vp + i * hp + b * VW);
        UNROLL
        for (int r = 0; r < rows; ++r) {
            const vf pr = splat(p[r * np + i]);
            UNROLL
            for (int b = 0; b < nv; ++b) acc[r][b] += pr * v[b];
        }
    }
    UNROLL
    for (int r = 0; r < rows; ++r) {
        const vf inv = splat(1.0f / sums[r]);
        UNROLL
        for (int b = 0; b < nv; ++b) {
            const vf o = acc[r][b] * inv;
            const int64_t d = b * VW, left = hd - d;
            if (left >= VW) storeu(out + r * ldout + d, o);
            else if (left > 0) memcpy(out + r * ldout + d, &o, sizeof(float) * (size_t)left);
        }
    }
}

static inline __attribute__((always_inline)) void rows_block(const Job *j, int64_t h, int64_t i0,
                                                             const int rows, const int64_t hd,
                                                             const float *q, const float *kt,
                                                             const float *vp, int64_t np, int64_t hp,
                                                             float *s, float *sums, float *o) {
    scores(j, h, i0, rows, hd, q, kt, np, s, sums);
    const int64_t nv = hp / VW;
    int64_t b0 = 0;
    for (; b0 + VBLK <= nv; b0 += VBLK)
        weighted_sum(rows, VBLK, j->n, vp + b0 * VW, hp, s, np, sums, o + b0 * VW, j->ldout, hd - b0 * VW);
    switch (nv - b0) {  /* constant block sizes keep the accumulators in registers */
#if VBLK > 3
        case 3: weighted_sum(rows, 3, j->n, vp + b0 * VW, hp, s, np, sums, o + b0 * VW, j->ldout, hd - b0 * VW); break;
#endif
#if VBLK > 2
        case 2: weighted_sum(rows, 2, j->n, vp + b0 * VW, hp, s, np, sums, o + b0 * VW, j->ldout, hd - b0 * VW); break;
#endif
        case 1: weighted_sum(rows, 1, j->n, vp + b0 * VW, hp, s, np, sums, o + b0 * VW, j->ldout, hd - b0 * VW); break;
        default: break;
    }
}

static inline __attribute__((always_inline)) void task(const Job *j, int64_t w, int64_t h,
                                                       const int64_t hd, float *kt, float *vp,
                                                       float *s, int64_t np, int64_t hp) {
    const int64_t n = j->n, c = j->heads * hd;
    const float *base = j->qkv + w * n * j->ldqkv;
    const float *k = base + c + h * hd, *v = base + 2 * c + h * hd;
    for (int64_t d = 0; d < hd; ++d)  /* pack kᵀ: hd × np, zero beyond n */
        for (int64_t i = 0; i < n; ++i) kt[d * np + i] = k[i * j->ldqkv + d];
    for (int64_t d = 0; d < hd; ++d)
        for (int64_t i = n; i < np; ++i) kt[d * np + i] = 0.0f;
    for (int64_t i = 0; i < n; ++i) {  /* pack v: n × hp, zero beyond hd */
        memcpy(vp + i * hp, v + i * j->ldqkv, sizeof(float) * (size_t)hd);
        memset(vp + i * hp + hd, 0, sizeof(float) * (size_t)(hp - hd));
    }
    float q[ROWS * 64], sums[ROWS];
    for (int64_t i0 = 0; i0 < n;) {
        /* a constant row count keeps the accumulators in registers: ROWS at a time, then the
         * rows left over (n not a multiple of ROWS) one by one */
        const int rows = n - i0 < ROWS ? 1 : ROWS;
        for (int r = 0; r < rows; ++r)
            for (int64_t d = 0; d < hd; ++d) q[r * hd + d] = base[(i0 + r) * j->ldqkv + h * hd + d] * j->scale;
        float *o = j->out + (w * n + i0) * j->ldout + h * hd;
        if (rows == ROWS)
            rows_block(j, h, i0, ROWS, hd, q, kt, vp, np, hp, s, sums, o);
        else
            rows_block(j, h, i0, 1, hd, q, kt, vp, np, hp, s, sums, o);
        i0 += rows;
    }
}

static void *run_job(void *arg) {
    const Job *j = (const Job *)arg;
    const int64_t hd = j->hd, np = (j->n + VW - 1) / VW * VW, hp = (hd + VW - 1) / VW * VW;
    float *buf = NULL;
    if (j->task_end > j->task_begin &&
        posix_memalign((void **)&buf, 64, sizeof(float) * (size_t)(np * (hd + ROWS) + j->n * hp)) != 0)
        return (void *)1;
    float *kt = buf, *s = buf + hd * np, *vp = s + ROWS * np;
    for (int64_t t = j->task_begin; t < j->task_end; ++t) {
        const int64_t w = t / j->heads, h = t % j->heads;
        if (hd == 12)  /* the light model's head size, as a constant */
            task(j, w, h, 12, kt, vp, s, np, hp);
        else
            task(j, w, h, hd, kt, vp, s, np, hp);
    }
    free(buf);
    return NULL;
}

/* Returns 0 on success, 1 for an unsupported head size (> 64), 2 when memory ran out. */
int mambairv2_window_attention_f32(int64_t windows, int64_t n, int64_t heads, int64_t hd,
                                   const float *qkv, int64_t ldqkv, const float *bias,
                                   const float *mask, float scale, float *out, int64_t ldout,
                                   int nthreads) {
    if (hd < 1 || hd > 64) return 1;
    Job base;
    memset(&base, 0, sizeof base);
    base.windows = windows; base.n = n; base.heads = heads; base.hd = hd;
    base.qkv = qkv; base.ldqkv = ldqkv; base.bias = bias; base.mask = mask; base.scale = scale;
    base.out = out; base.ldout = ldout;
    const int64_t ntask = windows * heads;
    nthreads = thread_count(nthreads, ntask, 1);
    Job jobs[MAX_THREADS];
    SPLIT_TASKS(jobs, base, nthreads, ntask);
    int failed = run_parallel(run_job, jobs, sizeof(Job), nthreads);
    return failed ? 2 : 0;
}
