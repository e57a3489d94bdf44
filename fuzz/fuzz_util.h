/* Shared by the fuzz targets: inputs as files (for parsers that only take
 * paths) in a per-process scratch folder on tmpfs, and one quiet context. */
#ifndef MMDET_FUZZ_UTIL_H
#define MMDET_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <ftw.h>
#include <unistd.h>
#include <mmdet/mmdet.h>
#include <mmdet/image.h>

static char fuzz_dir_[256];
static volatile uint8_t fuzz_sink;   /* keeps reads of decoded data alive */
static inline int fuzz_rm_(const char *p, const struct stat *sb, int type, struct FTW *ftw) {
    (void)sb, (void)type, (void)ftw;
    return remove(p);
}
static inline void fuzz_cleanup_(void) { nftw(fuzz_dir_, fuzz_rm_, 16, FTW_DEPTH | FTW_PHYS); }

/* A folder of this process under /dev/shm (or TMPDIR), made once, removed
 * at exit. */
static inline const char *fuzz_dir(void) {
    char *dir = fuzz_dir_;
    if (!dir[0]) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        snprintf(dir, sizeof fuzz_dir_, "%s/mmdet-fuzz-%d", base, (int)getpid());
        mkdir(dir, 0700);
        atexit(fuzz_cleanup_);
    }
    return dir;
}

/* Writes data to <fuzz_dir>/<name> and returns the path (static buffer per name slot). */
static inline const char *fuzz_file(const char *name, const void *data, size_t n) {
    static char path[4][512];
    static int slot;
    char *p = path[slot++ & 3];
    snprintf(p, 512, "%s/%s", fuzz_dir(), name);
    for (char *q = p + strlen(fuzz_dir()) + 1; (q = strchr(q, '/')); q++) {   /* sub-folders */
        *q = 0;
        mkdir(p, 0700);
        *q = '/';
    }
    FILE *f = fopen(p, "wb");
    if (!f) abort();
    if (n && fwrite(data, 1, n, f) != n) abort();
    if (fclose(f)) abort();
    return p;
}

/* The error message must be a terminated string (every failure sets one). */
static inline void fuzz_check_error(const md_error *err) {
    if (!err->code || memchr(err->msg, 0, sizeof err->msg) == NULL || !err->msg[0]) abort();
}

static inline md_ctx *fuzz_ctx(void) {
    static md_ctx *ctx;
    if (!ctx) {
        md_error err = {0};
        ctx = md_ctx_new(&err);
        if (!ctx) abort();
        md_log_set_quiet(ctx, true);
        md_ctx_seed(ctx, 0);
    }
    return ctx;
}

/* The image targets: `magic` (the format's signature, so the fuzzer spends
 * its time inside the decoder) then the input, decoded in every read mode,
 * and read for its size from a file named `name`. */
static inline int fuzz_image_input(const uint8_t *magic, size_t nm, const char *name, const uint8_t *data,
                                   size_t n) {
    uint8_t *buf = malloc(n + nm);
    if (!buf) return 0;
    memcpy(buf, magic, nm);
    if (n) memcpy(buf + nm, data, n);
    for (int fl = MD_IMAGE_RGB; fl <= MD_IMAGE_UNCHANGED; fl++) {
        md_error err = {0};
        md_image *img = md_image_decode(buf, n + nm, (md_image_flags)fl, "fuzz", &err);
        if (img) {
            if (img->h <= 0 || img->w <= 0 || !img->data) abort();
            uint8_t s = 0;   /* touch every byte: ASan checks the size */
            for (size_t i = 0; i < (size_t)img->h * img->w * img->c; i += 4093) s ^= img->data[i];
            s ^= img->data[(size_t)img->h * img->w * img->c - 1];
            fuzz_sink = s;
            md_image_free(img);
        } else {
            fuzz_check_error(&err);
        }
    }
    int w, h;
    md_error err = {0};
    if (md_image_read_size(fuzz_file(name, buf, n + nm), &w, &h, &err) != 0) fuzz_check_error(&err);
    free(buf);
    return 0;
}

#endif
