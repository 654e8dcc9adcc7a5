/* LayerNorm over the last dimension for CPUs, float32 (inference): for each row x of C values
 *
 *   y = (x − mean(x)) / sqrt(var(x) + eps) · weight + bias     (biased variance, as torch)
 *
 * with the mean and the variance by two passes over the row (from L1). At the models' small
 * widths (48 channels for light) PyTorch's kernel spends much of its time per row rather than
 * per value. Rows are split over `nthreads` threads (kernel_parallel.h). Compiled on first use by
 * native.py; no Python or torch headers needed.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_parallel.h"
#include "kernel_vec.h"

typedef struct {
    int64_t c, ldx, ldy;
    const float *x, *w, *b;
    float eps;
    float *y;
    int64_t task_begin, task_end;
} Job;

static inline __attribute__((always_inline)) void row(const Job *j, int64_t r, const int64_t c) {
    const float *x = j->x + r * j->ldx;
    float *y = j->y + r * j->ldy;
    const int64_t cv = c / VW * VW;
    vf s = splat(0.0f);
    for (int64_t k = 0; k < cv; k += VW) s += loadu(x + k);
    float sum = hsum(s);
    for (int64_t k = cv; k < c; ++k) sum += x[k];
    const float mean = sum / (float)c;
    const vf m = splat(mean);
    vf q = splat(0.0f);
    for (int64_t k = 0; k < cv; k += VW) {
        const vf d = loadu(x + k) - m;
        q += d * d;
    }
    float sq = hsum(q);
    for (int64_t k = cv; k < c; ++k) sq += (x[k] - mean) * (x[k] - mean);
    const float rstd = 1.0f / sqrtf(sq / (float)c + j->eps);
    const vf rs = splat(rstd);
    for (int64_t k = 0; k < cv; k += VW)
        storeu(y + k, (loadu(x + k) - m) * rs * loadu(j->w + k) + loadu(j->b + k));
    for (int64_t k = cv; k < c; ++k) y[k] = (x[k] - mean) * rstd * j->w[k] + j->b[k];
}

static void *run_job(void *arg) {
    const Job *j = (const Job *)arg;
    for (int64_t r = j->task_begin; r < j->task_end; ++r) {
        if (j->c == 48)  /* the light model's width, as a constant */
            row(j, r, 48);
        else
            row(j, r, j->c);
    }
    return NULL;
}

/* x, y: rows × c with row strides ldx, ldy (channels contiguous); weight, bias: c. Returns 0. */
int mambairv2_layer_norm_f32(int64_t rows, int64_t c, const float *x, int64_t ldx,
                             const float *weight, const float *bias, float eps, float *y,
                             int64_t ldy, int nthreads) {
    Job base;
    memset(&base, 0, sizeof base);
    base.c = c; base.ldx = ldx; base.ldy = ldy; base.x = x; base.w = weight; base.b = bias;
    base.eps = eps; base.y = y;
    const int64_t per_thread = 256;  /* rows; fewer per thread cost more in synchronisation */
    nthreads = thread_count(nthreads, rows, per_thread);
    Job jobs[MAX_THREADS];
    SPLIT_TASKS(jobs, base, nthreads, rows);
    return run_parallel(run_job, jobs, sizeof(Job), nthreads) ? 2 : 0;
}
