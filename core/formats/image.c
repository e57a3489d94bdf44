/* Image decode/encode: JPEG through libjpeg(-turbo), PNG through libpng.
 * Both libraries report fatal errors by longjmp; every entry point here sets
 * its own jump buffer so that no library error escapes as an abort. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
#include <jerror.h>
#include <png.h>
#include "internal.h"
#include "mmdet/image.h"

#define MD_IMAGE_MAX_SIDE 65500   /* JPEG's own limit; also bounds PNG */
/* Decoded size bound (OpenCV's CV_IO_MAX_IMAGE_PIXELS is 2^30): a header of
 * a few bytes must not make the decoder ask for tens of gigabytes. */
#define MD_IMAGE_MAX_PIXELS ((uint64_t)1 << 28)

MD_API md_image *md_image_new(int h, int w, int c, md_error *err) {
    if (h <= 0 || w <= 0 || h > MD_IMAGE_MAX_SIDE || w > MD_IMAGE_MAX_SIDE || (c != 1 && c != 3 && c != 4)) {
        md_failc(err, MD_ERR_SHAPE, "md_image_new: bad size %dx%dx%d", h, w, c);
        return NULL;
    }
    md_image *img = calloc(1, sizeof *img);
    uint8_t *d = img ? calloc((size_t)h * w * c, 1) : NULL;
    if (!d) {
        free(img);
        md_failc(err, MD_ERR_NOMEM, "md_image_new: out of memory for %dx%dx%d", h, w, c);
        return NULL;
    }
    img->h = h; img->w = w; img->c = c; img->data = d;
    return img;
}

MD_API void md_image_free(md_image *img) {
    if (!img) return;
    free(img->data);
    free(img);
}

MD_API md_image_format md_image_sniff(const void *buf, size_t n) {
    const uint8_t *b = buf;
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return MD_IMAGE_JPEG;
    if (n >= 8 && memcmp(b, png_sig, 8) == 0) return MD_IMAGE_PNG;
    return MD_IMAGE_UNKNOWN;
}

static uint8_t *read_file(const char *path, size_t *n, md_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        md_failc(err, MD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    uint8_t *buf = NULL;
    size_t cap = 0, len = 0;
    for (;;) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 1 << 16;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                free(buf); fclose(f);
                md_failc(err, MD_ERR_NOMEM, "%s: out of memory reading file", path);
                return NULL;
            }
            buf = nb; cap = ncap;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        md_failc(err, MD_ERR_IO, "%s: read error", path);
        return NULL;
    }
    *n = len;
    return buf;
}

/* ---------------------------------------------------------------- JPEG */

typedef struct jerr_mgr {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
    int truncated;
} jerr_mgr;

static void jerr_exit(j_common_ptr cinfo) {
    jerr_mgr *e = (jerr_mgr *)cinfo->err;
    e->pub.format_message(cinfo, e->msg);
    longjmp(e->jb, 1);
}

/* Warnings are silent, except those saying the data ran out: a truncated
 * file would otherwise decode "successfully" with gray rows at the bottom. */
static void jerr_emit(j_common_ptr cinfo, int level) {
    jerr_mgr *e = (jerr_mgr *)cinfo->err;
    if (level < 0) {
        e->pub.num_warnings++;
        /* End of file, or a marker where entropy-coded data should go on:
         * either way the rest of the image would be filler. */
        if (e->pub.msg_code == JWRN_JPEG_EOF || e->pub.msg_code == JWRN_HIT_MARKER) e->truncated = 1;
    }
}

static void cmyk_to_rgb(const uint8_t *src, uint8_t *dst, int w, int inverted) {
    for (int x = 0; x < w; x++) {
        int c = src[4 * x], m = src[4 * x + 1], y = src[4 * x + 2], k = src[4 * x + 3];
        if (!inverted) { c = 255 - c; m = 255 - m; y = 255 - y; k = 255 - k; }
        dst[3 * x] = (uint8_t)(k - ((255 - c) * k >> 8));
        dst[3 * x + 1] = (uint8_t)(k - ((255 - m) * k >> 8));
        dst[3 * x + 2] = (uint8_t)(k - ((255 - y) * k >> 8));
    }
}

