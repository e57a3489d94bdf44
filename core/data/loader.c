/* The data loader: mmdet's samplers, worker threads and a bounded queue.
 *
 * Batches come out in sampler order whatever the worker count: worker
 * threads claim batch numbers in order, but a worker may only claim batch b
 * when b < consumed + prefetch, and each batch lands in slot b % prefetch.
 * Every sample's RNG is derived from (seed, rank, epoch, position in the
 * epoch), so augmentations do not depend on which thread ran them.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "mmdet/data.h"

static uint64_t mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

MD_API void md_sample_rng(md_rng *r, uint64_t seed, int epoch, int64_t index) {
    uint64_t h = mix64(seed);
    h = mix64(h ^ (uint64_t)(uint32_t)epoch);
    h = mix64(h ^ (uint64_t)index);
    md_rng_seed(r, h);
}

/* ---------------------------------------------------------------- samplers */

static void shuffle(int64_t *a, int64_t n, md_rng *r) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = md_rng_int(r, i + 1), t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

MD_API int64_t md_sampler_indices(const md_sampler_cfg *cfg, const uint8_t *flag, int64_t len, int epoch,
                                  int64_t **out, md_error *err) {
    int spg = cfg->samples_per_gpu > 0 ? cfg->samples_per_gpu : 1;
    int ws = cfg->world_size > 0 ? cfg->world_size : 1, rank = cfg->rank;
    if (rank < 0 || rank >= ws)
        return md_failc(err, MD_ERR_CONFIG, "sampler: rank %d outside world size %d", rank, ws);
    if (len <= 0) {
        *out = malloc(sizeof **out);
        return *out ? 0 : md_failc(err, MD_ERR_NOMEM, "sampler: out of memory");
    }
    md_rng rng;
    md_sample_rng(&rng, cfg->seed, epoch, -1);
    if (!cfg->shuffle) {
        /* world 1: SequentialSampler; else DistributedSampler(shuffle=False):
         * pad by repeating the head, then every ws-th from rank. */
        int64_t num = (len + ws - 1) / ws;
        int64_t *idx = malloc((size_t)num * sizeof *idx);
        if (!idx) return md_failc(err, MD_ERR_NOMEM, "sampler: out of memory");
        for (int64_t k = 0; k < num; k++) idx[k] = (rank + k * ws) % len;
        *out = idx;
        return num;
    }
    /* Group sizes over the flag values (0/1, any byte allowed). */
    int64_t sizes[256] = { 0 };
    for (int64_t i = 0; i < len; i++) sizes[flag ? flag[i] : 0]++;
    int64_t total = 0;
    for (int g = 0; g < 256; g++) {
        if (!sizes[g]) continue;
        int64_t per = ws == 1 ? spg : (int64_t)spg * ws;
        total += (sizes[g] + per - 1) / per * per;
    }
    int64_t *all = malloc((size_t)total * sizeof *all), *grp = malloc((size_t)len * sizeof *grp);
    if (!all || !grp) {
        free(all);
        free(grp);
        return md_failc(err, MD_ERR_NOMEM, "sampler: out of memory for %lld indices", (long long)total);
    }
    int64_t n = 0;
    for (int g = 0; g < 256; g++) {
        if (!sizes[g]) continue;
        int64_t m = 0;
        for (int64_t i = 0; i < len; i++)
            if ((flag ? flag[i] : 0) == g) grp[m++] = i;
        shuffle(grp, m, &rng);
        int64_t per = ws == 1 ? spg : (int64_t)spg * ws;
        int64_t want = (m + per - 1) / per * per;
        memcpy(all + n, grp, (size_t)m * sizeof *grp);
        /* GroupSampler pads with random picks of the group; the
         * distributed one by repeating the shuffled group. */
        for (int64_t k = m; k < want; k++) all[n + k] = ws == 1 ? grp[md_rng_int(&rng, m)] : grp[(k - m) % m];
        n += want;
    }
    free(grp);
    /* Permute whole batches so each batch stays within one group. */
    int64_t nb = total / spg;
    int64_t *perm = malloc((size_t)(nb ? nb : 1) * sizeof *perm), *res = malloc((size_t)total * sizeof *res);
    if (!perm || !res) {
        free(all);
        free(perm);
        free(res);
        return md_failc(err, MD_ERR_NOMEM, "sampler: out of memory");
    }
    for (int64_t b = 0; b < nb; b++) perm[b] = b;
    shuffle(perm, nb, &rng);
    for (int64_t b = 0; b < nb; b++) memcpy(res + b * spg, all + perm[b] * spg, (size_t)spg * sizeof *res);
    free(all);
    free(perm);
    int64_t num = total / ws;
    if (rank) memmove(res, res + num * rank, (size_t)num * sizeof *res);
    *out = res;
    return num;
}

