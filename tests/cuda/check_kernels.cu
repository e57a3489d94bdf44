/* The element-wise, reduction, pooling and optimizer CUDA kernels against
 * the CPU kernels they mirror: bit-identical results (up to a stated number
 * of ulps for logf/powf), deterministic sums, pooling indices. Needs a GPU;
 * not part of `make test`. Build and run from the repository root:
 *   make build/core/backends/cuda/{elementwise,reduce,pool,optim}.o
 *   for f in elementwise reduce pool; do gcc -std=gnu11 -O2 -Wno-unknown-pragmas -Icore/include -Icore \
 *     -c core/backends/cpu/$f.c -o build/cpu_$f.o; done
 *   nvcc -O2 -std=c++17 -arch=sm_90 -Icore/include -Icore -o build/check_kernels tests/cuda/check_kernels.cu \
 *     tests/cuda/device_stub.cu build/core/backends/cuda/{elementwise,reduce,pool,optim}.o \
 *     build/cpu_{elementwise,reduce,pool}.o -lm
 *   build/check_kernels */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>
#include "backends/cuda/cuda_internal.h"
extern "C" {
#include "backends/cpu/elementwise.h"
#include "backends/cpu/reduce.h"
#include "backends/cpu/pool.h"
const char *md__cuda_stub_error(void);
}
static int fails = 0;
static unsigned long long rs = 88172645463325252ull;
static float frand() { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return (float)((rs >> 11) * (1.0 / 9007199254740992.0)) * 2 - 1; }
template <typename T> static T *dev(const std::vector<T> &h) { T *p; cudaMalloc(&p, h.size() * sizeof(T) + 16); cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice); return p; }
template <typename T> static std::vector<T> host(const T *p, size_t n) { cudaDeviceSynchronize(); std::vector<T> h(n); cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost); return h; }
static int64_t ulp(float a, float b) { if (a != a && b != b) return 0; if (a != a || b != b) return 1 << 30; int32_t x, y; memcpy(&x, &a, 4); memcpy(&y, &b, 4); if (x < 0) x = INT32_MIN - x; if (y < 0) y = INT32_MIN - y; return llabs((long long)x - y); }
static void cmpf(const char *what, const std::vector<float> &ref, const std::vector<float> &got, int64_t maxulp) {
    int64_t worst = 0; size_t at = 0;
    for (size_t i = 0; i < ref.size(); i++) { int64_t u = ulp(ref[i], got[i]); if (u > worst) { worst = u; at = i; } }
    bool ok = worst <= maxulp;
    if (!ok) fails++;
    printf("%-40s n=%-8zu worst %lld ulp%s", what, ref.size(), (long long)worst, ok ? "  ok\n" : "  FAIL");
    if (!ok) printf(" at %zu: cpu %.9g gpu %.9g\n", at, ref[at], got[at]);
}
static void cmprel(const char *what, const std::vector<float> &ref, const std::vector<float> &got, double tol) {
    double worst = 0; size_t at = 0;
    for (size_t i = 0; i < ref.size(); i++) { double e = fabs((double)ref[i] - got[i]) / (fabs(ref[i]) + 1e-30); if (!(e <= worst)) { worst = e; at = i; } }
    bool ok = worst <= tol; if (!ok) fails++;
    printf("%-40s n=%-8zu worst rel %.3g%s", what, ref.size(), worst, ok ? "  ok\n" : "  FAIL");
    if (!ok) printf(" at %zu: cpu %.9g gpu %.9g\n", at, ref[at], got[at]);
}
#define CK(x) do { if ((x) != 0) { printf("call failed: %s: %s\n", #x, md__cuda_stub_error()); fails++; } } while (0)