/* The Orientation tag (0x0112) of IFD0 in an APP1 "Exif" segment; 1 when
 * absent or unreadable. Every offset is checked against the segment. */
static int exif_orientation(const uint8_t *d, size_t n) {
    if (n < 14 || memcmp(d, "Exif\0\0", 6) != 0) return 1;
    const uint8_t *t = d + 6;
    size_t tn = n - 6;
    int le;
    if (t[0] == 'I' && t[1] == 'I') le = 1;
    else if (t[0] == 'M' && t[1] == 'M') le = 0;
    else return 1;
#define U16(p) (le ? (unsigned)((p)[0] | (p)[1] << 8) : (unsigned)((p)[0] << 8 | (p)[1]))
#define U32(p) (le ? ((uint32_t)(p)[0] | (uint32_t)(p)[1] << 8 | (uint32_t)(p)[2] << 16 | (uint32_t)(p)[3] << 24) \
                   : ((uint32_t)(p)[0] << 24 | (uint32_t)(p)[1] << 16 | (uint32_t)(p)[2] << 8 | (uint32_t)(p)[3]))
    if (U16(t + 2) != 42) return 1;
    uint32_t ifd = U32(t + 4);
    if (ifd > tn || tn - ifd < 2) return 1;
    unsigned count = U16(t + ifd);
    for (unsigned i = 0; i < count; i++) {
        size_t e = (size_t)ifd + 2 + 12 * (size_t)i;
        if (e + 12 > tn) return 1;
        if (U16(t + e) != 0x0112) continue;
        if (U16(t + e + 2) != 3 || U32(t + e + 4) < 1) return 1;   /* SHORT, count >= 1 */
        unsigned v = U16(t + e + 8);
        return v >= 1 && v <= 8 ? (int)v : 1;
    }
    return 1;
#undef U16
#undef U32
}

/* OpenCV's ApplyExifOrientation: 2 mirror, 3 rotate 180, 4 flip, 5
 * transpose, 6 rotate 90 clockwise, 7 transverse, 8 rotate 90
 * counter-clockwise. Returns the new image (the old one freed), or NULL. */
static md_image *orient(md_image *img, int o, md_error *err) {
    if (o <= 1 || o > 8) return img;
    bool tr = o >= 5, fh = o == 2 || o == 3 || o == 6 || o == 7, fv = o == 3 || o == 4 || o == 7 || o == 8;
    int oh = tr ? img->w : img->h, ow = tr ? img->h : img->w, c = img->c;
    md_image *out = md_image_new(oh, ow, c, err);
    if (!out) {
        md_image_free(img);
        return NULL;
    }
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++) {
            int ty = fv ? oh - 1 - y : y, tx = fh ? ow - 1 - x : x;
            int sy = tr ? tx : ty, sx = tr ? ty : tx;
            memcpy(out->data + ((size_t)y * ow + x) * c, img->data + ((size_t)sy * img->w + sx) * c, (size_t)c);
        }
    md_image_free(img);
    return out;
}

