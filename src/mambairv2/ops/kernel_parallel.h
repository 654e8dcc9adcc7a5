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
#ifdef _OPENMP
#include <omp.h>
#endif

#define MAX_THREADS 256

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