/* ------------------------------------------------------------------ loader */

typedef struct slot {
    int64_t batch;          /* which batch is here; -1 when empty */
    md_batch *b;
    bool failed;
    md_error err;
} slot;

struct md_loader {
    const md_dataset *ds;
    md_loader_cfg cfg;
    /* epoch state */
    int epoch;
    int64_t *order, n_order, n_batches;
    /* threads */
    pthread_t *threads;
    int n_threads;
    pthread_mutex_t mu;
    pthread_cond_t cv_ready, cv_space;
    slot *slots;
    int n_slots;
    int64_t next_claim, consumed;
    bool stop, running;
};

static md_batch *load_batch(md_loader *l, int64_t b, md_error *err) {
    int spg = l->cfg.samples_per_gpu;
    int64_t start = b * spg, end = start + spg;
    if (end > l->n_order) end = l->n_order;
    int n = (int)(end - start);
    md_sample *s = calloc((size_t)n, sizeof *s);
    if (!s) {
        md_failc(err, MD_ERR_NOMEM, "loader: out of memory");
        return NULL;
    }
    md_batch *out = NULL;
    int got = 0;
    for (; got < n; got++) {
        md_rng rng;
        int64_t pos = start + got;
        /* The rank takes part so ranks augment differently. */
        md_sample_rng(&rng, l->cfg.seed ^ ((uint64_t)l->cfg.rank << 48), l->epoch, pos);
        if (md_dataset_get(l->ds, l->order[pos], &rng, &s[got], err)) {
            /* the caller names the batch and epoch */
            md_error_wrap(err, "loading dataset index %lld", (long long)l->order[pos]);
            goto done;
        }
    }
    /* A test pipeline's MultiScaleFlipAug leaves its variants in augs:
     * collate makes one sub-batch per variant. */
    out = md_collate(s, n, l->cfg.size_divisor, err);
done:
    for (int i = 0; i < got; i++) md_sample_clear(&s[i]);
    free(s);
    return out;
}

static void *worker_main(void *arg) {
    md_loader *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->stop && l->next_claim < l->n_batches && l->next_claim >= l->consumed + l->n_slots)
            pthread_cond_wait(&l->cv_space, &l->mu);
        if (l->stop || l->next_claim >= l->n_batches) break;
        int64_t b = l->next_claim++;
        pthread_mutex_unlock(&l->mu);
        md_error e;
        md_error_clear(&e);
        md_batch *batch = load_batch(l, b, &e);
        pthread_mutex_lock(&l->mu);
        slot *sl = &l->slots[b % l->n_slots];
        sl->batch = b;
        sl->b = batch;
        sl->failed = batch == NULL;
        sl->err = e;
        pthread_cond_broadcast(&l->cv_ready);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static void stop_workers(md_loader *l) {
    if (!l->running) return;
    pthread_mutex_lock(&l->mu);
    l->stop = true;
    pthread_cond_broadcast(&l->cv_space);
    pthread_mutex_unlock(&l->mu);
    for (int i = 0; i < l->n_threads; i++) pthread_join(l->threads[i], NULL);
    for (int i = 0; i < l->n_slots; i++) {
        md_batch_free(l->slots[i].b);
        l->slots[i].b = NULL;
        l->slots[i].batch = -1;
    }
    l->running = false;
    l->stop = false;
}