static md_image *jpeg_decode(const uint8_t *buf, size_t n, md_image_flags flags, const char *name,
                             int header_only, int *ow, int *oh, int *orientation, md_error *err) {
    struct jpeg_decompress_struct cinfo;
    jerr_mgr jerr;
    md_image *volatile img = NULL;
    uint8_t *volatile row = NULL;
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = jerr_exit;
    jerr.pub.emit_message = jerr_emit;
    jerr.truncated = 0;
    if (setjmp(jerr.jb)) {
        md_failc(err, MD_ERR_PARSE, "%s: corrupt JPEG: %s", name, jerr.msg);
        jpeg_destroy_decompress(&cinfo);
        md_image_free(img);
        free(row);
        return NULL;
    }
    jpeg_create_decompress(&cinfo);
    if (n > ULONG_MAX) n = ULONG_MAX;
    jpeg_mem_src(&cinfo, (unsigned char *)buf, (unsigned long)n);
    if (!header_only && orientation) jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xFFFF);
    jpeg_read_header(&cinfo, TRUE);
    if (!header_only && orientation) {
        *orientation = 1;
        for (jpeg_saved_marker_ptr m = cinfo.marker_list; m; m = m->next)
            if (m->marker == JPEG_APP0 + 1 && (*orientation = exif_orientation(m->data, m->data_length)) != 1) break;
    }
    if (header_only) {
        *ow = (int)cinfo.image_width; *oh = (int)cinfo.image_height;
        jpeg_destroy_decompress(&cinfo);
        return NULL;
    }
    int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    int want_c;
    if (flags == MD_IMAGE_GRAY) {
        want_c = 1;
        cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_GRAYSCALE;
    } else if (flags == MD_IMAGE_UNCHANGED && cinfo.num_components == 1) {
        want_c = 1;
        cinfo.out_color_space = JCS_GRAYSCALE;
    } else {
        want_c = 3;
        cinfo.out_color_space = cmyk ? JCS_CMYK : (flags == MD_IMAGE_BGR ? JCS_EXT_BGR : JCS_RGB);
    }
    if ((uint64_t)cinfo.image_width * cinfo.image_height > MD_IMAGE_MAX_PIXELS) {
        snprintf(jerr.msg, sizeof jerr.msg, "%ux%u pixels is more than this reader accepts (%llu)",
                 (unsigned)cinfo.image_width, (unsigned)cinfo.image_height, (unsigned long long)MD_IMAGE_MAX_PIXELS);
        longjmp(jerr.jb, 1);
    }
    /* Progressive files buffer every coefficient; bound what libjpeg may take. */
    cinfo.mem->max_memory_to_use = 2048L << 20;
    jpeg_start_decompress(&cinfo);
    int w = (int)cinfo.output_width, h = (int)cinfo.output_height;
    img = md_image_new(h, w, want_c, err);
    if (!img) {
        jpeg_destroy_decompress(&cinfo);
        return NULL;
    }
    if (cmyk) {
        row = malloc((size_t)w * 4 + (size_t)w * 3);
        if (!row) longjmp(jerr.jb, (snprintf(jerr.msg, sizeof jerr.msg, "out of memory"), 1));
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        uint8_t *dst = img->data + (size_t)cinfo.output_scanline * w * want_c;
        if (!cmyk) {
            JSAMPROW rp = dst;
            jpeg_read_scanlines(&cinfo, &rp, 1);
            if (jerr.truncated) break;   /* the rest would be filler: stop now */
            continue;
        }
        JSAMPROW rp = row;
        jpeg_read_scanlines(&cinfo, &rp, 1);
        uint8_t *rgb = row + (size_t)w * 4;
        cmyk_to_rgb(row, rgb, w, cinfo.saw_Adobe_marker);
        for (int x = 0; x < w; x++) {
            uint8_t r = rgb[3 * x], g = rgb[3 * x + 1], b = rgb[3 * x + 2];
            if (want_c == 1) dst[x] = (uint8_t)((r * 19595 + g * 38470 + b * 7471 + 32768) >> 16);
            else if (flags == MD_IMAGE_BGR) { dst[3 * x] = b; dst[3 * x + 1] = g; dst[3 * x + 2] = r; }
            else { dst[3 * x] = r; dst[3 * x + 1] = g; dst[3 * x + 2] = b; }
        }
        if (jerr.truncated) break;
    }
    if (jerr.truncated) {
        snprintf(jerr.msg, sizeof jerr.msg, "truncated data (the image data ends before its last row; %zu bytes)", n);
        longjmp(jerr.jb, 1);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(row);
    if (jerr.truncated) {
        md_failc(err, MD_ERR_PARSE, "%s: corrupt JPEG: truncated data (the image data ends before its last row; %zu bytes)",
                 name, n);
        md_image_free(img);
        return NULL;
    }
    return img;
}

