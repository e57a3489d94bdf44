/* CPU sort/top-k: per line, (key, index) pairs under a total order, so that
 * an unstable algorithm still gives the stable result. Top-k partitions
 * with quickselect before sorting only the k winners. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "backends/cpu/elementwise.h"
#include "backends/cpu/sort.h"

typedef struct item { double v; int64_t i; } item;

/* a before b: larger first when desc, NaN counted as the largest value. */
static inline bool val_gt(double a, double b) { return a > b || (isnan(a) && !isnan(b)); }

static int cmp_asc(const void *pa, const void *pb) {
    const item *a = pa, *b = pb;
    if (val_gt(a->v, b->v)) return 1;
    if (val_gt(b->v, a->v)) return -1;
    return (a->i > b->i) - (a->i < b->i);
}

static int cmp_desc(const void *pa, const void *pb) {
    const item *a = pa, *b = pb;
    if (val_gt(a->v, b->v)) return -1;
    if (val_gt(b->v, a->v)) return 1;
    return (a->i > b->i) - (a->i < b->i);
}

static inline void swap_items(item *a, item *b) {
    item t = *a;
    *a = *b;
    *b = t;
}

/* Moves the k first items (in cmp order) into v[0..k) (unordered). */
static void select_k(item *v, int64_t n, int64_t k, int (*cmp)(const void *, const void *)) {
    int64_t lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        /* median of three as the pivot, parked at hi */
        if (cmp(&v[mid], &v[lo]) < 0) swap_items(&v[mid], &v[lo]);
        if (cmp(&v[hi], &v[lo]) < 0) swap_items(&v[hi], &v[lo]);
        if (cmp(&v[mid], &v[hi]) < 0) swap_items(&v[mid], &v[hi]);
        item piv = v[hi];
        int64_t st = lo;
        for (int64_t i = lo; i < hi; i++)
            if (cmp(&v[i], &piv) < 0) swap_items(&v[i], &v[st++]);
        swap_items(&v[st], &v[hi]);
        if (st == want) return;
        if (st > want) hi = st - 1;
        else lo = st + 1;
    }
}

#define LOAD_KEYS(T)                                                      \
    for (int64_t i = 0; i < n; i++) buf[i] = (item){ (double)((const T *)x)[base + i * inner], i };
#define STORE_VALS(T)                                                     \
    for (int64_t t = 0; t < k; t++) ((T *)vals)[ob + t * inner] = ((const T *)x)[base + buf[t].i * inner];

int md__cpu_sort_lines(md_dtype dt, const void *x, int64_t outer, int64_t n, int64_t inner, int64_t k,
                       bool descending, void *vals, int64_t *idx) {
    if (dt != MD_F32 && dt != MD_I64 && dt != MD_I32 && dt != MD_U8) return -1;
    if (outer * inner == 0 || k == 0) return 0;
    int (*cmp)(const void *, const void *) = descending ? cmp_desc : cmp_asc;
    int64_t lines = outer * inner;
    int fail = 0;
    #pragma omp parallel if (lines > 1 && lines * n > MD_CPU_PAR_MIN / 4)
    {
        item *buf = malloc(sizeof(item) * (size_t)n);
        if (!buf) {
            #pragma omp atomic write
            fail = 1;
        }
        #pragma omp for schedule(dynamic, 1)
        for (int64_t r = 0; r < lines; r++) {
            if (!buf) continue;
            int64_t o = r / inner, j = r % inner, base = o * n * inner + j, ob = o * k * inner + j;
            switch (dt) {
            case MD_F32: LOAD_KEYS(float) break;
            case MD_I64: LOAD_KEYS(int64_t) break;
            case MD_I32: LOAD_KEYS(int32_t) break;
            default: LOAD_KEYS(uint8_t) break;
            }
            if (k < n) select_k(buf, n, k, cmp);
            qsort(buf, (size_t)k, sizeof(item), cmp);
            if (idx)
                for (int64_t t = 0; t < k; t++) idx[ob + t * inner] = buf[t].i;
            if (vals) {
                switch (dt) {
                case MD_F32: STORE_VALS(float) break;
                case MD_I64: STORE_VALS(int64_t) break;
                case MD_I32: STORE_VALS(int32_t) break;
                default: STORE_VALS(uint8_t) break;
                }
            }
        }
        free(buf);
    }
    return fail ? -1 : 0;
}

void md__cpu_unsort_add_f32(const float *g, const int64_t *idx, int64_t outer, int64_t n, int64_t inner,
                            int64_t k, float *gx) {
    for (int64_t o = 0; o < outer; o++)
        for (int64_t t = 0; t < k; t++)
            for (int64_t j = 0; j < inner; j++) {
                int64_t s = (o * k + t) * inner + j;
                gx[(o * n + idx[s]) * inner + j] += g[s];
            }
}

