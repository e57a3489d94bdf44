/* Errors: messages written into caller-owned md_error structs. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "internal.h"

static int vfail(md_error *err, int code, const char *fmt, va_list ap) {
    if (!err) return -1;
    err->code = code;
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    return -1;
}

MD_API int md_fail(md_error *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail(err, MD_ERR_GENERIC, fmt, ap);
    va_end(ap);
    return -1;
}

MD_API int md_failc(md_error *err, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail(err, code ? code : MD_ERR_GENERIC, fmt, ap);
    va_end(ap);
    return -1;
}

MD_API int md_error_wrap(md_error *err, const char *fmt, ...) {
    if (!err) return -1;
    char prefix[MD_ERROR_MSG_MAX], old[MD_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    if (!err->code) err->code = MD_ERR_GENERIC;
    snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old[0] ? old : "unknown error");
    return -1;
}

MD_API void md_error_clear(md_error *err) {
    if (!err) return;
    err->code = 0;
    err->msg[0] = 0;
}