/* ----------------------------------------------------------------- PNG */

typedef struct png_io {
    const uint8_t *buf;
    size_t n, pos;
    uint8_t *out;        /* encoder: growable output */
    size_t cap;
    int oom;
    char msg[256];
} png_io;

static void png_err_fn(png_structp png, png_const_charp msg) {
    png_io *io = png_get_error_ptr(png);
    snprintf(io->msg, sizeof io->msg, "%s", msg);
    png_longjmp(png, 1);
}
static void png_warn_fn(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

static void png_read_fn(png_structp png, png_bytep data, size_t len) {
    png_io *io = png_get_io_ptr(png);
    if (len > io->n - io->pos) png_error(png, "truncated data (unexpected end of file)");
    memcpy(data, io->buf + io->pos, len);
    io->pos += len;
}

static md_image *png_decode(const uint8_t *buf, size_t n, md_image_flags flags, const char *name,
                            int header_only, int *ow, int *oh, md_error *err) {
    png_io io = {.buf = buf, .n = n};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &io, png_err_fn, png_warn_fn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    md_image *volatile img = NULL;
    png_bytep *volatile rows = NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        md_failc(err, MD_ERR_NOMEM, "%s: out of memory starting PNG decoder", name);
        return NULL;
    }
    if (setjmp(png_jmpbuf(png))) {
        md_failc(err, MD_ERR_PARSE, "%s: corrupt PNG: %s", name, io.msg[0] ? io.msg : "decoder error");
        png_destroy_read_struct(&png, &info, NULL);
        md_image_free(img);
        free(rows);
        return NULL;
    }
    png_set_read_fn(png, &io, png_read_fn);
    png_set_user_limits(png, MD_IMAGE_MAX_SIDE, MD_IMAGE_MAX_SIDE);
    png_read_info(png, info);
    png_uint_32 w, h;
    int depth, ctype;
    png_get_IHDR(png, info, &w, &h, &depth, &ctype, NULL, NULL, NULL);
    if (!header_only && (uint64_t)w * h > MD_IMAGE_MAX_PIXELS) {
        snprintf(io.msg, sizeof io.msg, "%ux%u pixels is more than this reader accepts (%llu)", (unsigned)w,
                 (unsigned)h, (unsigned long long)MD_IMAGE_MAX_PIXELS);
        png_longjmp(png, 1);
    }
    if (header_only) {
        *ow = (int)w; *oh = (int)h;
        png_destroy_read_struct(&png, &info, NULL);
        return NULL;
    }
    if (depth == 16) png_set_strip_16(png);
    if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    int has_alpha = (ctype & PNG_COLOR_MASK_ALPHA) != 0;
    int is_gray = (ctype & PNG_COLOR_MASK_COLOR) == 0;
    int want_c;
    if (flags == MD_IMAGE_UNCHANGED) {
        if (png_get_valid(png, info, PNG_INFO_tRNS)) { png_set_tRNS_to_alpha(png); has_alpha = 1; }
        want_c = (is_gray ? 1 : 3) + has_alpha;
        if (is_gray && has_alpha) { png_set_gray_to_rgb(png); want_c = 4; }
    } else {
        if (has_alpha) png_set_strip_alpha(png);
        if (flags == MD_IMAGE_GRAY) {
            want_c = 1;
            if (!is_gray) png_set_rgb_to_gray(png, 1, -1, -1);
        } else {
            want_c = 3;
            if (is_gray) png_set_gray_to_rgb(png);
            if (flags == MD_IMAGE_BGR) png_set_bgr(png);
        }
    }
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if ((int)png_get_channels(png, info) != want_c || png_get_rowbytes(png, info) != (size_t)w * want_c) {
        snprintf(io.msg, sizeof io.msg, "unsupported layout (%d channels, depth %d, color type %d)",
                 (int)png_get_channels(png, info), depth, ctype);
        png_longjmp(png, 1);
    }
    img = md_image_new((int)h, (int)w, want_c, err);
    rows = img ? malloc(sizeof(png_bytep) * h) : NULL;
    if (!rows) {
        if (img) md_failc(err, MD_ERR_NOMEM, "%s: out of memory decoding PNG", name);
        png_destroy_read_struct(&png, &info, NULL);
        md_image_free(img);
        return NULL;
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = img->data + (size_t)y * w * want_c;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    return img;
}

/* ------------------------------------------------------------- public */

MD_API md_image *md_image_decode(const void *buf, size_t n, md_image_flags flags, const char *name, md_error *err) {
    if (!name) name = "<memory>";
    md_image_flags base = (md_image_flags)(flags & ~MD_IMAGE_IGNORE_ORIENTATION);
    bool apply = !(flags & MD_IMAGE_IGNORE_ORIENTATION) && base != MD_IMAGE_UNCHANGED;
    if ((unsigned)base > MD_IMAGE_UNCHANGED) {
        md_failc(err, MD_ERR_CONFIG, "%s: bad image read flags %d", name, (int)flags);
        return NULL;
    }
    switch (md_image_sniff(buf, n)) {
    case MD_IMAGE_JPEG: {
        int o = 1;
        md_image *img = jpeg_decode(buf, n, base, name, 0, NULL, NULL, apply ? &o : NULL, err);
        return img && o != 1 ? orient(img, o, err) : img;
    }
    case MD_IMAGE_PNG: return png_decode(buf, n, base, name, 0, NULL, NULL, err);
    default:
        md_failc(err, MD_ERR_PARSE, "%s: not a JPEG or PNG image (%zu bytes, unknown magic bytes)", name, n);
        return NULL;
    }
}

MD_API md_image *md_image_read_as(const char *path, md_image_flags flags, md_error *err) {
    size_t n = 0;
    uint8_t *buf = read_file(path, &n, err);
    if (!buf) return NULL;
    md_image *img = md_image_decode(buf, n, flags, path, err);
    free(buf);
    return img;
}

MD_API md_image *md_image_read(const char *path, md_error *err) {
    return md_image_read_as(path, MD_IMAGE_RGB, err);
}

MD_API int md_image_read_size(const char *path, int *w, int *h, md_error *err) {
    size_t n = 0;
    uint8_t *buf = read_file(path, &n, err);
    if (!buf) return -1;
    int ok = 0;
    md_error e = {0};
    *w = *h = 0;
    switch (md_image_sniff(buf, n)) {
    case MD_IMAGE_JPEG: jpeg_decode(buf, n, MD_IMAGE_RGB, path, 1, w, h, NULL, &e); ok = !e.code; break;
    case MD_IMAGE_PNG: png_decode(buf, n, MD_IMAGE_RGB, path, 1, w, h, &e); ok = !e.code; break;
    default: md_failc(&e, MD_ERR_PARSE, "%s: not a JPEG or PNG image (%zu bytes, unknown magic bytes)", path, n);
    }
    free(buf);
    if (!ok) {
        if (err) *err = e;
        return -1;
    }
    return 0;
}

static int check_encodable(const md_image *img, int allow4, const char *what, md_error *err) {
    if (!img || !img->data || img->h <= 0 || img->w <= 0 || img->h > MD_IMAGE_MAX_SIDE ||
        img->w > MD_IMAGE_MAX_SIDE || !(img->c == 1 || img->c == 3 || (allow4 && img->c == 4)))
        return md_failc(err, MD_ERR_SHAPE, "%s: cannot encode image of shape %dx%dx%d", what,
                        img ? img->h : 0, img ? img->w : 0, img ? img->c : 0);
    return 0;
}

MD_API int md_image_encode_jpeg(const md_image *img, int quality, uint8_t **out, size_t *n, md_error *err) {
    if (check_encodable(img, 0, "md_image_encode_jpeg", err)) return -1;
    struct jpeg_compress_struct cinfo;
    jerr_mgr jerr;
    unsigned char *volatile mem = NULL;
    unsigned long size = 0;
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = jerr_exit;
    jerr.pub.emit_message = jerr_emit;
    if (setjmp(jerr.jb)) {
        jpeg_destroy_compress(&cinfo);
        free(mem);
        return md_failc(err, MD_ERR_GENERIC, "md_image_encode_jpeg: %s", jerr.msg);
    }
    jpeg_create_compress(&cinfo);
    unsigned char *m = NULL;
    jpeg_mem_dest(&cinfo, &m, &size);
    cinfo.image_width = (JDIMENSION)img->w;
    cinfo.image_height = (JDIMENSION)img->h;
    cinfo.input_components = img->c;
    cinfo.in_color_space = img->c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality < 1 ? 1 : quality > 100 ? 100 : quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW rp = img->data + (size_t)cinfo.next_scanline * img->w * img->c;
        jpeg_write_scanlines(&cinfo, &rp, 1);
    }
    jpeg_finish_compress(&cinfo);
    mem = m;
    jpeg_destroy_compress(&cinfo);
    *out = mem;
    *n = size;
    return 0;
}

