/* safetensors: Python-written file read back, round trip, corrupt input. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "testlib.h"

static md_ctx *ctx;
static void setup(void) { ctx = md_ctx_new(NULL); }
static void teardown(void) { md_ctx_free(ctx); }
TestSuite(safetensors, .init = setup, .fini = teardown);

Test(safetensors, reads_python_written_file) {
    md_st *st = golden_open("safetensors_py");
    cr_assert_eq(md_st_count(st), 4);
    md_tensor *a = golden_get(ctx, st, "a.weight");
    cr_assert_eq(a->ndim, 2);
    cr_assert_eq(a->shape[1], 4);
    cr_assert_float_eq(md_f32(a)[11], 11.0f / 7.0f, 1e-7);
    md_tensor *b = golden_get(ctx, st, "b.index");
    cr_assert_eq(md_i64(b)[2], (int64_t)1 << 40);
    cr_assert_eq(md_i64(b)[1], -3);
    md_tensor *e = golden_get(ctx, st, "d.empty");
    cr_assert_eq(md_tensor_numel(e), 0);
    cr_assert_str_eq(md_st_metadata(st, "epoch"), "3");
    cr_assert_str_eq(md_st_metadata(st, "CLASSES"), "circle,square");
    cr_assert_null(md_st_metadata(st, "nope"));
    md_st_close(st);
}

Test(safetensors, round_trip_with_strided_tensor) {
    char path[] = "/tmp/mmdet_st_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    md_tensor *t = md_tensor_empty(ctx, MD_F32, MD_DIMS(2, 3));
    for (int i = 0; i < 6; i++) md_f32(t)[i] = (float)i;
    md_tensor tt = *t;   /* transpose view by hand: [3, 2] */
    tt.shape[0] = 3; tt.shape[1] = 2; tt.stride[0] = 1; tt.stride[1] = 3;
    md_st_writer *w = md_st_writer_new();
    md_error err = { 0 };
    cr_assert_eq(md_st_writer_add(w, "t", &tt, &err), 0);
    cr_assert_eq(md_st_writer_meta(w, "note", "quote \" and \\ ok", &err), 0);
    cr_assert_eq(md_st_writer_save(w, path, &err), 0, "%s", err.msg);
    md_st_writer_free(w);
    md_st *st = md_st_open(path, &err);
    cr_assert(st, "%s", err.msg);
    md_tensor *r = md_st_tensor(ctx, st, "t");
    float want[6] = { 0, 3, 1, 4, 2, 5 };
    for (int i = 0; i < 6; i++) cr_assert_eq(md_f32(r)[i], want[i]);
    cr_assert_str_eq(md_st_metadata(st, "note"), "quote \" and \\ ok");
    md_st_close(st);
    unlink(path);
}

Test(safetensors, corrupt_files_are_errors_naming_the_file) {
    char path[] = "/tmp/mmdet_st_XXXXXX";
    int fd = mkstemp(path);
    /* header length far past the end */
    unsigned char bad[16] = { 0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}' };
    cr_assert_eq(write(fd, bad, sizeof bad), (ssize_t)sizeof bad);
    close(fd);
    md_error err = { 0 };
    cr_assert_null(md_st_open(path, &err));
    cr_assert(strstr(err.msg, path), "%s", err.msg);
    /* offsets past the data */
    FILE *f = fopen(path, "wb");
    const char *hdr = "{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
    unsigned long long n = strlen(hdr);
    fwrite(&n, 8, 1, f);
    fwrite(hdr, 1, n, f);
    fwrite("abcd", 1, 4, f);
    fclose(f);
    cr_assert_null(md_st_open(path, &err));
    cr_assert(strstr(err.msg, "past the end"), "%s", err.msg);
    /* size inconsistent with the shape */
    f = fopen(path, "wb");
    hdr = "{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}";
    n = strlen(hdr);
    fwrite(&n, 8, 1, f);
    fwrite(hdr, 1, n, f);
    fwrite("abcdabcdabcdabcd", 1, 16, f);
    fclose(f);
    cr_assert_null(md_st_open(path, &err));
    cr_assert(strstr(err.msg, "shape needs"), "%s", err.msg);
    unlink(path);
    cr_assert_null(md_st_open("/nonexistent/file.safetensors", &err));
    cr_assert(strstr(err.msg, "/nonexistent/file.safetensors"));
}
