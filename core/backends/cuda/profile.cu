/* MMDET_CUDA_PROFILE=1 (or N: skip the first N - 1 synchronisations as
 * warm-up): every kernel entry of the table is wrapped so that
 * CUDA events time it on the stream; at exit the totals per entry (GPU time,
 * calls, share) are printed to stderr, largest first. For finding where a
 * step's time goes without a profiler; off by default (events cost a little). */
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include "cuda_internal.h"

namespace {

struct span { int id; cudaEvent_t a, b; };
constexpr int kMaxEntries = 96;
void *g_orig[kMaxEntries];
const char *g_name[kMaxEntries];
std::vector<span> g_spans;
std::vector<cudaEvent_t> g_free_events;

cudaEvent_t take_event() {
    cudaEvent_t e = nullptr;
    if (!g_free_events.empty()) {
        e = g_free_events.back();
        g_free_events.pop_back();
    } else if (cudaEventCreate(&e) != cudaSuccess) {
        e = nullptr;
    }
    return e;
}

/* Folds finished spans into the totals, so the event list stays short. */
double g_ms[kMaxEntries];
long g_calls[kMaxEntries];

void drain(bool wait) {
    if (wait) cudaStreamSynchronize(md__cuda_stream());
    size_t k = 0;
    for (size_t i = 0; i < g_spans.size(); i++) {
        span &s = g_spans[i];
        if (!wait && cudaEventQuery(s.b) != cudaSuccess) {
            g_spans[k++] = s;
            continue;
        }
        float ms = 0;
        if (cudaEventElapsedTime(&ms, s.a, s.b) == cudaSuccess) g_ms[s.id] += ms;
        g_calls[s.id]++;
        g_free_events.push_back(s.a);
        g_free_events.push_back(s.b);
    }
    g_spans.resize(k);
}

void report() {
    drain(true);
    std::vector<int> ids;
    double total = 0;
    for (int i = 0; i < kMaxEntries; i++)
        if (g_calls[i]) ids.push_back(i), total += g_ms[i];
    std::sort(ids.begin(), ids.end(), [](int x, int y) { return g_ms[x] > g_ms[y]; });
    fprintf(stderr, "cuda profile: %.1f ms of kernel time in %zu entries\n", total, ids.size());
    for (int id : ids)
        fprintf(stderr, "  %-24s %10.2f ms %7ld calls %5.1f%%\n", g_name[id], g_ms[id], g_calls[id],
                total > 0 ? 100.0 * g_ms[id] / total : 0.0);
}

bool g_registered;
int g_skip_syncs;   /* syncs still to come before timing counts (warm-up) */

/* The table's sync: spans recorded before the first counted sync are warm-up
 * (module loading, algorithm choice) and are dropped. */
int (*g_sync)(void);
int timed_sync(void) {
    int rc = g_sync();
    if (g_skip_syncs > 0 && --g_skip_syncs >= 0) {
        drain(true);
        for (int i = 0; i < kMaxEntries; i++) g_ms[i] = 0, g_calls[i] = 0;
    }
    return rc;
}

template <int ID, typename R, typename... A>
R timed(A... args) {
    if (!g_registered) {   /* after the CUDA runtime's own exit handler, so it runs first */
        g_registered = true;
        atexit(report);
    }
    cudaEvent_t a = take_event(), b = take_event();
    if (a) cudaEventRecord(a, md__cuda_stream());
    R r = reinterpret_cast<R (*)(A...)>(g_orig[ID])(args...);
    if (a && b) {
        cudaEventRecord(b, md__cuda_stream());
        g_spans.push_back(span{ ID, a, b });
        if (g_spans.size() > 4096) drain(false);
    }
    return r;
}

template <int ID, typename R, typename... A>
void wrap(R (*&fp)(A...), const char *name) {
    static_assert(ID < kMaxEntries, "raise kMaxEntries");
    if (!fp) return;
    g_orig[ID] = reinterpret_cast<void *>(fp);
    g_name[ID] = name;
    fp = &timed<ID, R, A...>;
}

}   // namespace

#define WRAP(field) wrap<__COUNTER__>(t->field, #field)

extern "C" void md__cuda_profile_wrap(md_backend *t) {
    const char *env = getenv("MMDET_CUDA_PROFILE");
    if (!env || !*env || !strcmp(env, "0")) return;
    /* MMDET_CUDA_PROFILE=N with N > 1: the first N - 1 synchronisations end
     * the warm-up (a benchmark synchronises once per step) */
    g_skip_syncs = atoi(env) > 1 ? atoi(env) - 1 : 0;
    g_sync = t->sync;
    t->sync = timed_sync;
    WRAP(fill);
    WRAP(copy_strided);
    WRAP(binary_f32);
    WRAP(unary_f32);
    WRAP(unary_f32_backward);
    WRAP(add_inplace_f32);
    WRAP(sum_f32);
    WRAP(spread_f32);
    WRAP(sgemm);
    WRAP(conv2d_forward);
    WRAP(conv2d_backward_input);
    WRAP(conv2d_backward_weight);
    WRAP(conv2d_backward_bias);
    WRAP(batch_norm_train);
    WRAP(batch_norm_eval);
    WRAP(batch_norm_backward);
    WRAP(maxpool2d_forward);
    WRAP(maxpool2d_backward);
    WRAP(sgd_step);
    WRAP(adam_step);
    WRAP(sgd_step_multi);
    WRAP(adam_step_multi);
    WRAP(zero_f32_multi);
    WRAP(lerp_f32);
    WRAP(swap_f32);
    WRAP(unscale_f32_multi);
    WRAP(unary_int);
    WRAP(mask_targets);
    WRAP(mask_paste);
    WRAP(rle_encode);
}