static void png_write_fn(png_structp png, png_bytep data, size_t len) {
    png_io *io = png_get_io_ptr(png);
    if (io->pos + len > io->cap) {
        size_t ncap = io->cap ? io->cap : 1 << 16;
        while (ncap < io->pos + len) ncap *= 2;
        uint8_t *nb = realloc(io->out, ncap);
        if (!nb) { io->oom = 1; png_error(png, "out of memory"); }
        io->out = nb; io->cap = ncap;
    }
    memcpy(io->out + io->pos, data, len);
    io->pos += len;
}
static void png_flush_fn(png_structp png) { (void)png; }

MD_API int md_image_encode_png(const md_image *img, uint8_t **out, size_t *n, md_error *err) {
    if (check_encodable(img, 1, "md_image_encode_png", err)) return -1;
    png_io io = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &io, png_err_fn, png_warn_fn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    png_bytep *volatile rows = NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return md_failc(err, MD_ERR_NOMEM, "md_image_encode_png: out of memory");
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(io.out);
        free(rows);
        return md_failc(err, io.oom ? MD_ERR_NOMEM : MD_ERR_GENERIC, "md_image_encode_png: %s", io.msg);
    }
    png_set_write_fn(png, &io, png_write_fn, png_flush_fn);
    png_set_compression_level(png, 1);   /* OpenCV's default: speed over a few % of size */
    int ctype = img->c == 1 ? PNG_COLOR_TYPE_GRAY : img->c == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_RGBA;
    png_set_IHDR(png, info, (png_uint_32)img->w, (png_uint_32)img->h, 8, ctype, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    rows = malloc(sizeof(png_bytep) * img->h);
    if (!rows) {
        snprintf(io.msg, sizeof io.msg, "out of memory");
        io.oom = 1;
        png_longjmp(png, 1);
    }
    for (int y = 0; y < img->h; y++) rows[y] = img->data + (size_t)y * img->w * img->c;
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    *out = io.out;
    *n = io.pos;
    return 0;
}