int main() {
    cudaFree(0);
    // fill
    { float *d; cudaMalloc(&d, 4 * 1000); float v = -3.25f; uint32_t b; memcpy(&b, &v, 4); CK(md__cuda_fill(d, 1000, 4, b)); auto h = host(d, 1000); cmpf("fill f32", std::vector<float>(1000, v), h, 0);
      int64_t *q; cudaMalloc(&q, 8 * 777); CK(md__cuda_fill(q, 777, 8, (uint64_t)-5)); auto hq = host(q, 777); int bad = 0; for (auto e : hq) bad += e != -5; printf("fill i64 %s\n", bad ? "FAIL" : "ok"); fails += bad != 0;
      uint8_t *u; cudaMalloc(&u, 333); CK(md__cuda_fill(u, 333, 1, 1)); auto hu = host(u, 333); bad = 0; for (auto e : hu) bad += e != 1; printf("fill u8 %s\n", bad ? "FAIL" : "ok"); fails += bad != 0; }
    // copy_strided: transpose [37, 53] -> [53, 37], and a broadcast, several element sizes
    { int64_t A = 37, B = 53; std::vector<float> x(A * B); for (auto &e : x) e = frand();
      int64_t shape[2] = { B, A }, sd[2] = { A, 1 }, ss[2] = { 1, B }; const int64_t *st[2] = { sd, ss }; md__loop L; md__loop_init(&L, 2, shape, 2, st);
      std::vector<float> ref(A * B); md__cpu_copy(&L, 4, x.data(), ref.data()); float *dx = dev(x), *dy; cudaMalloc(&dy, 4 * A * B);
      CK(md__cuda_copy_strided(&L, 4, dx, dy)); cmpf("copy_strided transpose f32", ref, host(dy, A * B), 0);
      std::vector<double> x8(A * B); for (auto &e : x8) e = frand(); std::vector<double> r8(A * B); md__cpu_copy(&L, 8, x8.data(), r8.data()); double *d8 = dev(x8), *o8; cudaMalloc(&o8, 8 * A * B);
      CK(md__cuda_copy_strided(&L, 8, d8, o8)); auto h8 = host(o8, A * B); printf("copy_strided transpose 8B %s\n", memcmp(h8.data(), r8.data(), 8 * A * B) ? (fails++, "FAIL") : "ok");
      std::vector<uint8_t> x1(A * B); for (auto &e : x1) e = rand(); std::vector<uint8_t> r1(A * B); md__cpu_copy(&L, 1, x1.data(), r1.data()); uint8_t *d1 = dev(x1), *o1; cudaMalloc(&o1, A * B);
      CK(md__cuda_copy_strided(&L, 1, d1, o1)); auto h1 = host(o1, A * B); printf("copy_strided transpose 1B %s\n", memcmp(h1.data(), r1.data(), A * B) ? (fails++, "FAIL") : "ok");
      int64_t sb[2] = { 0, 1 }, sd2[2] = { A, 1 }; int64_t shape2[2] = { B, A }; const int64_t *st2[2] = { sd2, sb }; md__loop L2; md__loop_init(&L2, 2, shape2, 2, st2);
      std::vector<float> r2(A * B); md__cpu_copy(&L2, 4, x.data(), r2.data()); CK(md__cuda_copy_strided(&L2, 4, dx, dy)); cmpf("copy_strided broadcast row", r2, host(dy, A * B), 0);
      int64_t s1[1] = { 1 }, n1[1] = { A * B }; const int64_t *st3[2] = { s1, s1 }; md__loop L3; md__loop_init(&L3, 1, n1, 2, st3); CK(md__cuda_copy_strided(&L3, 4, dx, dy)); cmpf("copy_strided contiguous", x, host(dy, A * B), 0); }
    // binary with broadcasting: a [7, 300] (contig), b [1, 300] broadcast / [7,1] / scalar
    { int64_t R = 7, C = 300, n = R * C; std::vector<float> a(n), b(n); for (int64_t i = 0; i < n; i++) { a[i] = frand(); b[i] = (i % 5 == 0) ? a[i] : frand(); if (i % 17 == 0) a[i] = 0; if (i % 23 == 0) b[i] = 0; if (i == 40) a[i] = NAN; }
      float *da = dev(a), *db = dev(b); void *dout; cudaMalloc(&dout, 4 * n);
      int64_t shape[2] = { R, C }; int64_t so[2] = { C, 1 }, sa[2] = { C, 1 };
      int64_t sbs[3][2] = { { C, 1 }, { 0, 1 }, { 1, 0 } }; const char *bn[3] = { "full", "row bcast", "col bcast" };
      for (int k = 0; k < 3; k++) { const int64_t *st[3] = { so, sa, sbs[k] }; md__loop L; md__loop_init(&L, 2, shape, 3, st);
        for (int op = MD_BIN_ADD; op <= MD_BIN_OR; op++) {
          char nm[64]; snprintf(nm, sizeof nm, "binary op %d %s", op, bn[k]);
          if (op <= MD_BIN_DIV) { std::vector<float> ref(n); md__cpu_binary((md__binop)op, MD_F32, &L, a.data(), b.data(), ref.data()); CK(md__cuda_binary_f32((md__binop)op, &L, da, db, dout)); cmpf(nm, ref, host((float *)dout, n), 0); }
          else { std::vector<uint8_t> ref(n);
            if (op >= MD_BIN_AND) { // CPU has u8 logic only: reference by hand
              for (int64_t i = 0; i < n; i++) { int64_t r = i / C, c = i % C; float x = a[r * C + c], y = b[r * sbs[k][0] + c * sbs[k][1]]; ref[i] = op == MD_BIN_AND ? (x != 0 && y != 0) : (x != 0 || y != 0); }
            } else md__cpu_binary((md__binop)op, MD_F32, &L, a.data(), b.data(), ref.data());
            CK(md__cuda_binary_f32((md__binop)op, &L, da, db, dout)); auto h = host((uint8_t *)dout, n); int bad = memcmp(h.data(), ref.data(), n) != 0; fails += bad; printf("%-40s %s\n", nm, bad ? "FAIL" : "ok"); } } } }
    // unary forward and backward
    { int64_t n = 100003; std::vector<float> x(n), g(n); for (int64_t i = 0; i < n; i++) { x[i] = frand() * 30; g[i] = frand(); }
      x[0] = 0; x[1] = -0.0f; x[2] = NAN; x[3] = INFINITY; x[4] = -INFINITY; x[5] = 0.5f; x[6] = -0.5f; x[7] = 95; x[8] = -110; x[9] = 1e-30f;
      float *dx = dev(x), *dg = dev(g), *dy, *dgx; cudaMalloc(&dy, 4 * n); cudaMalloc(&dgx, 4 * n);
      struct { int op; float p0, p1; int64_t fu, bu; } cs[] = { { MD_UN_NEG, 0, 0, 0, 0 }, { MD_UN_RELU, 0, 0, 0, 0 }, { MD_UN_SIGMOID, 0, 0, 0, 0 }, { MD_UN_EXP, 0, 0, 0, 0 },
        { MD_UN_LOG, 0, 0, 1, 0 }, { MD_UN_SQRT, 0, 0, 0, 0 }, { MD_UN_ABS, 0, 0, 0, 0 }, { MD_UN_CLAMP, -0.5f, 0.5f, 0, 0 }, { MD_UN_POW, 2, 0, 0, 0 },
        { MD_UN_POW, 0.5f, 0, 0, 0 }, { MD_UN_POW, 3, 0, 2, 2 }, { MD_UN_POW, 0, 0, 2, 0 }, { MD_UN_POW, 1.7f, 0, 2, 2 }, { MD_UN_ADD_SCALAR, 1.5f, 0, 0, 0 }, { MD_UN_MUL_SCALAR, -2.5f, 0, 0, 0 } };
      for (auto &c : cs) { char nm[64];
        std::vector<float> ref(n); md__cpu_unary_f32((md__unop)c.op, n, x.data(), c.p0, c.p1, ref.data()); CK(md__cuda_unary_f32((md__unop)c.op, n, dx, c.p0, c.p1, dy));
        snprintf(nm, sizeof nm, "unary op %d p0 %g", c.op, c.p0); cmpf(nm, ref, host(dy, n), c.fu);
        cudaMemcpy(dy, ref.data(), 4 * n, cudaMemcpyHostToDevice); std::vector<float> rg(n); md__cpu_unary_f32_backward((md__unop)c.op, n, x.data(), ref.data(), g.data(), c.p0, c.p1, rg.data());
        CK(md__cuda_unary_f32_backward((md__unop)c.op, n, dx, dy, dg, c.p0, c.p1, dgx)); snprintf(nm, sizeof nm, "unary backward op %d p0 %g", c.op, c.p0); cmpf(nm, rg, host(dgx, n), c.bu); }
      std::vector<float> ref(n); for (int64_t i = 0; i < n; i++) ref[i] = x[i] + g[i]; CK(md__cuda_add_inplace_f32(dx, dg, n)); cmpf("add_inplace aligned", ref, host(dx, n), 0);
      cudaMemcpy(dx, x.data(), 4 * n, cudaMemcpyHostToDevice); for (int64_t i = 1; i < n; i++) ref[i] = x[i] + g[i - 1]; ref[0] = x[0]; CK(md__cuda_add_inplace_f32(dx + 1, dg, n - 1)); cmpf("add_inplace misaligned", ref, host(dx, n), 0); }
    // sum and spread
    { int64_t shapes[][3] = { { 1, 1 << 20, 1 }, { 1, 2048 * 256 * 2, 1 }, { 4, 300000, 1 }, { 2000, 1000, 1 }, { 100000, 5, 1 }, { 3, 7, 1 }, { 1, 0, 1 },
                              { 2, 64, 10000 }, { 1, 200000, 3 }, { 16, 1000, 16 }, { 1, 5, 40000 }, { 5, 1, 7 }, { 1, 100, 1000 } };
      for (auto &s : shapes) { int64_t o = s[0], n = s[1], in = s[2], tot = o * n * in; std::vector<float> x(tot ? tot : 1); for (auto &e : x) e = frand() + 0.3f;
        float *dx = dev(x), *dout; cudaMalloc(&dout, 4 * o * in); std::vector<float> ref(o * in); md__cpu_sum_f32(x.data(), o, n, in, 0.37f, ref.data());
        CK(md__cuda_sum_f32(dx, o, n, in, 0.37f, dout)); char nm[80]; snprintf(nm, sizeof nm, "sum [%lld,%lld,%lld]", (long long)o, (long long)n, (long long)in); cmprel(nm, ref, host(dout, o * in), 1e-6);
        CK(md__cuda_sum_f32(dx, o, n, in, 0.37f, dout)); auto h2 = host(dout, o * in); CK(md__cuda_sum_f32(dx, o, n, in, 0.37f, dout)); auto h3 = host(dout, o * in); if (memcmp(h2.data(), h3.data(), 4 * o * in)) { printf("  sum not deterministic FAIL\n"); fails++; }
        if (tot) { std::vector<float> sp(tot); md__cpu_spread_f32(ref.data(), o, n, in, -1.5f, sp.data()); float *dsp; cudaMalloc(&dsp, 4 * tot); cudaMemcpy(dout, ref.data(), 4 * o * in, cudaMemcpyHostToDevice);
          CK(md__cuda_spread_f32(dout, o, n, in, -1.5f, dsp)); snprintf(nm, sizeof nm, "spread [%lld,%lld,%lld]", (long long)o, (long long)n, (long long)in); cmpf(nm, sp, host(dsp, tot), 0); cudaFree(dsp); }
        cudaFree(dx); cudaFree(dout); } }
    // max pooling
    { struct { int64_t P, H, W, OH, OW; int k, s, p; bool ties; } cs[] = { { 6, 33, 41, 17, 21, 3, 2, 1, false }, { 6, 33, 41, 17, 21, 3, 2, 1, true }, { 4, 20, 20, 10, 10, 1, 2, 0, false },
        { 3, 9, 9, 5, 5, 2, 2, 0, true }, { 3, 8, 8, 6, 6, 3, 1, 1, true }, { 2, 7, 9, 3, 4, 3, 2, 0, true }, { 128, 200, 336, 100, 168, 3, 2, 1, false } };
      for (auto &c : cs) { int64_t nx = c.P * c.H * c.W, ny = c.P * c.OH * c.OW; std::vector<float> x(nx), gy(ny); for (auto &e : x) e = c.ties ? (float)(rand() % 3) : frand(); for (auto &e : gy) e = frand();
        if (!c.ties) { x[5] = NAN; x[nx / 2] = NAN; x[nx / 2 + 1] = NAN; }
        std::vector<float> y(ny), gx(nx); std::vector<int32_t> idx(ny); md__maxpool2d_forward(x.data(), c.P, c.H, c.W, c.OH, c.OW, c.k, c.s, c.p, y.data(), idx.data(), 1);
        md__maxpool2d_backward(gy.data(), idx.data(), c.P, c.H, c.W, c.OH, c.OW, gx.data(), 1);
        float *dx = dev(x), *dgy = dev(gy), *dy, *dgx; int32_t *di; cudaMalloc(&dy, 4 * ny); cudaMalloc(&dgx, 4 * nx); cudaMalloc(&di, 4 * ny);
        CK(md__cuda_maxpool2d_forward(dx, c.P, c.H, c.W, c.OH, c.OW, c.k, c.s, c.p, dy, di)); char nm[80]; snprintf(nm, sizeof nm, "maxpool fwd %lldx%lld k%d s%d p%d%s", (long long)c.H, (long long)c.W, c.k, c.s, c.p, c.ties ? " ties" : "");
        cmpf(nm, y, host(dy, ny), 0); auto hi = host(di, ny); int bad = memcmp(hi.data(), idx.data(), 4 * ny) != 0; fails += bad; printf("  idx %s\n", bad ? "FAIL" : "ok");
        cudaMemcpy(dgx, x.data(), 4 * nx, cudaMemcpyHostToDevice); // garbage: must be overwritten
        CK(md__cuda_maxpool2d_backward(dgy, di, c.P, c.H, c.W, c.OH, c.OW, dgx)); snprintf(nm, sizeof nm, "maxpool bwd %lldx%lld k%d s%d", (long long)c.H, (long long)c.W, c.k, c.s); cmpf(nm, gx, host(dgx, nx), 0);
        cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1); cudaEventRecord(e0, md__cuda_stream()); CK(md__cuda_maxpool2d_backward(dgy, di, c.P, c.H, c.W, c.OH, c.OW, dgx)); cudaEventRecord(e1, md__cuda_stream()); cudaEventSynchronize(e1); float ms; cudaEventElapsedTime(&ms, e0, e1); printf("  bwd %.3f ms\n", ms);
        cudaFree(dx); cudaFree(dgy); cudaFree(dy); cudaFree(dgx); cudaFree(di); } }
    // optimizers: core/optim.c's loops
    { int64_t n = 50001; std::vector<float> w(n), g(n), b(n), m(n), v(n); for (int64_t i = 0; i < n; i++) { w[i] = frand(); g[i] = frand(); b[i] = frand(); m[i] = frand() * 0.1f; v[i] = fabsf(frand()) * 0.01f; }
      for (int cfg = 0; cfg < 4; cfg++) { bool first = cfg == 1, nest = cfg == 2; float lr = 0.02f, wd = 1e-4f, mom = cfg == 3 ? 0 : 0.9f, damp = cfg == 0 ? 0.1f : 0;
        std::vector<float> rw = w, rb = b; for (int64_t k = 0; k < n; k++) { float d = g[k] + wd * rw[k]; if (mom != 0) { rb[k] = first ? d : mom * rb[k] + (1 - damp) * d; d = nest ? d + mom * rb[k] : rb[k]; } rw[k] -= lr * d; }
        float *dw = dev(w), *dg = dev(g), *db = dev(b); CK(md__cuda_sgd_step(n, dw, dg, mom != 0 ? db : NULL, lr, wd, mom, damp, nest, first)); char nm[64]; snprintf(nm, sizeof nm, "sgd cfg %d w", cfg); cmpf(nm, rw, host(dw, n), 0);
        if (mom != 0) { snprintf(nm, sizeof nm, "sgd cfg %d buf", cfg); cmpf(nm, rb, host(db, n), 0); } }
      for (int dec = 0; dec < 2; dec++) { float lr = 1e-3f, wd = 0.05f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f; int64_t t = 3; float step_size = (float)(lr / (1 - pow(0.9, t))), sbc2 = (float)sqrt(1 - pow(0.999, t));
        std::vector<float> rw = w, rm = m, rv = v; for (int64_t k = 0; k < n; k++) { float d = g[k]; if (dec) rw[k] *= 1 - lr * wd; else d += wd * rw[k]; rm[k] = b1 * rm[k] + (1 - b1) * d; rv[k] = b2 * rv[k] + (1 - b2) * d * d; rw[k] -= step_size * rm[k] / (sqrtf(rv[k]) / sbc2 + eps); }
        float *dw = dev(w), *dg = dev(g), *dm = dev(m), *dv = dev(v); CK(md__cuda_adam_step(n, dw, dg, dm, dv, lr, wd, b1, b2, eps, step_size, sbc2, dec)); char nm[64];
        snprintf(nm, sizeof nm, "adam decoupled %d w", dec); cmpf(nm, rw, host(dw, n), 0); snprintf(nm, sizeof nm, "adam decoupled %d m", dec); cmpf(nm, rm, host(dm, n), 0); snprintf(nm, sizeof nm, "adam decoupled %d v", dec); cmpf(nm, rv, host(dv, n), 0); } }
    printf("%s: %d failure(s)\n", fails ? "FAIL" : "PASS", fails);
    return fails != 0;
}
