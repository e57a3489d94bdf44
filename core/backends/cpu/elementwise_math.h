/* Vectorisable float math for the CPU kernels (libm's expf is a call the
 * compiler cannot vectorise), and the per-element math of the integer
 * unary ops, which the CUDA kernels share (MD_HD, backends/hostdev.h). */
#ifndef MMDET_CPU_ELEMENTWISE_MATH_H
#define MMDET_CPU_ELEMENTWISE_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>
#include "backends/backend.h"   /* md__unop */
#include "backends/hostdev.h"

/* exp(x) to ~2 ulp: x = n ln2 + r, |r| <= ln2/2, a degree-6 polynomial for
 * e^r (Cephes' coefficients), 2^n applied in two halves so that results
 * overflow to inf and underflow through the subnormals like expf. */
static inline float md__expf(float x) {
    float xs = x != x ? 0.0f : x;
    xs = xs > 89.0f ? 89.0f : (xs < -104.0f ? -104.0f : xs);
    float fn = (xs * 1.44269504088896341f + 12582912.0f) - 12582912.0f;   /* round to nearest */
    float r = xs - fn * 0.693359375f - fn * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t n = (int32_t)fn, h = n >> 1;
    uint32_t b1 = (uint32_t)(h + 127) << 23, b2 = (uint32_t)(n - h + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, 4);
    memcpy(&s2, &b2, 4);
    float y = p * s1 * s2;
    return x != x ? x : y;
}

/* Whether an integer unary op exists (md__cpu_unary_int): NEG, RELU, ABS,
 * CLAMP (p0, p1), ADD_SCALAR and MUL_SCALAR (p0), NOT. */
MD_HD static inline int md__unary_int_ok(md__unop op) {
    return op == MD_UN_NEG || op == MD_UN_RELU || op == MD_UN_ABS || op == MD_UN_CLAMP || op == MD_UN_ADD_SCALAR ||
           op == MD_UN_MUL_SCALAR || op == MD_UN_NOT;
}
/* Its value at v, in double; the caller converts to the element type. */
MD_HD static inline double md__unary_int_value(md__unop op, double v, double p0, double p1) {
    switch (op) {
    case MD_UN_NEG: return -v;
    case MD_UN_RELU: return v > 0 ? v : 0;
    case MD_UN_ABS: return fabs(v);
    case MD_UN_CLAMP: return v < p0 ? p0 : (v > p1 ? p1 : v);
    case MD_UN_ADD_SCALAR: return v + p0;
    case MD_UN_MUL_SCALAR: return v * p0;
    case MD_UN_NOT: return v == 0;
    default: return v;
    }
}

#endif