static int write_file(const char *path, const uint8_t *buf, size_t n, md_error *err) {
    FILE *f = fopen(path, "wb");
    if (!f) return md_failc(err, MD_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    size_t w = fwrite(buf, 1, n, f);
    int bad = (w != n) | (fclose(f) != 0);
    if (bad) return md_failc(err, MD_ERR_IO, "%s: write error: %s", path, strerror(errno));
    return 0;
}

MD_API int md_image_write_jpeg(const md_image *img, const char *path, int quality, md_error *err) {
    uint8_t *buf = NULL;
    size_t n = 0;
    if (md_image_encode_jpeg(img, quality, &buf, &n, err)) return md_error_wrap(err, "%s", path);
    int rc = write_file(path, buf, n, err);
    free(buf);
    return rc;
}

MD_API int md_image_write_png(const md_image *img, const char *path, md_error *err) {
    uint8_t *buf = NULL;
    size_t n = 0;
    if (md_image_encode_png(img, &buf, &n, err)) return md_error_wrap(err, "%s", path);
    int rc = write_file(path, buf, n, err);
    free(buf);
    return rc;
}

/* ---------------------------------------------------------------- resize */

/* OpenCV's resizeGeneric for u8 (4.x, what mmcv.imresize calls): the
 * horizontal pass in exact integers, the vertical one as OpenCV's u8
 * VResizeLinear (its SIMD lanes and scalar tail alike) computes it, each row
 * sum shifted right by 4 and each product by 16 before the final rounding
 * shift by 2. That truncation moves about one value in ten by 1 from the
 * exactly rounded result; it is what the reference pipeline sees. */
MD_API int md_image_resize_bilinear(const uint8_t *src, int sh, int sw, int c, uint8_t *dst, int dh, int dw) {
    double scale_x = 1.0 / ((double)dw / sw), scale_y = 1.0 / ((double)dh / sh);
    int *xofs = malloc(sizeof(int) * (size_t)dw * 2);
    short *ax = malloc(sizeof(short) * (size_t)dw * 2);
    int *rowbuf = malloc(sizeof(int) * (size_t)dw * c * 2);
    int rc = -1;
    if (!xofs || !ax || !rowbuf) goto done;
    for (int dx = 0; dx < dw; dx++) {
        float fx = (float)((dx + 0.5) * scale_x - 0.5);
        int sx = (int)floorf(fx);
        fx -= sx;
        if (sx < 0) fx = 0, sx = 0;
        if (sx >= sw - 1) fx = 0, sx = sw - 1;
        xofs[dx] = sx;
        ax[2 * dx] = (short)lrintf((1.f - fx) * 2048);
        ax[2 * dx + 1] = (short)lrintf(fx * 2048);
    }
    int *r0 = rowbuf, *r1 = rowbuf + (size_t)dw * c;
    for (int dy = 0; dy < dh; dy++) {
        float fy = (float)((dy + 0.5) * scale_y - 0.5);
        int sy = (int)floorf(fy);
        fy -= sy;
        short b0 = (short)lrintf((1.f - fy) * 2048), b1 = (short)lrintf(fy * 2048);
        int y0 = sy < 0 ? 0 : sy >= sh ? sh - 1 : sy, y1 = sy + 1 < 0 ? 0 : sy + 1 >= sh ? sh - 1 : sy + 1;
        for (int k = 0; k < 2; k++) {
            const uint8_t *S = src + (size_t)(k ? y1 : y0) * sw * c;
            int *D = k ? r1 : r0;
            for (int dx = 0; dx < dw; dx++) {
                int sx = xofs[dx], sx1 = sx + 1 < sw ? sx + 1 : sx;
                for (int ch = 0; ch < c; ch++)
                    D[dx * c + ch] = S[sx * c + ch] * ax[2 * dx] + S[sx1 * c + ch] * ax[2 * dx + 1];
            }
        }
        uint8_t *out = dst + (size_t)dy * dw * c;
        for (int i = 0; i < dw * c; i++) {
            int v = ((((r0[i] >> 4) * b0) >> 16) + (((r1[i] >> 4) * b1) >> 16) + 2) >> 2;
            out[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    rc = 0;
done:
    free(xofs);
    free(ax);
    free(rowbuf);
    return rc;
}
