/* Helpers shared by the unit tests. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testlib.h"

char *test_tmpdir(char *buf, size_t n, const char *tag) {
    const char *base = getenv("TMPDIR");
    snprintf(buf, n, "%s/%s_XXXXXX", base && *base ? base : P_tmpdir, tag);
    cr_assert_not_null(mkdtemp(buf), "cannot make a temporary directory %s", buf);
    return buf;
}

void test_write_file(const char *dir, const char *name, const char *text) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

int test_read_train_log(const char *work_dir, int iters_per_epoch, double *loss, double *scale, int max) {
    char cmd[4200], line[4096];
    snprintf(cmd, sizeof cmd, "cat %s/*.log.json", work_dir);
    FILE *p = popen(cmd, "r");
    int n = 0;
    while (p && fgets(line, sizeof line, p)) {
        char *e = strstr(line, "\"epoch\": "), *i = strstr(line, "\"iter\": "), *l = strstr(line, "\"loss\": ");
        char *s = strstr(line, "\"loss_scale\": ");
        if (!strstr(line, "\"mode\": \"train\"") || !e || !i || !l) continue;
        int k = (atoi(e + 9) - 1) * iters_per_epoch + atoi(i + 8) - 1;
        if (k < 0 || k >= max) continue;
        loss[k] = !strncmp(l + 8, "NaN", 3) || !strncmp(l + 8, "nan", 3) ? NAN : atof(l + 8);
        if (scale) scale[k] = s ? atof(s + 14) : 0;
        n++;
    }
    if (p) pclose(p);
    return n;
}

md_ctx *test_ctx(uint64_t seed, const char *const *plugins) {
    md_error err = { 0 };
    md_ctx *ctx = md_ctx_new(&err);
    cr_assert(ctx, "%s", err.msg);
    md_log_set_quiet(ctx, true);
    md_ctx_seed(ctx, seed);
    for (int i = 0; plugins && plugins[i]; i++) {
        size_t n = strlen(plugins[i]);
        int rc = n > 3 && !strcmp(plugins[i] + n - 3, ".so") ? md_plugin_load_file(ctx, plugins[i], &err)
                                                            : md_plugin_load_dir(ctx, plugins[i], &err);
        cr_assert_eq(rc, 0, "%s", err.msg);
    }
    return ctx;
}

md_st *golden_open(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "tests/fixtures/%s.safetensors", name);
    md_error err = { 0 };
    md_st *st = md_st_open(path, &err);
    cr_assert(st, "golden fixture: %s", err.msg);
    return st;
}

md_tensor *golden_get(md_ctx *ctx, md_st *st, const char *key) {
    md_tensor *t = md_st_tensor(ctx, st, key);
    cr_assert(t, "golden fixture entry %s: %s", key, md_ctx_error(ctx)->msg);
    return t;
}

const void *golden_data(const md_st *st, int i) {
    int64_t sh[8];
    int nd = md_st_shape(st, i, sh);
    size_t n = md_dtype_size(md_st_dtype(st, i));
    for (int k = 0; k < nd; k++) n *= (size_t)sh[k];
    /* malloc's alignment suits every dtype; the copies stay reachable from
     * `kept` for the process's life (not leaks) */
    static void **kept;
    static size_t n_kept, cap_kept;
    if (n_kept == cap_kept) {
        void **k = realloc(kept, sizeof *k * (cap_kept = cap_kept ? 2 * cap_kept : 64));
        cr_assert(k, "out of memory");
        kept = k;
    }
    void *copy = malloc(n ? n : 1);
    cr_assert(copy, "out of memory");
    memcpy(copy, md_st_data(st, i), n);
    kept[n_kept++] = copy;
    return copy;
}

