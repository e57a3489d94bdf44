/* The host step heap: one reserved range of address space from which the
 * step arena's pool carves its large tensors, best fit over the free ranges,
 * with neighbours merged when a range is handed back.
 *
 * Why one range rather than a block per tensor: a step hands back blocks of
 * one size and asks for others (activations go, gradients come), and a block
 * pool either keeps every size it ever made (Faster R-CNN held 4.5 GB for a
 * 3.2 GB live peak) or returns blocks to the C library, whose next request
 * then faults in and clears fresh pages (about 4 GB a step). In one range,
 * a handed-back activation is split for the gradients that follow it and
 * merged again when they go, so the range's high water stays within a few
 * per cent of the live peak, and a steady loop touches no fresh page after
 * its first step: every step makes the same requests in the same order from
 * the same empty range, so it lays them out the same way. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "internal.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#else
#define ASAN_POISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#define ASAN_UNPOISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#endif

#define HEAP_PAGE ((size_t)4096)
#define HEAP_COMMIT_STEP ((size_t)32 << 20)   /* made writable this much at a time */

/* Twice the machine's memory: more than a step can use, and address space
 * reserved without access costs neither memory nor commit charge. */
static size_t reserve_size(void) {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    size_t phys = pages > 0 && page > 0 ? (size_t)pages * (size_t)page : (size_t)16 << 30;
    return 2 * phys;
}

static int heap_reserve(md_heap *h) {
    for (size_t size = reserve_size(); size >= ((size_t)1 << 30); size /= 2) {
        void *p = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p != MAP_FAILED) {
            h->base = p;
            h->reserved = size;
            return 0;
        }
    }
    return -1;
}

void md__heap_free(md_heap *h) {
    if (h->base) munmap(h->base, h->reserved);
    free(h->free);
    memset(h, 0, sizeof *h);
}

/* Transparent huge pages above the first commit step: a training step's
 * gigabytes of tensors then miss the TLB far less often (ResNet-50 and
 * Faster R-CNN steps 3-10 % faster), while a small model's heap stays in
 * 4 KiB pages and does not clear 2 MiB for every quarter-megabyte tensor.
 * $MMDET_HEAP_THP=0 turns them off. */
static bool want_huge_pages(void) {
    const char *env = getenv("MMDET_HEAP_THP");
    return !(env && *env && atoi(env) == 0);
}

/* Makes [0, end) writable. */
static int heap_commit(md_heap *h, size_t end) {
    if (end <= h->committed) return 0;
    if (end > h->reserved) return -1;
    size_t to = (end + HEAP_COMMIT_STEP - 1) / HEAP_COMMIT_STEP * HEAP_COMMIT_STEP;
    if (to > h->reserved) to = h->reserved;
    if (mprotect(h->base + h->committed, to - h->committed, PROT_READ | PROT_WRITE) != 0) return -1;
    size_t huge_from = h->committed > HEAP_COMMIT_STEP ? h->committed : HEAP_COMMIT_STEP;
    if (to > huge_from && want_huge_pages()) madvise(h->base + huge_from, to - huge_from, MADV_HUGEPAGE);
    ASAN_POISON_MEMORY_REGION(h->base + h->committed, to - h->committed);
    h->committed = to;
    return 0;
}

/* Index of the first free range at or after offset off (ranges sorted). */
static int range_at(const md_heap *h, size_t off) {
    int lo = 0, hi = h->n_free;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (h->free[mid].off < off) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static void range_remove(md_heap *h, int i) {
    memmove(&h->free[i], &h->free[i + 1], (size_t)(h->n_free - i - 1) * sizeof *h->free);
    h->n_free--;
}

static int range_insert(md_heap *h, int i, size_t off, size_t size) {
    if (h->n_free == h->cap_free) {
        int cap = h->cap_free ? 2 * h->cap_free : 64;
        md_heap_range *r = realloc(h->free, (size_t)cap * sizeof *r);
        if (!r) return -1;
        h->free = r;
        h->cap_free = cap;
    }
    memmove(&h->free[i + 1], &h->free[i], (size_t)(h->n_free - i) * sizeof *h->free);
    h->free[i] = (md_heap_range){ off, size };
    h->n_free++;
    return 0;
}

/* `bytes` (a multiple of the page) at a page boundary; NULL when the
 * reservation is exhausted or cannot be made. The smallest free range that
 * fits, split; else the top of the heap. */
void *md__heap_alloc(md_heap *h, size_t bytes) {
    if (!h->base && heap_reserve(h) != 0) return NULL;
    size_t want = bytes + MD_HEAP_GUARD;
    int best = -1;
    for (int i = 0; i < h->n_free; i++)
        if (h->free[i].size >= want && (best < 0 || h->free[i].size < h->free[best].size)) best = i;
    size_t off;
    if (best >= 0) {
        off = h->free[best].off;
        h->free[best].off += want;
        h->free[best].size -= want;
        if (h->free[best].size == 0) range_remove(h, best);
    } else {   /* no free range ends at the top: md__heap_put lowers the top instead */
        off = h->top;
        if (heap_commit(h, off + want) != 0) return NULL;
        h->top = off + want;
        if (h->top > h->high) h->high = h->top;
        if (h->top > h->touched) h->touched = h->top;
    }
    ASAN_UNPOISON_MEMORY_REGION(h->base + off, bytes);
    return h->base + off;
}

/* Hands [p, p + bytes) back, merged with the free ranges beside it; a
 * range that reaches the top lowers the top instead. -1 only when the free
 * list cannot grow (the range then stays lost until the reset). */
int md__heap_put(md_heap *h, void *p, size_t bytes) {
    size_t off = (size_t)((char *)p - h->base), size = bytes + MD_HEAP_GUARD;
    ASAN_POISON_MEMORY_REGION(p, bytes);
    int i = range_at(h, off);
    if (i > 0 && h->free[i - 1].off + h->free[i - 1].size == off) {   /* merge with the one before */
        i--;
        off = h->free[i].off;
        size += h->free[i].size;
        range_remove(h, i);
    }
    if (i < h->n_free && h->free[i].off == off + size) {   /* and the one after */
        size += h->free[i].size;
        range_remove(h, i);
    }
    if (off + size == h->top) {
        h->top = off;
        return 0;
    }
    return range_insert(h, i, off, size);
}

/* Everything free again. The pages above the high water of the last
 * MD_HEAP_WINDOW steps go back to the kernel, so that a run that turns to
 * smaller steps (training to evaluation) holds what it uses, while a step
 * that uses little between two large ones (the runner resets before each
 * iteration and after each phase) costs the next one no page faults. */
void md__heap_reset(md_heap *h) {
    h->n_free = 0;
    h->top = 0;
    h->recent[h->n_steps++ % MD_HEAP_WINDOW] = h->high;
    size_t keep = 0;
    for (int i = 0; i < MD_HEAP_WINDOW; i++)
        if (h->recent[i] > keep) keep = h->recent[i];
    keep = (keep + HEAP_PAGE - 1) / HEAP_PAGE * HEAP_PAGE;
    if (h->touched > keep) {
        madvise(h->base + keep, h->touched - keep, MADV_DONTNEED);
        h->touched = keep;
    }
    if (h->committed) ASAN_POISON_MEMORY_REGION(h->base, h->committed);
    h->high = 0;
}
