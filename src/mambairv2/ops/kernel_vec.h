/* Vector helpers shared by the C kernels of this directory: GCC/clang vector extensions, which
 * compile to AVX2/AVX-512, SSE or NEON instructions alike. A kernel may define VW (lanes) before
 * including this file; the default is 16 with AVX-512, else 8.
 */
#ifndef MAMBAIRV2_KERNEL_VEC_H
#define MAMBAIRV2_KERNEL_VEC_H
#include <stdint.h>
#include <string.h>

#ifndef VW
#if defined(__AVX512F__)
#define VW 16
#else
#define VW 8
#endif
#endif

typedef float vf __attribute__((vector_size(VW * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(VW * sizeof(float))));
typedef float v8 __attribute__((vector_size(8 * sizeof(float))));
typedef float v4 __attribute__((vector_size(4 * sizeof(float))));

/* x in every lane (a lane-by-lane fill compiles to masked inserts inside unrolled loops) */
static inline vf splat(float x) { return x - (vf){0}; }

static inline vf loadu(const float *p) {
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void storeu(float *p, vf v) { memcpy(p, &v, sizeof v); }

/* mask ? a : b, lane by lane (mask lanes all ones or all zeros, as comparisons give them) */
static inline vf sel(vi mask, vf a, vf b) { return (vf)(((vi)a & mask) | ((vi)b & ~mask)); }

/* The sum of the lanes by halving (a lane-by-lane loop is a chain of VW dependent adds; memcpy
 * of the halves would force the accumulators out of registers). */
static inline float hsum(vf v) {
#if defined(__has_builtin) && __has_builtin(__builtin_shufflevector) && (VW == 16 || VW == 8)
#if VW == 16
    v8 a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
           __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
#else
    v8 a = v;
#endif
    v4 c = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
    return (c[0] + c[2]) + (c[1] + c[3]);
#else
    float s = 0.0f;
    for (int k = 0; k < VW; ++k) s += v[k];
    return s;
#endif
}

/* exp(x) for x in [-87, 0] (Cephes' expf: range reduction by ln 2 with the integer found by the
 * 1.5·2^23 rounding trick, degree-6 polynomial; about 1 ulp). Callers clamp the input. */
static inline vf exp_core(vf x) {
    const vf magic = splat(12582912.0f); /* 1.5 * 2^23 */
    vf t = x * splat(1.44269504088896341f) + magic;
    vf fx = t - magic;                   /* round(x / ln 2) */
    vi n = (vi)t - (vi)magic;
    vf r = x - fx * splat(0.693359375f) + fx * splat(2.12194440e-4f);
    vf p = splat(1.9875691500e-4f);
    p = p * r + splat(1.3981999507e-3f);
    p = p * r + splat(8.3334519073e-3f);
    p = p * r + splat(4.1665795894e-2f);
    p = p * r + splat(1.6666665459e-1f);
    p = p * r + splat(5.0000001201e-1f);
    p = p * r * r + r + splat(1.0f);
    vi scale = (n + 127) << 23;
    return p * (vf)scale;
}

#if VW == 16 && defined(__AVX512F__)
#include <immintrin.h>
/* exp_core's polynomial with the rounding to n = round(x / ln 2) as one instruction
 * (vrndscaleps); returns p with exp(x) = p · 2ⁿ, which the caller forms with vscalefps (exact,
 * and a single instruction where exp_core spends four on the integer scaling). */
static inline __m512 exp_reduce512(__m512 x, __m512 *n) {
    *n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(*n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(*n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    return _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
}
#endif

#endif