double rel_err(const md_tensor *a, const md_tensor *ref) {
    if (!a || !ref || md_tensor_numel(a) != md_tensor_numel(ref)) return INFINITY;
    double num = 0, den = 0;
    for (int64_t i = 0; i < md_tensor_numel(a); i++) {
        double x = md_tensor_get(a, i), y = md_tensor_get(ref, i);
        num += (x - y) * (x - y);
        den += y * y;
    }
    if (isnan(num)) return INFINITY;
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

void assert_close(const md_tensor *a, const md_tensor *ref, double tol, const char *what) {
    char sa[96], sr[96];
    cr_assert(a, "%s: no output", what);
    cr_assert(md_tensor_same_shape(a, ref), "%s: shape %s, expected %s", what,
              md_tensor_describe(a, sa, sizeof sa), md_tensor_describe(ref, sr, sizeof sr));
    double e = rel_err(a, ref);
    cr_assert(e <= tol, "%s: relative error %.3g > %.3g", what, e, tol);
}

void assert_equal(const md_tensor *a, const md_tensor *ref, const char *what) {
    char sa[96], sr[96];
    cr_assert(a, "%s: no output", what);
    cr_assert(md_tensor_same_shape(a, ref), "%s: shape %s, expected %s", what,
              md_tensor_describe(a, sa, sizeof sa), md_tensor_describe(ref, sr, sizeof sr));
    for (int64_t i = 0; i < md_tensor_numel(a); i++)
        cr_assert_eq(md_tensor_get(a, i), md_tensor_get(ref, i), "%s: element %lld is %g, expected %g",
                     what, (long long)i, md_tensor_get(a, i), md_tensor_get(ref, i));
}

md_tensor *randn_param(md_ctx *ctx, int ndim, const int64_t *shape, uint64_t seed) {
    md_tensor *t = md_tensor_new_persistent(ctx, MD_F32, ndim, shape, NULL);
    cr_assert(t);
    md_rng r;
    md_rng_seed(&r, seed);
    md_tensor_normal_(t, &r, 0.0, 1.0);
    t->requires_grad = true;
    return t;
}

static double weighted_sum(const md_tensor *out, const float *w) {
    double s = 0;
    for (int64_t i = 0; i < md_tensor_numel(out); i++) s += (double)w[i] * md_tensor_get(out, i);
    return s;
}

double gradcheck(md_ctx *ctx, gradcheck_fn fn, md_tensor **inputs, int n, void *user, double eps) {
    md_ctx_step_reset(ctx);
    for (int k = 0; k < n; k++)
        if (inputs[k]->grad) md_tensor_zero_grad(inputs[k]);
    md_tensor *out = fn(ctx, inputs, user);
    cr_assert(out, "gradcheck: forward failed: %s", md_ctx_error(ctx)->msg);
    int64_t m = md_tensor_numel(out);
    float *w = malloc(sizeof(float) * (size_t)(m ? m : 1));
    md_rng r;
    md_rng_seed(&r, 1234);
    for (int64_t i = 0; i < m; i++) w[i] = (float)md_rng_normal(&r);
    md_tensor *g = md_tensor_from(ctx, MD_F32, out->ndim, out->shape, w);
    md_error err = { 0 };
    cr_assert_eq(md_backward_with(ctx, out, g, &err), 0, "gradcheck: %s", err.msg);
    double worst = 0;
    for (int k = 0; k < n; k++) {
        md_tensor *x = inputs[k];
        if (!x->requires_grad) continue;
        cr_assert(x->grad, "gradcheck: input %d got no gradient", k);
        double num2 = 0, den2 = 0;
        bool prev = md_grad_set_enabled(ctx, false);
        for (int64_t i = 0; i < md_tensor_numel(x); i++) {
            float *p = &md_f32(x)[i], orig = *p;
            size_t mark = md_ctx_arena_mark(ctx);
            *p = orig + (float)eps;
            double fp = weighted_sum(fn(ctx, inputs, user), w);
            md_ctx_arena_release(ctx, mark);
            *p = orig - (float)eps;
            double fm = weighted_sum(fn(ctx, inputs, user), w);
            md_ctx_arena_release(ctx, mark);
            *p = orig;
            double numeric = (fp - fm) / (2 * eps), analytic = md_f32(x->grad)[i];
            num2 += (numeric - analytic) * (numeric - analytic);
            den2 += numeric * numeric;
        }
        md_grad_set_enabled(ctx, prev);
        double e = den2 > 0 ? sqrt(num2 / den2) : sqrt(num2);
        if (e > worst) worst = e;
    }
    free(w);
    return worst;
}
