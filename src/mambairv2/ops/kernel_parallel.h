/* Splitting a kernel's tasks over threads, shared by the C kernels of this directory.
 *
 * Built with OpenMP (-fopenmp) the work runs on the process's OpenMP thread pool: in a PyTorch
 * process that is PyTorch's own libgomp (the dynamic loader reuses the already loaded library of
 * that soname), whose workers spin for a while after each PyTorch operation; threads of our own
 * would compete with them for the cores. Without OpenMP, POSIX threads are started per call.
 */
#ifndef MAMBAIRV2_KERNEL_PARALLEL_H
#define MAMBAIRV2_KERNEL_PARALLEL_H
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define MAX_THREADS 256

/* How many threads to use for `units` units of work of which each thread should get at least
 * `min_per_thread` (fewer cost more in synchronisation than they save): 1 .. MAX_THREADS. */
static inline int thread_count(int nthreads, int64_t units, int64_t min_per_thread) {
    const int64_t most = (units + min_per_thread - 1) / min_per_thread;
    if (nthreads > most) nthreads = (int)most;
    if (nthreads < 1) nthreads = 1;
    return nthreads > MAX_THREADS ? MAX_THREADS : nthreads;
}

/* jobs[i] = base, given tasks [total·i/n, total·(i+1)/n) (fields task_begin and task_end). */
#define SPLIT_TASKS(jobs, base, n, total)                          \
    for (int i_ = 0; i_ < (n); ++i_) {                             \
        (jobs)[i_] = (base);                                       \
        (jobs)[i_].task_begin = (int64_t)(total) * i_ / (n);       \
        (jobs)[i_].task_end = (int64_t)(total) * (i_ + 1) / (n);   \
    }

/* Runs fn(jobs[i]) for i < n (n ≤ MAX_THREADS, job i at jobs + i·size), in parallel; returns
 * nonzero when some fn returned non-NULL. */
static int run_parallel(void *(*fn)(void *), void *jobs, size_t size, int n) {
    int failed = 0;
#ifdef _OPENMP
#pragma omp parallel for num_threads(n) schedule(static, 1) reduction(| : failed)
    for (int i = 0; i < n; ++i) failed |= fn((char *)jobs + (size_t)i * size) != NULL;
#else
    pthread_t threads[MAX_THREADS];
    int started[MAX_THREADS];
    for (int i = 1; i < n; ++i) started[i] = pthread_create(&threads[i], NULL, fn, (char *)jobs + (size_t)i * size) == 0;
    failed |= fn(jobs) != NULL;
    for (int i = 1; i < n; ++i) {
        void *r = NULL;
        if (started[i]) pthread_join(threads[i], &r);
        else r = fn((char *)jobs + (size_t)i * size);  /* could not start a thread: run it here */
        failed |= r != NULL;
    }
#endif
    return failed;
}

#endif
