/* Helpers shared by the unit tests: golden fixtures and gradient checks. */
#ifndef MMDET_TESTLIB_H
#define MMDET_TESTLIB_H

#include <mmdet/mmdet.h>

/* A quiet context with its init RNG seeded, and the plugins of `plugins`
 * (NULL-terminated; a path ending in .so is one file, else a folder)
 * loaded; fails the test with the loader's message otherwise. */
md_ctx *test_ctx(uint64_t seed, const char *const *plugins);

/* Makes a fresh directory "<$TMPDIR or the system's>/<tag>_XXXXXX" into buf
 * (fails the test when it cannot) and returns buf. */
char *test_tmpdir(char *buf, size_t n, const char *tag);
/* Writes `text` to <dir>/<name> (fails the test when it cannot). */
void test_write_file(const char *dir, const char *name, const char *text);
/* The training lines of the JSON logs in work_dir (*.log.json): loss and
 * loss_scale (0 when absent) of iteration k = (epoch - 1) * iters_per_epoch
 * + iter - 1, for k < max; a NaN loss reads as NAN. Returns the lines read. */
int test_read_train_log(const char *work_dir, int iters_per_epoch, double *loss, double *scale, int max);

/* Opens tests/fixtures/<name>.safetensors (written by a tests/golden script);
 * fails the test with the reason when it cannot. */
md_st *golden_open(const char *name);
/* A step tensor copy of fixture entry `key` (fails the test if absent). */
md_tensor *golden_get(md_ctx *ctx, md_st *st, const char *key);
/* Entry i's bytes copied to memory aligned for its dtype (safetensors
 * entries are packed, so md_st_data may be misaligned for 4- and 8-byte
 * types); the copy lives until the process ends. */
const void *golden_data(const md_st *st, int i);
/* ||a - ref|| / ||ref|| (plain ||a - ref|| when ref is all zeros); both are
 * read as double whatever their dtype and strides. Shapes must match in
 * element count; returns INFINITY otherwise. */
double rel_err(const md_tensor *a, const md_tensor *ref);
/* Fails the test, naming `what`, when shapes differ or rel_err > tol. */
void assert_close(const md_tensor *a, const md_tensor *ref, double tol, const char *what);
/* Element-wise exact equality (indices, masks). */
void assert_equal(const md_tensor *a, const md_tensor *ref, const char *what);

/* Finite-difference check of d(sum(w * f(inputs)))/d(inputs[k]) for every
 * input that requires grad, with random weights w; central differences of
 * step `eps` in f32 arithmetic. fn builds the output from inputs (it is
 * called with grad on once, then with grad off for the differences).
 * Returns the worst relative error (over each input's gradient vector). */
typedef md_tensor *(*gradcheck_fn)(md_ctx *ctx, md_tensor **inputs, void *user);
double gradcheck(md_ctx *ctx, gradcheck_fn fn, md_tensor **inputs, int n, void *user, double eps);
/* Persistent f32 tensor with N(0, 1) values (seeded), requires_grad set;
 * freed by the caller with md_tensor_free. */
md_tensor *randn_param(md_ctx *ctx, int ndim, const int64_t *shape, uint64_t seed);

#endif
