/* Vectorisable float math for the CPU kernels (libm's expf is a call the
 * compiler cannot vectorise). */
#ifndef MMDET_CPU_ELEMENTWISE_MATH_H
#define MMDET_CPU_ELEMENTWISE_MATH_H

#include <stdint.h>
#include <string.h>

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

#endif
