/* TensorboardLoggerHook: mmcv's logger of scalars for TensorBoard. Every
 * `interval` iterations (and for validation results) each value of the log
 * buffer but time/data_time becomes a scalar tagged "<mode>/<key>"
 * (train/loss_cls, val/bbox_mAP), with "learning_rate" and "momentum",
 * at step iter + 1, in <log_dir>/events.out.tfevents.<seconds>.<host>.<pid>.<n>
 * (log_dir default <work_dir>/tf_logs). The file is TensorBoard's: TFRecord
 * records (length, masked CRC32C of it, data, masked CRC32C of the data),
 * each an Event protocol buffer (proto/tensorboard_event.proto), the first
 * one naming the format ("brain.Event:2"). Each record is flushed as it is
 * written, so a crash loses nothing already logged. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <mmdet/mmdet.h>
#include "tensorboard_event.pb-c.h"

typedef struct tb_logger {
    md_hook base;
    int64_t interval;
    bool ignore_last, reset_flag, by_epoch;
    const char *log_dir;   /* borrowed from the config while building */
    char *dir;             /* the folder in use */
    char path[4096];       /* the event file */
    FILE *f;
} tb_logger;

static const md_key keys[] = {
    { "interval", MD_KEY_INT, "10", "log every N iterations", false, MD_AT(tb_logger, interval), .min = "1" },
    { "ignore_last", MD_KEY_BOOL, "true", "skip the partial interval at an epoch's end", false,
      MD_AT(tb_logger, ignore_last) },
    { "reset_flag", MD_KEY_BOOL, "false", "clear the log buffer after logging (the last logger always does)", false,
      MD_AT(tb_logger, reset_flag) },
    { "by_epoch", MD_KEY_BOOL, "true", NULL, false, MD_AT(tb_logger, by_epoch) },
    { "log_dir", MD_KEY_STRING, NULL, "folder of the event file (default: <work_dir>/tf_logs)", false,
      MD_AT(tb_logger, log_dir) },
    { 0 } };

/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord
 * framing needs; exported so the tests check it against RFC 3720's vectors. */