/* ---- torch.sort(descending=True)'s order on the CPU ----
 * PyTorch 1.13 sorts a CPU line with std::sort when stable=False: GCC's
 * libstdc++ introsort (median-of-three pivot moved to the front, unguarded
 * Hoare partition, recursion on the right part, heapsort past depth
 * 2 * floor(log2 n), then one insertion sort over runs of 16) on (value,
 * index) pairs compared by value alone, NaN first. Equal values therefore
 * come out in the order those steps leave them, which is neither stable nor
 * reversed; the steps are repeated here exactly so that ties fall the same
 * way. */
typedef struct tpair { float v; int64_t i; } tpair;

/* KeyValueCompDesc: a goes before b. */
static inline bool t_before(float a, float b) { return (isnan(a) && !isnan(b)) || a > b; }

static void t_adjust_heap(tpair *f, int64_t hole, int64_t len, tpair value) {
    int64_t top = hole, child = hole;
    while (child < (len - 1) / 2) {
        child = 2 * (child + 1);
        if (t_before(f[child].v, f[child - 1].v)) child--;
        f[hole] = f[child];
        hole = child;
    }
    if ((len & 1) == 0 && child == (len - 2) / 2) {
        child = 2 * (child + 1);
        f[hole] = f[child - 1];
        hole = child - 1;
    }
    int64_t parent = (hole - 1) / 2;
    while (hole > top && t_before(f[parent].v, value.v)) {
        f[hole] = f[parent];
        hole = parent;
        parent = (hole - 1) / 2;
    }
    f[hole] = value;
}

/* std::__partial_sort(first, last, last): make_heap, then sort_heap. */
static void t_heapsort(tpair *f, int64_t len) {
    if (len >= 2)
        for (int64_t parent = (len - 2) / 2;; parent--) {
            t_adjust_heap(f, parent, len, f[parent]);
            if (parent == 0) break;
        }
    for (int64_t last = len; last > 1;) {
        last--;
        tpair value = f[last];
        f[last] = f[0];
        t_adjust_heap(f, 0, last, value);
    }
}

static inline void t_swap(tpair *a, tpair *b) {
    tpair t = *a;
    *a = *b;
    *b = t;
}

static void t_introsort(tpair *first, tpair *last, int64_t depth) {
    while (last - first > 16) {
        if (depth == 0) {
            t_heapsort(first, last - first);
            return;
        }
        depth--;
        tpair *a = first + 1, *b = first + (last - first) / 2, *c = last - 1;
        if (t_before(a->v, b->v)) {
            if (t_before(b->v, c->v)) t_swap(first, b);
            else if (t_before(a->v, c->v)) t_swap(first, c);
            else t_swap(first, a);
        } else if (t_before(a->v, c->v)) t_swap(first, a);
        else if (t_before(b->v, c->v)) t_swap(first, c);
        else t_swap(first, b);
        tpair *lo = first + 1, *hi = last;
        for (;;) {
            while (t_before(lo->v, first->v)) lo++;
            hi--;
            while (t_before(first->v, hi->v)) hi--;
            if (!(lo < hi)) break;
            t_swap(lo, hi);
            lo++;
        }
        t_introsort(lo, last, depth);
        last = lo;
    }
}

/* std::__unguarded_linear_insert: some element before p is not after it. */
static inline void t_linear_insert(tpair *p) {
    tpair val = *p;
    while (t_before(val.v, p[-1].v)) {
        *p = p[-1];
        p--;
    }
    *p = val;
}

static void t_insertion_sort(tpair *first, tpair *last) {
    if (first == last) return;
    for (tpair *i = first + 1; i != last; i++) {
        if (t_before(i->v, first->v)) {
            tpair val = *i;
            memmove(first + 1, first, (size_t)(i - first) * sizeof *first);
            *first = val;
        } else {
            t_linear_insert(i);
        }
    }
}

int md__cpu_torch_sort_desc(const float *v, int64_t n, int64_t *idx) {
    if (n <= 0) return 0;
    tpair *p = malloc(sizeof *p * (size_t)n);
    if (!p) return -1;
    for (int64_t i = 0; i < n; i++) p[i] = (tpair){ v[i], i };
    int lg = 63 - __builtin_clzll((unsigned long long)n);
    t_introsort(p, p + n, 2 * (int64_t)lg);
    if (n > 16) {
        t_insertion_sort(p, p + 16);
        for (tpair *i = p + 16; i != p + n; i++) t_linear_insert(i);
    } else {
        t_insertion_sort(p, p + n);
    }
    for (int64_t i = 0; i < n; i++) idx[i] = p[i].i;
    free(p);
    return 0;
}
