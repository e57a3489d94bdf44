/* The CPU backend: the md_backend table (backends/backend.h) that libmmdet
 * fills statically in table.c, and what its kernels take from the md_ctx
 * bound to the calling thread (the table's `bind`, which md__be calls
 * before a front-end's kernels): the thread count and step-arena scratch. */
#ifndef MMDET_CPU_TABLE_H
#define MMDET_CPU_TABLE_H

#include <stddef.h>
#include "backends/backend.h"

extern const md_backend md__cpu_table;

/* The bound context's thread count (md_ctx_threads); OpenMP's default when
 * none is bound. */
int md__cpu_threads(void);

/* Sets the CPU backend's message (printf-style) for `error`; returns -1. */
int md__cpu_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