static uint32_t crc_table[256];
__attribute__((constructor)) static void crc_init(void) {   /* at load, before any thread uses it */
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
}
uint32_t tensorboard_crc32c(const void *data, size_t n);
uint32_t tensorboard_crc32c(const void *data, size_t n) {
    const unsigned char *p = data;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* TFRecord's masking: rotate right by 15 and add a constant, so a CRC of
 * data that itself holds CRCs stays well distributed. */
static uint32_t masked_crc(const void *data, size_t n) {
    uint32_t c = tensorboard_crc32c(data, n);
    return ((c >> 15) | (c << 17)) + 0xA282EAD8u;
}

static void put_le(unsigned char *p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static double now(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6;
}

/* One Event as one TFRecord record, flushed. */
static int write_event(tb_logger *l, const Tensorflow__Event *ev, md_error *err) {
    if (!l->f) return 0;   /* not rank 0 */
    size_t n = tensorflow__event__get_packed_size(ev);
    unsigned char stack[512], *buf = n <= sizeof stack ? stack : malloc(n);
    if (!buf) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    tensorflow__event__pack(ev, buf);
    unsigned char head[12], tail[4];
    put_le(head, n, 8);
    put_le(head + 8, masked_crc(head, 8), 4);
    put_le(tail, masked_crc(buf, n), 4);
    bool ok = fwrite(head, 1, sizeof head, l->f) == sizeof head && fwrite(buf, 1, n, l->f) == n &&
              fwrite(tail, 1, sizeof tail, l->f) == sizeof tail && fflush(l->f) == 0;
    if (buf != stack) free(buf);
    if (!ok) return md_failc(err, MD_ERR_IO, "writing %s: %s", l->path, strerror(errno));
    return 0;
}

static int write_scalar(tb_logger *l, const char *tag, double v, int64_t step, md_error *err) {
    Tensorflow__Summary__Value val = TENSORFLOW__SUMMARY__VALUE__INIT;
    val.tag = (char *)tag;
    val.value_case = TENSORFLOW__SUMMARY__VALUE__VALUE_SIMPLE_VALUE;
    val.simple_value = (float)v;
    Tensorflow__Summary__Value *vals[1] = { &val };
    Tensorflow__Summary sum = TENSORFLOW__SUMMARY__INIT;
    sum.n_value = 1;
    sum.value = vals;
    Tensorflow__Event ev = TENSORFLOW__EVENT__INIT;
    ev.wall_time = now();
    ev.step = step;
    ev.what_case = TENSORFLOW__EVENT__WHAT_SUMMARY;
    ev.summary = &sum;
    return write_event(l, &ev, err);
}

static int before_run(md_hook *hk, md_runner *r, md_error *err) {
    tb_logger *l = (tb_logger *)hk;
    if (md_dist_rank(md_runner_ctx(r)) != 0) return 0;   /* mmcv's master_only */
    if (!l->dir) {
        size_t n = strlen(md_runner_work_dir(r)) + sizeof "/tf_logs";
        if (!(l->dir = malloc(n))) return md_failc(err, MD_ERR_NOMEM, "out of memory");
        snprintf(l->dir, n, "%s/tf_logs", md_runner_work_dir(r));
    }
    if (md_fs_mkdirs(l->dir, err) != 0)
        return md_error_wrap(err, "cannot create log_dir %s", l->dir);
    /* named as TensorBoard's EventFileWriter names its files; the counter
     * keeps two writers of one process apart */
    static int serial;
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = 0;
    snprintf(l->path, sizeof l->path, "%s/events.out.tfevents.%010lld.%s.%d.%d", l->dir, (long long)time(NULL), host,
             (int)getpid(), __atomic_fetch_add(&serial, 1, __ATOMIC_RELAXED));
    l->f = fopen(l->path, "wbx");
    if (!l->f)
        return md_failc(err, MD_ERR_IO, "cannot create %s: %s", l->path, strerror(errno));
    Tensorflow__Event ev = TENSORFLOW__EVENT__INIT;
    ev.wall_time = now();
    ev.what_case = TENSORFLOW__EVENT__WHAT_FILE_VERSION;
    ev.file_version = "brain.Event:2";
    return write_event(l, &ev, err);
}

/* mmcv's get_mode: a val phase, or values without "time" (an EvalHook's
 * metrics after training iterations) are "val". */
static bool only_metrics(md_runner *r) { return md_runner_log_count(r) && isnan(md_runner_log_average(r, "time")); }

/* mmcv's log: get_loggable_tags (buffer values but time/data_time with the
 * mode prefix, then learning_rate and momentum, unprefixed) at get_iter
 * (iter + 1, whatever by_epoch says); then the buffer is cleared when this
 * logger resets it. */
static int log_tags(tb_logger *l, md_runner *r, md_error *err) {
    const char *mode = !strcmp(md_runner_mode(r), "val") || only_metrics(r) ? "val" : "train";
    int64_t step = md_runner_iter(r) + 1;
    char tag[128];
    for (int i = 0; i < md_runner_log_count(r); i++) {
        const char *key = md_runner_log_key(r, i);
        if (!strcmp(key, "time") || !strcmp(key, "data_time")) continue;
        snprintf(tag, sizeof tag, "%s/%s", mode, key);
        if (write_scalar(l, tag, md_runner_log_average(r, key), step, err) != 0) return -1;
    }
    md_optimizer *o = md_runner_optimizer(r);
    if (o && md_optimizer_group_count(o) > 0) {
        if (write_scalar(l, "learning_rate", md_optimizer_group_lr(o, 0), step, err) != 0 ||
            write_scalar(l, "momentum", md_optimizer_momentum(o), step, err) != 0)
            return -1;
    }
    if (l->reset_flag || md_runner_last_logger(r) == &l->base) md_runner_log_clear(r);
    return 0;
}

static int after_train_iter(md_hook *hk, md_runner *r, md_error *err) {
    tb_logger *l = (tb_logger *)hk;
    int64_t inner = md_runner_inner_iter(r) + 1;
    bool every = l->by_epoch ? inner % l->interval == 0 : (md_runner_iter(r) + 1) % l->interval == 0;
    bool end = l->by_epoch && inner == md_runner_epoch_len(r) && !l->ignore_last;
    if (only_metrics(r) || every || end) return log_tags(l, r, err);
    return 0;
}

static int after_train_epoch(md_hook *hk, md_runner *r, md_error *err) {
    tb_logger *l = (tb_logger *)hk;
    if (only_metrics(r)) return log_tags(l, r, err);   /* an EvalHook's metrics */
    /* a partial interval is not carried over */
    if (l->reset_flag || md_runner_last_logger(r) == &l->base) md_runner_log_clear(r);
    return 0;
}

static int after_val_epoch(md_hook *hk, md_runner *r, md_error *err) {
    if (md_runner_log_count(r)) return log_tags((tb_logger *)hk, r, err);
    return 0;
}

static int after_run(md_hook *hk, md_runner *r, md_error *err) {
    (void)r;
    tb_logger *l = (tb_logger *)hk;
    if (l->f && fclose(l->f) != 0) {
        l->f = NULL;
        return md_failc(err, MD_ERR_IO, "closing %s: %s", l->path, strerror(errno));
    }
    l->f = NULL;
    return 0;
}

static void destroy(md_hook *hk) {
    tb_logger *l = (tb_logger *)hk;
    if (l->f) fclose(l->f);
    free(l->dir);
    free(l);
}

static const md_hook_iface iface = {
    .before_run = before_run, .after_run = after_run, .after_train_iter = after_train_iter,
    .after_train_epoch = after_train_epoch, .after_val_epoch = after_val_epoch, .destroy = destroy,
    .default_priority = MD_PRIORITY_VERY_LOW,
};

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    tb_logger *l = calloc(1, sizeof *l);
    if (!l) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    l->base.iface = &iface;
    if (md_cfg_read_struct(cfg, keys, l, "TensorboardLoggerHook", err)) {
        free(l);
        return NULL;
    }
    /* the config may not outlive the hook: keep a copy of the folder */
    if (l->log_dir && l->log_dir[0] && strcmp(l->log_dir, "None") && !(l->dir = strdup(l->log_dir))) {
        free(l);
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    l->log_dir = NULL;
    return l;
}

MD_PLUGIN("tensorboard_logger", "1.0", "Apache-2.0");
static const md_class cls = { .name = "TensorboardLoggerHook", .keys = keys, .build = build,
                              MD_IFACE(&iface, MD_IFACE_HOOK),
                              .doc = "scalars in a TensorBoard event file under <work_dir>/tf_logs" };
MD_REGISTER("hooks", cls)
