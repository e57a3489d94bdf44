/* Errors: return codes plus caller-owned messages. No library code aborts.
 *
 * A function that can fail takes an `md_error *err` (may be NULL), returns -1
 * (or NULL) and writes one message into it. Callers that add context wrap
 * the message, innermost last: "model.roi_head: StandardRoIHead: bbox_head: ...".
 */
#ifndef MMDET_ERROR_H
#define MMDET_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MD_ERROR_MSG_MAX 2048

typedef struct md_error {
    int code;                     /* 0: no error; otherwise an md_errcode */
    char msg[MD_ERROR_MSG_MAX];
} md_error;

typedef enum md_errcode {
    MD_OK = 0,
    MD_ERR_GENERIC = 1,
    MD_ERR_IO,          /* missing or unreadable file */
    MD_ERR_PARSE,       /* syntax error in a config, JSON, XML, image */
    MD_ERR_CONFIG,      /* a config value or key is wrong */
    MD_ERR_REGISTRY,    /* unknown or duplicate type */
    MD_ERR_PLUGIN,      /* a plugin refused to load */
    MD_ERR_SHAPE,       /* shape, dtype or device mismatch in an op */
    MD_ERR_NOMEM,
    MD_ERR_NUMERIC,     /* NaN or infinite value where one must not be */
    MD_ERR_INTERRUPTED, /* SIGINT/SIGTERM */
    MD_ERR_DIST,        /* a collective failed or timed out (another rank failed) */
} md_errcode;

/* Sets the message (printf-style) and code MD_ERR_GENERIC; returns -1. */
int md_fail(md_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Same with an explicit code. */
int md_failc(md_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prefixes "<prefix>: " to the current message (keeps the code); returns -1. */
int md_error_wrap(md_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void md_error_clear(md_error *err);
static inline int md_error_is_set(const md_error *err) { return err && err->code != 0; }

#ifdef __cplusplus
}
#endif
#endif