MD_API md_loader *md_loader_new(const md_dataset *ds, const md_loader_cfg *cfg, md_error *err) {
    if (!ds) {
        md_failc(err, MD_ERR_CONFIG, "loader: no dataset");
        return NULL;
    }
    md_loader *l = calloc(1, sizeof *l);
    if (!l) {
        md_failc(err, MD_ERR_NOMEM, "loader: out of memory");
        return NULL;
    }
    l->ds = ds;
    l->cfg = cfg ? *cfg : MD_LOADER_CFG_DEFAULT;
    if (l->cfg.samples_per_gpu < 1) {
        md_failc(err, MD_ERR_CONFIG, "loader: samples_per_gpu must be >= 1, got %d", l->cfg.samples_per_gpu);
        free(l);
        return NULL;
    }
    if (l->cfg.workers_per_gpu < 0) l->cfg.workers_per_gpu = 0;
    if (l->cfg.world_size < 1) l->cfg.world_size = 1;
    if (l->cfg.size_divisor < 1) l->cfg.size_divisor = 1;
    l->n_threads = l->cfg.workers_per_gpu;
    l->n_slots = l->cfg.prefetch > 0 ? l->cfg.prefetch : 2 * (l->n_threads ? l->n_threads : 1);
    l->threads = calloc((size_t)(l->n_threads ? l->n_threads : 1), sizeof *l->threads);
    l->slots = calloc((size_t)l->n_slots, sizeof *l->slots);
    if (!l->threads || !l->slots) {
        free(l->threads);
        free(l->slots);
        free(l);
        md_failc(err, MD_ERR_NOMEM, "loader: out of memory");
        return NULL;
    }
    for (int i = 0; i < l->n_slots; i++) l->slots[i].batch = -1;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv_ready, NULL);
    pthread_cond_init(&l->cv_space, NULL);
    l->epoch = -1;
    return l;
}

static int64_t batches_for(const md_loader *l, int64_t n) {
    int spg = l->cfg.samples_per_gpu;
    return l->cfg.drop_last ? n / spg : (n + spg - 1) / spg;
}

MD_API int64_t md_loader_len(const md_loader *l) {
    if (l->order) return l->n_batches;
    int64_t len = md_dataset_len(l->ds);
    md_sampler_cfg sc = { l->cfg.samples_per_gpu, l->cfg.shuffle, l->cfg.rank, l->cfg.world_size, l->cfg.seed };
    if (!sc.shuffle) return batches_for(l, (len + sc.world_size - 1) / sc.world_size);
    /* Same count as md_sampler_indices without drawing it. */
    int64_t sizes[256] = { 0 }, total = 0;
    for (int64_t i = 0; i < len; i++) sizes[l->ds->flag ? l->ds->flag[i] : 0]++;
    int64_t per = sc.world_size == 1 ? sc.samples_per_gpu : (int64_t)sc.samples_per_gpu * sc.world_size;
    for (int g = 0; g < 256; g++) total += (sizes[g] + per - 1) / per * per;
    return batches_for(l, total / sc.world_size);
}

MD_API int md_loader_start_epoch(md_loader *l, int epoch, md_error *err) {
    stop_workers(l);
    free(l->order);
    l->order = NULL;
    md_sampler_cfg sc = { l->cfg.samples_per_gpu, l->cfg.shuffle, l->cfg.rank, l->cfg.world_size, l->cfg.seed };
    int64_t n = md_sampler_indices(&sc, l->ds->flag, md_dataset_len(l->ds), epoch, &l->order, err);
    if (n < 0) return -1;
    l->n_order = n;
    l->n_batches = batches_for(l, n);
    l->epoch = epoch;
    l->next_claim = l->consumed = 0;
    l->stop = false;
    for (int i = 0; i < l->n_threads; i++) {
        if (pthread_create(&l->threads[i], NULL, worker_main, l)) {
            l->running = true;
            int started = i;
            l->n_threads = started;
            stop_workers(l);
            l->n_threads = l->cfg.workers_per_gpu;
            return md_failc(err, MD_ERR_GENERIC, "loader: cannot start worker thread %d", i);
        }
    }
    l->running = l->n_threads > 0;
    return 0;
}

MD_API md_batch *md_loader_next(md_loader *l, md_error *err) {
    if (!l->order) {
        md_failc(err, MD_ERR_GENERIC, "loader: md_loader_start_epoch was not called");
        return NULL;
    }
    if (l->consumed >= l->n_batches) return NULL;
    if (l->n_threads == 0) return load_batch(l, l->consumed++, err);
    pthread_mutex_lock(&l->mu);
    slot *sl = &l->slots[l->consumed % l->n_slots];
    while (sl->batch != l->consumed) pthread_cond_wait(&l->cv_ready, &l->mu);
    md_batch *b = sl->b;
    bool failed = sl->failed;
    if (failed && err) *err = sl->err;
    sl->b = NULL;
    sl->batch = -1;
    l->consumed++;
    pthread_cond_broadcast(&l->cv_space);
    pthread_mutex_unlock(&l->mu);
    return failed ? NULL : b;
}

MD_API void md_loader_free(md_loader *l) {
    if (!l) return;
    stop_workers(l);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv_ready);
    pthread_cond_destroy(&l->cv_space);
    free(l->threads);
    free(l->slots);
    free(l->order);
    free(l);
}
