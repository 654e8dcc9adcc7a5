/* Window attention forward for CPUs, float32: softmax(q·kᵀ·scale + bias + mask)·v per window and
 * head, for small heads (the light model's 12 channels), where general matrix-multiply kernels
 * waste much of their work on thin operands; for the other variants' 29–33 channels PyTorch's
 * flash attention is faster and attention_compiled.py does not use this kernel. Any head size
 * up to 64 gives correct results.
 *
 *   qkv: windows·n rows (row stride ldqkv), each [q | k | v], each heads × hd
 *   bias: heads × n × n (contiguous), mask: n × n or NULL, both added to the scaled scores
 *   out: windows·n rows (row stride ldout) of heads × hd: the heads side by side, as the
 *        projection that follows wants them
 *
 * A task is one (window, head): kᵀ and vᵀ are packed hd × n (contiguous in the key index, the
 * vectorised dimension), then rows of queries go through scores, softmax and the weighted sum of
 * v, all from L1/L2. Tasks are split over `nthreads` threads (kernel_parallel.h). Compiled on
 * first use by native.py; no Python or torch headers needed.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_parallel.h"
#include "kernel_vec.h"

/* Query rows per pass (their scores share each load of kᵀ and vᵀ) and output channels per pass
 * of the weighted sum: ROWS·DBLK accumulators plus ROWS + 1 operands fit the vector registers. */
#ifndef ROWS
#if VW == 16
#define ROWS 4
#else
#define ROWS 2
#endif
#endif
#ifndef DBLK
#if VW == 16
#define DBLK 6
#else
#define DBLK 4
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
static inline vf exp_neg(vf x) {
    const vi tiny = x < splat(MIN_EXP);
    return sel(tiny, splat(0.0f), exp_core(sel(tiny, splat(MIN_EXP), x)));
}

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

/* out[r][d0 .. d0 + nd) = Σ_j p[r][j] · vᵀ[d][j] / sums[r] */
static inline __attribute__((always_inline)) void weighted_sum(const int rows, int64_t d0, const int nd,
                                                               const float *vt, int64_t np,
                                                               const float *p, const float *sums,
                                                               float *out, int64_t ldout) {
    vf acc[ROWS][DBLK];
    UNROLL
    for (int r = 0; r < rows; ++r)
        UNROLL
        for (int k = 0; k < nd; ++k) acc[r][k] = splat(0.0f);
    for (int64_t c = 0; c < np; c += VW) {
        vf pr[ROWS];
        UNROLL
        for (int r = 0; r < rows; ++r) pr[r] = loadu(p + r * np + c);
        UNROLL
        for (int k = 0; k < nd; ++k) {
            const vf v = loadu(vt + (d0 + k) * np + c);
            UNROLL
            for (int r = 0; r < rows; ++r) acc[r][k] += pr[r] * v;
        }
    }
    UNROLL
    for (int r = 0; r < rows; ++r) {
        const float inv = 1.0f / sums[r];
        UNROLL
        for (int k = 0; k < nd; ++k) out[r * ldout + d0 + k] = hsum(acc[r][k]) * inv;
    }
}

static inline __attribute__((always_inline)) void rows_block(const Job *j, int64_t h, int64_t i0,
                                                             const int rows, const int64_t hd,
                                                             const float *q, const float *kt,
                                                             const float *vt, int64_t np, float *s,
                                                             float *sums, float *o) {
    scores(j, h, i0, rows, hd, q, kt, np, s, sums);
    int64_t d0 = 0;
    for (; d0 + DBLK <= hd; d0 += DBLK) weighted_sum(rows, d0, DBLK, vt, np, s, sums, o, j->ldout);
    switch (hd - d0) {  /* constant block sizes keep the accumulators in registers */
#if DBLK > 5
        case 5: weighted_sum(rows, d0, 5, vt, np, s, sums, o, j->ldout); break;
#endif
#if DBLK > 4
        case 4: weighted_sum(rows, d0, 4, vt, np, s, sums, o, j->ldout); break;
#endif
        case 3: weighted_sum(rows, d0, 3, vt, np, s, sums, o, j->ldout); break;
        case 2: weighted_sum(rows, d0, 2, vt, np, s, sums, o, j->ldout); break;
        case 1: weighted_sum(rows, d0, 1, vt, np, s, sums, o, j->ldout); break;
        default: break;
    }
}

static inline __attribute__((always_inline)) void task(const Job *j, int64_t w, int64_t h,
                                                       const int64_t hd, float *kt, float *vt,
                                                       float *s, int64_t np) {
    const int64_t n = j->n, c = j->heads * hd;
    const float *base = j->qkv + w * n * j->ldqkv;
    const float *k = base + c + h * hd, *v = base + 2 * c + h * hd;
    for (int64_t d = 0; d < hd; ++d)  /* pack kᵀ and vᵀ: hd × np, zero beyond n */
        for (int64_t i = 0; i < n; ++i) {
            kt[d * np + i] = k[i * j->ldqkv + d];
            vt[d * np + i] = v[i * j->ldqkv + d];
        }
    for (int64_t d = 0; d < hd; ++d)
        for (int64_t i = n; i < np; ++i) kt[d * np + i] = vt[d * np + i] = 0.0f;
    float q[ROWS * 64], sums[ROWS];
    for (int64_t i0 = 0; i0 < n; i0 += ROWS) {
        const int rows = n - i0 < ROWS ? (int)(n - i0) : ROWS;
        for (int r = 0; r < rows; ++r)
            for (int64_t d = 0; d < hd; ++d) q[r * hd + d] = base[(i0 + r) * j->ldqkv + h * hd + d] * j->scale;
        float *o = j->out + (w * n + i0) * j->ldout + h * hd;
        if (rows == ROWS)  /* a constant row count keeps the accumulators in registers */
            rows_block(j, h, i0, ROWS, hd, q, kt, vt, np, s, sums, o);
        else
            rows_block(j, h, i0, 1, hd, q, kt, vt, np, s, sums, o);
    }
}

static void *run_job(void *arg) {
    const Job *j = (const Job *)arg;
    const int64_t hd = j->hd, np = (j->n + VW - 1) / VW * VW;
    float *buf = NULL;
    if (j->task_end > j->task_begin &&
        posix_memalign((void **)&buf, 64, sizeof(float) * (size_t)(np * (2 * hd + ROWS))) != 0)
        return (void *)1;
    float *kt = buf, *vt = buf + hd * np, *s = buf + 2 * hd * np;
    for (int64_t t = j->task_begin; t < j->task_end; ++t) {
        const int64_t w = t / j->heads, h = t % j->heads;
        if (hd == 12)  /* the light model's head size, as a constant */
            task(j, w, h, 12, kt, vt, s, np);
        else
            task(j, w, h, hd, kt, vt, s, np);
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
