/* Images: u8 HWC buffers, JPEG (libjpeg-turbo) and PNG (libpng) decode and
 * encode.
 *
 * Decoding picks the format by magic bytes, not by file name. The default
 * read gives 3 channels in RGB order (grayscale expanded, alpha dropped,
 * 16-bit samples reduced to 8 bits), like OpenCV's IMREAD_COLOR except for
 * the channel order, which MD_IMAGE_BGR selects. Every error names the file.
 * A truncated JPEG is an error, not a gray-filled image.
 */
#ifndef MMDET_IMAGE_H
#define MMDET_IMAGE_H

#include <stddef.h>
#include <stdint.h>
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct md_image {
    int h, w, c;          /* c: 1 (gray), 3 (RGB or BGR) or 4 */
    uint8_t *data;        /* h * w * c bytes, row-major HWC */
} md_image;

typedef enum md_image_flags {
    MD_IMAGE_RGB = 0,        /* 3 channels, RGB (default) */
    MD_IMAGE_BGR = 1,        /* 3 channels, BGR (mmcv/OpenCV order) */
    MD_IMAGE_GRAY = 2,       /* 1 channel (JPEG: luma; PNG: libpng's rgb_to_gray) */
    MD_IMAGE_UNCHANGED = 3,  /* the file's channels: 1, 3 or 4 (PNG alpha kept) */
    /* OR-ed with RGB, BGR or GRAY: keep the stored pixel layout of a JPEG
     * whose EXIF Orientation tag says it is rotated or mirrored (OpenCV's
     * IMREAD_IGNORE_ORIENTATION). Without it RGB, BGR and GRAY reads apply
     * the tag (values 2..8) as OpenCV's imdecode does; UNCHANGED never does. */
    MD_IMAGE_IGNORE_ORIENTATION = 16,
} md_image_flags;

typedef enum md_image_format { MD_IMAGE_UNKNOWN = 0, MD_IMAGE_JPEG, MD_IMAGE_PNG } md_image_format;

/* A zeroed image; NULL with err set on bad sizes or no memory. */
md_image *md_image_new(int h, int w, int c, md_error *err);
void md_image_free(md_image *img);

/* Format from the first bytes (needs at least 8 for PNG, 3 for JPEG). */
md_image_format md_image_sniff(const void *buf, size_t n);

/* Reads a JPEG or PNG file as RGB. NULL with err naming the file on failure. */
md_image *md_image_read(const char *path, md_error *err);
md_image *md_image_read_as(const char *path, md_image_flags flags, md_error *err);
/* Decodes from memory; `name` is used in messages (may be NULL). */
md_image *md_image_decode(const void *buf, size_t n, md_image_flags flags, const char *name, md_error *err);
/* Width and height without decoding pixels (reads the header only): the
 * stored size, before any EXIF orientation. */
int md_image_read_size(const char *path, int *w, int *h, md_error *err);

/* Encoders take c = 1 (gray) or 3 (RGB; BGR is not swapped); PNG also c = 4.
 * quality: 1..100. Output is deterministic for the same input. */
int md_image_write_jpeg(const md_image *img, const char *path, int quality, md_error *err);
int md_image_write_png(const md_image *img, const char *path, md_error *err);
/* Encodes into a malloc'ed buffer (*out, *n); the caller frees *out. */
int md_image_encode_jpeg(const md_image *img, int quality, uint8_t **out, size_t *n, md_error *err);
int md_image_encode_png(const md_image *img, uint8_t **out, size_t *n, md_error *err);

/* OpenCV's cv::resize INTER_LINEAR for u8 HWC pixels, bit for bit (its
 * fixed point: 11-bit coefficients, the vertical pass's truncating shifts),
 * src sh x sw -> dst dh x dw with c channels. Returns 0, or -1 when out of
 * memory. */
int md_image_resize_bilinear(const uint8_t *src, int sh, int sw, int c, uint8_t *dst, int dh, int dw);

#ifdef __cplusplus
}
#endif
#endif
