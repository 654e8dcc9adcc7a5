/* Inference-time routing of the attentive state-space module, for CPUs:
 *
 *   groups[l]  = argmax_t logits[l, t]        (the first index of the largest value)
 *   order      = the stable sort of the tokens by group (semantic-guided neighbouring)
 *   inverse    = the inverse permutation: inverse[order[p]] = p
 *
 * The argmax is split over `nthreads` threads (kernel_parallel.h); the sort is a counting sort
 * (a few tens of groups), linear in the tokens, where a general sort of the group indices and a
 * scatter for the inverse cost PyTorch tens of times more. Compiled on first use by native.py.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_parallel.h"
#include "kernel_vec.h"

typedef struct {
    int64_t ntok, ld;
    const float *logits;
    int64_t *groups;
    int64_t task_begin, task_end;
} Job;

/* The first index of the largest of x[0 .. n): lane-wise running maxima over chunks of VW (a
 * strict comparison keeps the earlier index on ties), then the smallest index among the lanes
 * holding the overall maximum. A scalar loop is a chain of dependent compares. */
static inline int64_t argmax_row(const float *x, int64_t n) {
    int64_t best = 0;
    float v = x[0];
    int64_t t = 0;
    if (n >= VW) {
        vi lane, idx;
        for (int k = 0; k < VW; ++k) lane[k] = k;
        vf m = loadu(x);
        idx = lane;
        for (t = VW; t + VW <= n; t += VW) {
            const vf w = loadu(x + t);
            const vi gt = w > m;
            m = (vf)(((vi)w & gt) | ((vi)m & ~gt));
            idx = ((lane + (int32_t)t) & gt) | (idx & ~gt);
        }
        v = m[0];
        best = idx[0];
        for (int k = 1; k < VW; ++k)
            if (m[k] > v || (m[k] == v && idx[k] < best)) {
                v = m[k];
                best = idx[k];
            }
    }
    for (; t < n; ++t)
        if (x[t] > v) {
            v = x[t];
            best = t;
        }
    return best;
}

static void *run_job(void *arg) {
    const Job *j = (const Job *)arg;
    for (int64_t r = j->task_begin; r < j->task_end; ++r) j->groups[r] = argmax_row(j->logits + r * j->ld, j->ntok);
    return NULL;
}

/* logits: batch·length rows of ntok floats (row stride ld); groups, order, inverse: batch × length
 * int64 (contiguous). Returns 0, or 2 when memory ran out. */
int mambairv2_sgn_route_f32(int64_t batch, int64_t length, int64_t ntok, const float *logits,
                            int64_t ld, int64_t *groups, int64_t *order, int64_t *inverse,
                            int nthreads) {
    const int64_t rows = batch * length, per_thread = 1024;
    nthreads = thread_count(nthreads, rows, per_thread);
    const Job base = {ntok, ld, logits, groups, 0, 0};
    Job jobs[MAX_THREADS];
    SPLIT_TASKS(jobs, base, nthreads, rows);
    run_parallel(run_job, jobs, sizeof(Job), nthreads);
    int64_t *start = (int64_t *)malloc(sizeof(int64_t) * (size_t)(ntok + 1));
    if (!start) return 2;
    for (int64_t b = 0; b < batch; ++b) {
        const int64_t *g = groups + b * length;
        int64_t *o = order + b * length, *inv = inverse + b * length;
        memset(start, 0, sizeof(int64_t) * (size_t)(ntok + 1));
        for (int64_t l = 0; l < length; ++l) ++start[g[l] + 1];
        for (int64_t t = 0; t < ntok; ++t) start[t + 1] += start[t];
        for (int64_t l = 0; l < length; ++l) {  /* in raster order: ties keep it (stable) */
            const int64_t p = start[g[l]]++;
            o[p] = l;
            inv[l] = p;
        }
    }
    free(start);
    return 0;
}
