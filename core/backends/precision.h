/* Mixed precision, per element: rounding f32 to the two 16-bit float
 * formats and back, and the loss scaler's unscale with its overflow check.
 * Inline functions for the host and the device alike: the CPU backend
 * (backends/cpu/gemm_bf16.h, table.c), core/runner/amp.c and the CUDA
 * kernels (backends/cuda/amp.cu, conv.cu, gemm.cu) include this one file, so
 * the GPU's casts round exactly as the CPU functions that the CPU tests
 * check against PyTorch (tests/unit/test_amp.c).
 *
 * Integer arithmetic on the bits only: no float operation whose rounding
 * mode, flush-to-zero setting or contraction could differ between the host
 * compiler and nvcc. */
#ifndef MMDET_BACKENDS_PRECISION_H
#define MMDET_BACKENDS_PRECISION_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "hostdev.h"

MD_HD static inline uint32_t md__f32_bits(float f) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(f);
#else
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
#endif
}

MD_HD static inline float md__bits_f32(uint32_t u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, 4);
    return f;
#endif
}

/* ---- bfloat16: f32's upper 16 bits ---- */

/* float -> bf16 bits, round to nearest even; NaN -> 0x7FC0 (PyTorch's). */
MD_HD static inline uint16_t md__f32_to_bf16(float f) {
    uint32_t u = md__f32_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FC0;
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}
MD_HD static inline float md__bf16_to_f32(uint16_t h) { return md__bits_f32((uint32_t)h << 16); }
MD_HD static inline float md__bf16_round(float f) { return md__bf16_to_f32(md__f32_to_bf16(f)); }

/* ---- IEEE binary16 (fp16): 5 exponent bits (bias 15), 10 fraction bits ---- */

/* float -> fp16 bits, round to nearest even, as PyTorch's `.half()`:
 * magnitudes from 65520 (the tie above 65504, which rounds to even) up are
 * infinities, subnormals (below 2^-14) round to multiples of 2^-24, and a
 * NaN becomes the quiet NaN 0x7E00 with the sign kept. */
MD_HD static inline uint16_t md__f32_to_f16(float f) {
    uint32_t u = md__f32_bits(f);
    uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return (uint16_t)(sign | 0x7E00u);    /* NaN */
    if (a >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u);   /* >= 65520: inf */
    if (a >= 0x38800000u) {                                     /* >= 2^-14: a normal */
        /* round at bit 13 (a carry moves into the exponent), then rebias
         * the exponent from 127 to 15 */
        uint32_t r = a + 0x0FFFu + ((a >> 13) & 1u) - 0x38000000u;
        return (uint16_t)(sign | (r >> 13));
    }
    if (a <= 0x33000000u) return (uint16_t)sign;               /* <= 2^-25: the tie at 2^-25 goes to even 0 */
    /* a subnormal: the value in units of 2^-24 is m 2^(e - 126) with the
     * implicit bit in m; shift right by 126 - e (14 .. 24) and round */
    uint32_t e = a >> 23, m = (a & 0x7FFFFFu) | 0x800000u, sh = 126u - e;
    uint32_t q = m >> sh, rem = m & ((1u << sh) - 1u), half = 1u << (sh - 1u);
    if (rem > half || (rem == half && (q & 1u))) q++;   /* q = 1024 is the smallest normal's encoding */
    return (uint16_t)(sign | q);
}

MD_HD static inline float md__f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, ex = (h >> 10) & 0x1Fu, fr = h & 0x3FFu;
    if (ex == 0x1Fu) return md__bits_f32(sign | 0x7F800000u | (fr << 13));   /* inf, NaN (payload kept) */
    if (ex != 0) return md__bits_f32(sign | ((ex + 112u) << 23) | (fr << 13));
    if (fr == 0) return md__bits_f32(sign);
    /* subnormal fr 2^-24: normalise (the leading bit to position 10) */
    uint32_t e = 113u;   /* exponent of 2^-14 */
    while (!(fr & 0x400u)) {
        fr <<= 1;
        e--;
    }
    return md__bits_f32(sign | (e << 23) | ((fr & 0x3FFu) << 13));
}
MD_HD static inline float md__f16_round(float f) { return md__f16_to_f32(md__f32_to_f16(f)); }

/* ---- loss scaling (GradScaler.unscale_) ---- */

/* g = g * inv in f32, after checking g: true when g was not finite (inf or
 * NaN), as PyTorch's _amp_foreach_non_finite_check_and_unscale_ checks
 * each value before multiplying it. */
MD_HD static inline bool md__unscale_elem(float *g, float inv) {
    float v = *g;
    bool bad = (md__f32_bits(v) & 0x7F800000u) == 0x7F800000u;
#if defined(__CUDA_ARCH__)
    *g = __fmul_rn(v, inv);
#else
    *g = v * inv;
#endif
    return bad;
}

#undef MD_HD
#endif
