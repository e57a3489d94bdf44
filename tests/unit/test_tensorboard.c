/* TensorboardLoggerHook (plugins/hooks/tensorboard_logger.c). The event
 * files are read back by a reader of this file, written from the format's
 * description and independent of the plugin: TFRecord framing with its own
 * (bitwise) CRC32C, and protobuf-c's generic unpack with the message
 * definitions of proto/tensorboard_event.proto. The reader is itself checked
 * on a file TensorBoard's writer made (tests/golden/tensorboard_golden.py),
 * and both CRC32C implementations on RFC 3720's vectors. What the hook wrote
 * is compared with the JSON log of the same run: mmcv writes the same buffer
 * values through its TextLoggerHook and TensorboardLoggerHook. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>
#include "tensorboard_event.pb-c.h"
#include "testlib.h"
#include "toy_regression.h"

/* ------------------------------------------------------------ reader -- */

/* CRC-32C bit by bit (no table), the reflected Castagnoli polynomial. */
static uint32_t crc32c_bitwise(const unsigned char *p, size_t n) {
    uint32_t c = ~0u;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
    }
    return ~c;
}
static uint32_t unmask(uint32_t m) {
    uint32_t r = m - 0xA282EAD8u;
    return (r >> 17) | (r << 15);
}
static uint64_t get_le(const unsigned char *p, int bytes) {
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

#define MAX_SCALARS 512
typedef struct scalar { char tag[96]; int64_t step; float value; double wall; } scalar;
typedef struct events {
    char version[32];      /* file_version of the first record */
    int records, skipped;  /* all records; summary values that are not simple_value */
    int n;
    scalar s[MAX_SCALARS];
} events;

/* Reads a whole event file into ev, failing the test on a bad length,
 * a CRC mismatch, a truncated record, or a record that is not an Event. */
static void read_events(const char *path, events *ev) {
    memset(ev, 0, sizeof *ev);
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    unsigned char head[12], tail[4];
    size_t got;
    while ((got = fread(head, 1, sizeof head, f)) > 0) {
        cr_assert_eq(got, sizeof head, "%s: truncated record header after %d records", path, ev->records);
        uint64_t len = get_le(head, 8);
        cr_assert_eq(unmask((uint32_t)get_le(head + 8, 4)), crc32c_bitwise(head, 8), "%s: record %d: length CRC",
                     path, ev->records);
        cr_assert_lt(len, 1u << 20, "%s: record %d: length %llu", path, ev->records, (unsigned long long)len);
        unsigned char *data = malloc(len ? len : 1);
        cr_assert_eq(fread(data, 1, len, f), len, "%s: record %d truncated", path, ev->records);
        cr_assert_eq(fread(tail, 1, 4, f), 4u, "%s: record %d: no data CRC", path, ev->records);
        cr_assert_eq(unmask((uint32_t)get_le(tail, 4)), crc32c_bitwise(data, len), "%s: record %d: data CRC", path,
                     ev->records);
        Tensorflow__Event *e =
            (Tensorflow__Event *)protobuf_c_message_unpack(&tensorflow__event__descriptor, NULL, len, data);
        cr_assert(e, "%s: record %d is not an Event", path, ev->records);
        if (ev->records == 0) {
            cr_assert_eq(e->what_case, TENSORFLOW__EVENT__WHAT_FILE_VERSION, "%s: the first record has no file_version",
                         path);
            snprintf(ev->version, sizeof ev->version, "%s", e->file_version);
        } else {
            cr_assert_eq(e->what_case, TENSORFLOW__EVENT__WHAT_SUMMARY, "%s: record %d has no summary", path,
                         ev->records);
            for (size_t i = 0; i < e->summary->n_value; i++) {
                const Tensorflow__Summary__Value *v = e->summary->value[i];
                if (v->value_case != TENSORFLOW__SUMMARY__VALUE__VALUE_SIMPLE_VALUE) {
                    ev->skipped++;
                    continue;
                }
                cr_assert_lt(ev->n, MAX_SCALARS);
                scalar *s = &ev->s[ev->n++];
                snprintf(s->tag, sizeof s->tag, "%s", v->tag);
                s->step = e->step;
                s->value = v->simple_value;
                s->wall = e->wall_time;
            }
        }
        protobuf_c_message_free_unpacked(&e->base, NULL);
        free(data);
        ev->records++;
    }
    fclose(f);
}

/* The one event file in dir (fails unless there is exactly one); its name
 * into name when given. */
static void event_file(const char *dir, char *path, size_t n, char *name, size_t nn) {
    DIR *d = opendir(dir);
    cr_assert(d, "no folder %s", dir);
    int count = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (!strncmp(de->d_name, "events.out.tfevents.", 20)) {
            snprintf(path, n, "%s/%s", dir, de->d_name);
            if (name) snprintf(name, nn, "%s", de->d_name);
            count++;
        }
    closedir(d);
    cr_assert_eq(count, 1, "%d event files in %s", count, dir);
}

/* ------------------------------------------------------------ CRC32C -- */

typedef struct crc_vector { unsigned char data[48]; size_t n; uint32_t crc; } crc_vector;
/* RFC 3720 B.4 (the CRC's bytes as the RFC lists them, little-endian), and
 * the usual "123456789" check value. */
static void crc_vectors(crc_vector *v) {
    memset(v, 0, sizeof(crc_vector) * 6);
    v[0].n = 32, v[0].crc = 0x8A9136AAu;   /* 32 bytes of zeros */
    v[1].n = 32, v[1].crc = 0x62A8AB43u;   /* 32 bytes of 0xff */
    memset(v[1].data, 0xff, 32);
    v[2].n = 32, v[2].crc = 0x46DD794Eu;   /* 0, 1, ..., 31 */
    v[3].n = 32, v[3].crc = 0x113FDB5Cu;   /* 31, 30, ..., 0 */
    for (int i = 0; i < 32; i++) v[2].data[i] = (unsigned char)i, v[3].data[i] = (unsigned char)(31 - i);
    static const unsigned char pdu[48] = {   /* an iSCSI read command PDU */
        0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
        0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00 };
    memcpy(v[4].data, pdu, 48);
    v[4].n = 48, v[4].crc = 0xD9963A56u;
    memcpy(v[5].data, "123456789", 9);
    v[5].n = 9, v[5].crc = 0xE3069283u;
}

Test(tensorboard, crc32c_rfc3720_vectors) {
    crc_vector v[6];
    crc_vectors(v);
    /* the plugin's own function, looked up in the loaded plugin */
    md_ctx *ctx = test_ctx(0, (const char *const[]){ "plugins/hooks/tensorboard_logger.so", NULL });
    void *so = dlopen("plugins/hooks/tensorboard_logger.so", RTLD_NOW | RTLD_NOLOAD);
    cr_assert(so, "%s", dlerror());
    uint32_t (*plugin_crc)(const void *, size_t) = (uint32_t(*)(const void *, size_t))dlsym(so, "tensorboard_crc32c");
    cr_assert(plugin_crc, "tensorboard_crc32c not exported");
    for (int i = 0; i < 6; i++) {
        cr_expect_eq(crc32c_bitwise(v[i].data, v[i].n), v[i].crc, "reader, vector %d", i);
        cr_expect_eq(plugin_crc(v[i].data, v[i].n), v[i].crc, "plugin, vector %d", i);
    }
    /* and on odd lengths and offsets, against each other */
    unsigned char buf[300];
    for (int i = 0; i < 300; i++) buf[i] = (unsigned char)(i * 131 + 7);
    for (size_t n = 0; n < 300; n += 37)
        cr_expect_eq(plugin_crc(buf + n % 5, n), crc32c_bitwise(buf + n % 5, n), "length %zu", n);
    dlclose(so);
    md_ctx_free(ctx);
}

/* ------------------------------------------- the real writer's file -- */

Test(tensorboard, reader_parses_tensorboards_own_file) {
    events *ev = malloc(sizeof *ev);
    read_events("tests/fixtures/tensorboard_real.events", ev);
    md_st *st = golden_open("tensorboard_real");
    cr_assert_str_eq(ev->version, md_st_metadata(st, "file_version"));
    const int64_t *steps = golden_data(st, md_st_find(st, "steps"));
    const float *values = golden_data(st, md_st_find(st, "values"));
    int64_t shape[1];
    md_st_shape(st, md_st_find(st, "steps"), shape);
    cr_assert_eq(ev->n, shape[0], "%d scalars, the writer wrote %lld", ev->n, (long long)shape[0]);
    cr_assert_eq(ev->skipped, 1, "the text summary is skipped");
    char tags[1024];
    snprintf(tags, sizeof tags, "%s", md_st_metadata(st, "tags"));
    char *save = NULL, *tag = strtok_r(tags, "\n", &save);
    for (int i = 0; i < ev->n; i++, tag = strtok_r(NULL, "\n", &save)) {
        cr_assert(tag);
        cr_expect_str_eq(ev->s[i].tag, tag, "scalar %d", i);
        cr_expect_eq(ev->s[i].step, steps[i], "scalar %d (%s)", i, tag);
        cr_expect(!memcmp(&ev->s[i].value, &values[i], sizeof(float)), "scalar %d (%s): %g, want %g", i, tag,
                  ev->s[i].value, values[i]);
        cr_expect_gt(ev->s[i].wall, 1.5e9);
    }
    md_st_close(st);
    free(ev);
}

/* ------------------------------------------------- JSON log lines -- */

#define MAX_KEYS 32
typedef struct json_line { char mode[8]; int n; char keys[MAX_KEYS][48]; double vals[MAX_KEYS]; } json_line;

/* The flat {"key": number-or-string, ...} lines of a .log.json after its
 * header line; returns the count. */
static int read_json_log(const char *path, json_line *out, int max) {
    FILE *f = fopen(path, "r");
    cr_assert(f, "cannot open %s", path);
    char *line = NULL;
    size_t cap = 0;
    int n = 0;
    while (getline(&line, &cap, f) > 0) {
        if (!strstr(line, "\"mode\": ")) continue;   /* the header: env_info, config */
        cr_assert_lt(n, max);
        json_line *j = &out[n++];
        memset(j, 0, sizeof *j);
        for (char *p = strchr(line, '"'); p; p = strchr(p, '"')) {
            char *k = p + 1, *ke = strchr(k, '"');
            cr_assert(ke && ke[1] == ':', "%s", line);
            *ke = 0;
            char *v = ke + 2;
            while (*v == ' ') v++;
            if (*v == '"') {
                char *ve = strchr(v + 1, '"');
                *ve = 0;
                if (!strcmp(k, "mode")) snprintf(j->mode, sizeof j->mode, "%s", v + 1);
                p = ve + 1;
                continue;
            }
            cr_assert_lt(j->n, MAX_KEYS);
            snprintf(j->keys[j->n], sizeof j->keys[0], "%s", k);
            j->vals[j->n++] = strtod(v, &p);
        }
    }
    free(line);
    fclose(f);
    return n;
}

static double json_get(const json_line *j, const char *key) {
    for (int i = 0; i < j->n; i++)
        if (!strcmp(j->keys[i], key)) return j->vals[i];
    cr_assert_fail("no %s in a %s line", key, j->mode);
    return NAN;
}

/* mmcv's tags for each JSON line, in order: every buffer value but
 * time/data_time as "<mode>/<key>", then learning_rate (the line's lr) and
 * momentum; the step is the training iteration + 1: for a training line
 * (epoch - 1) * epoch_len + iter, for validation results after epoch e,
 * e * epoch_len + 1. The values the JSON log prints with 6 digits. */
static void expect_same(const events *ev, const json_line *lines, int n, int64_t epoch_len, double momentum,
                        double t0, double t1) {
    /* epoch_len 0: by iterations, where the JSON's "iter" is the step */
    static const char *not_buffer[] = { "epoch", "iter", "lr", "memory", "time", "data_time" };
    int k = 0;
    for (int l = 0; l < n; l++) {
        const json_line *j = &lines[l];
        bool train = !strcmp(j->mode, "train");
        int64_t epoch = (int64_t)json_get(j, "epoch");
        int64_t step = !epoch_len ? (int64_t)json_get(j, "iter")
                       : train    ? (epoch - 1) * epoch_len + (int64_t)json_get(j, "iter")
                                  : epoch * epoch_len + 1;
        char tag[96];
        for (int i = 0; i <= j->n + 1; i++) {
            double want;
            if (i < j->n) {
                bool skip = false;
                for (size_t s = 0; s < sizeof not_buffer / sizeof *not_buffer; s++)
                    skip |= !strcmp(j->keys[i], not_buffer[s]);
                if (skip) continue;
                snprintf(tag, sizeof tag, "%s/%s", j->mode, j->keys[i]);
                want = j->vals[i];
            } else if (i == j->n) {
                snprintf(tag, sizeof tag, "learning_rate");
                want = json_get(j, "lr");
            } else {
                snprintf(tag, sizeof tag, "momentum");
                want = momentum;
            }
            cr_assert_lt(k, ev->n, "the event file ends before %s of JSON line %d", tag, l + 1);
            const scalar *s = &ev->s[k++];
            cr_expect_str_eq(s->tag, tag, "scalar %d (JSON line %d)", k, l + 1);
            cr_expect_eq(s->step, step, "%s of JSON line %d: step %lld, want %lld", tag, l + 1, (long long)s->step,
                         (long long)step);
            cr_expect(fabs(s->value - want) <= 1e-5 * fmax(1e-3, fabs(want)), "%s at step %lld: %.9g, JSON %.9g", tag,
                      (long long)step, s->value, want);
            cr_expect(s->wall >= t0 - 1 && s->wall <= t1 + 1 && (k == 1 || s->wall >= ev->s[k - 2].wall),
                      "%s: wall_time %.3f outside the run [%.3f, %.3f] or going back", tag, s->wall, t0, t1);
        }
    }
    cr_expect_eq(k, ev->n, "%d scalars beyond the JSON log's", ev->n - k);
}

static double now(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6;
}

static char dir[64];
static void rm_dir(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* ----------------------------------- a training run through mmdet-run -- */

/* OracleDetector (tests/plugins/oracle_detector.c) on generated shapes,
 * trained by bin/mmdet-run from `config` (tests/configs/eval/) with both
 * loggers at interval 1 and an EvalHook: train/loss_oracle, train/loss and
 * val/bbox_mAP*, as mmdet's own runs log them. by_iter: an IterBasedRunner,
 * whose JSON lines carry the step as "iter". */
static void oracle_run(const char *config, const char *options, bool by_iter, int want_val) {
    test_tmpdir(dir, sizeof dir, "mmdet_tensorboard");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "bin/mmdet-shapes --out %s/data --train 8 --val 4 --seed 3 >/dev/null", dir);
    cr_assert_eq(system(cmd), 0, "mmdet-shapes failed");
    char cwd[1024];
    cr_assert(getcwd(cwd, sizeof cwd));
    char cfg[1400];
    snprintf(cfg, sizeof cfg,
             "base_ = [\"%s/tests/configs/eval/%s\"];\n"
             "log_config = { interval = 1; hooks = ( { type = \"TextLoggerHook\"; },\n"
             "                                       { type = \"TensorboardLoggerHook\"; } ); };\n",
             cwd, config);
    test_write_file(dir, "tb.cfg", cfg);
    double t0 = now();
    snprintf(cmd, sizeof cmd,
             "bin/mmdet-run --plugin-dir plugins --plugin-dir tests/plugins %s/tb.cfg --work-dir %s/run --seed 0 "
             "--cfg-options data.train.data_root=%s/data/ data.val.data_root=%s/data/ "
             "model.ann_file=%s/data/annotations/instances_val.json %s >%s/out.txt 2>&1",
             dir, dir, dir, dir, dir, options, dir);
    cr_assert_eq(system(cmd), 0, "mmdet-run failed: see %s/out.txt", dir);
    double t1 = now();

    char tf[256], path[512], name[256], host[256] = "";
    snprintf(tf, sizeof tf, "%s/run/tf_logs", dir);
    event_file(tf, path, sizeof path, name, sizeof name);
    /* events.out.tfevents.<10-digit seconds>.<host>.<pid>.<n>, as TensorBoard names them */
    gethostname(host, sizeof host - 1);
    long long secs = atoll(name + 20);
    cr_expect(strlen(name) > 31 && name[30] == '.' && secs >= (long long)t0 - 1 && secs <= (long long)t1 + 1 &&
                  !strncmp(name + 31, host, strlen(host)),
              "%s", name);

    events *ev = malloc(sizeof *ev);
    read_events(path, ev);
    cr_assert_str_eq(ev->version, "brain.Event:2");
    cr_assert_eq(ev->skipped, 0);
    json_line *lines = malloc(sizeof *lines * 64);
    snprintf(cmd, sizeof cmd, "%s/run", dir);
    DIR *d = opendir(cmd);
    char json[512] = "";
    struct dirent *de;
    while ((de = readdir(d)))
        if (strstr(de->d_name, ".log.json")) snprintf(json, sizeof json, "%s/run/%s", dir, de->d_name);
    closedir(d);
    int n = read_json_log(json, lines, 64);
    int n_val = 0;
    int64_t epoch_len = 0;   /* by epoch: the first epoch's last iteration (interval 1) */
    for (int i = 0; i < n; i++) {
        n_val += !strcmp(lines[i].mode, "val");
        if (!strcmp(lines[i].mode, "train") && json_get(&lines[i], "epoch") == 1)
            epoch_len = (int64_t)json_get(&lines[i], "iter");
    }
    cr_assert_eq(n_val, want_val);
    cr_assert_gt(epoch_len, 1);
    expect_same(ev, lines, n, by_iter ? 0 : epoch_len, 0.9, t0, t1);
    /* spot checks of mmcv's tags */
    bool map = false, loss = false, lr = false;
    for (int i = 0; i < ev->n; i++) {
        map |= !strcmp(ev->s[i].tag, "val/bbox_mAP") && ev->s[i].step == (by_iter ? 2 : epoch_len + 1);
        loss |= !strcmp(ev->s[i].tag, "train/loss_oracle") && ev->s[i].step == 1 && ev->s[i].value == 1.0f;
        lr |= !strcmp(ev->s[i].tag, "learning_rate") && fabsf(ev->s[i].value - 0.01f) < 1e-9f;
    }
    cr_expect(map && loss && lr);
    free(lines);
    free(ev);
    rm_dir();
}

/* two epochs, an evaluation after each */
Test(tensorboard, training_run_matches_the_json_log, .timeout = 120) {
    oracle_run("oracle_shapes.cfg", "runner.max_epochs=2", false, 2);
}

/* 4 iterations, an evaluation every 2: the EvalHook has the loggers write
 * the training values first, then its metrics at the same step */
Test(tensorboard, iter_based_run_matches_the_json_log, .timeout = 120) {
    oracle_run("oracle_shapes_iter.cfg", "", true, 2);
}

/* ------------------------------ the toy regression, runner in-process -- */

static md_ctx *ctx;
static void setup(void) {
    ctx = md_ctx_new(NULL);
    md_log_set_quiet(ctx, true);
    md_error err = { 0 };
    cr_assert_eq(md_plugin_load_dir(ctx, "plugins/hooks", &err), 0, "%s", err.msg);
    cr_assert_eq(md_plugin_load_dir(ctx, "plugins/optimizers", &err), 0, "%s", err.msg);
    test_tmpdir(dir, sizeof dir, "mmdet_tensorboard");
}
static void teardown(void) {
    rm_dir();
    md_ctx_free(ctx);
}
TestSuite(tensorboard_toy, .init = setup, .fini = teardown);

/* A hook after the loggers that reads the event file mid-run: every
 * scalar logged so far must be in the file, whole (flushed). */
typedef struct peek_hook { md_hook base; char path[512]; int seen[64], n; } peek_hook;
static int peek_after_iter(md_hook *h, md_runner *r, md_error *err) {
    (void)err;
    peek_hook *p = (peek_hook *)h;
    if (!p->path[0]) {
        char tf[256];
        snprintf(tf, sizeof tf, "%s/tb/nested", dir);
        event_file(tf, p->path, sizeof p->path, NULL, 0);
    }
    events *ev = malloc(sizeof *ev);
    read_events(p->path, ev);
    if (p->n < 64 && md_runner_iter(r) < 64) p->seen[p->n++] = ev->n;
    free(ev);
    return 0;
}
static void peek_destroy(md_hook *h) { (void)h; }
static const md_hook_iface peek_iface = { .after_train_iter = peek_after_iter, .destroy = peek_destroy };

static md_runner *toy_runner(const char *cfg_text, md_cfg **cfg, md_optimizer **opt, md_module **m,
                             md_error *err) {
    *cfg = md_cfg_parse(cfg_text, "tensorboard_test.cfg", err);
    cr_assert(*cfg, "%s", err->msg);
    *m = toy_regressor(ctx, 5, err);
    cr_assert(*m, "%s", err->msg);
    *opt = md_optimizer_build(ctx, *m, md_cfg_get(*cfg, "optimizer"), err);
    cr_assert(*opt, "%s", err->msg);
    md_runner_opts o = { .by_epoch = true, .max_epochs = 2, .work_dir = dir, .timestamp = "20260101_000000" };
    md_runner *r = md_runner_new(ctx, *m, *opt, &o, err);
    cr_assert(r, "%s", err->msg);
    return r;
}

static int run_train_val(md_runner *r, md_error *err) {
    toy_src tr = toy_src_make(ctx, 8, -1), va = toy_src_make(ctx, 3, -1);
    md_batch_source s1 = toy_source(&tr), s2 = toy_source(&va);
    md_batch_source *srcs[2] = { &s1, &s2 };
    const char *modes[2] = { "train", "val" };
    int counts[2] = { 1, 1 };
    return md_runner_run(r, srcs, modes, counts, 2, err);
}

/* The Tensorboard logger before the text logger (so the text logger
 * clears the buffer), a val phase in the workflow, a partial last interval
 * logged (ignore_last false), a log_dir whose parents do not exist, and
 * Adam (momentum is beta1). */
Test(tensorboard_toy, val_phase_partial_interval_and_logger_order) {
    char text[1024];
    snprintf(text, sizeof text,
             "optimizer = { type = \"Adam\"; lr = 0.01; betas = [0.8, 0.999]; };\n"
             "lr_config = { policy = \"step\"; step = [1]; };\n"
             "log_config = { interval = 3; hooks = (\n"
             "  { type = \"TensorboardLoggerHook\"; ignore_last = false; log_dir = \"%s/tb/nested\"; },\n"
             "  { type = \"TextLoggerHook\"; ignore_last = false; } ); };\n",
             dir);
    md_error err = { 0 };
    md_cfg *cfg;
    md_optimizer *opt;
    md_module *m;
    md_runner *r = toy_runner(text, &cfg, &opt, &m, &err);
    cr_assert_eq(md_runner_register_training_hooks(r, md_cfg_get(cfg, "lr_config"), NULL, NULL,
                                                   md_cfg_get(cfg, "log_config"), NULL, NULL, &err),
                 0, "%s", err.msg);
    peek_hook peek = { .base = { .iface = &peek_iface, .priority = MD_PRIORITY_LOWEST, .type = "Peek" } };
    cr_assert_eq(md_runner_register_hook(r, &peek.base, &err), 0);
    double t0 = now();
    cr_assert_eq(run_train_val(r, &err), 0, "%s", err.msg);
    double t1 = now();

    char tf[256], path[512], json[256];
    snprintf(tf, sizeof tf, "%s/tb/nested", dir);
    event_file(tf, path, sizeof path, NULL, 0);
    events *ev = malloc(sizeof *ev);
    read_events(path, ev);
    json_line *lines = malloc(sizeof *lines * 64);
    snprintf(json, sizeof json, "%s/20260101_000000.log.json", dir);
    int n = read_json_log(json, lines, 64);
    /* per epoch: inner iterations 3, 6 and the partial 8, then the val phase */
    cr_assert_eq(n, 8);
    cr_assert_str_eq(lines[3].mode, "val");
    cr_assert_eq(json_get(&lines[2], "iter"), 8);
    expect_same(ev, lines, n, 8, 0.8, t0, t1);
    /* the lr step after epoch 1 shows in learning_rate */
    cr_expect(fabs(json_get(&lines[0], "lr") - 0.01) < 1e-12 && fabs(json_get(&lines[4], "lr") - 0.001) < 1e-12);
    /* mid-run, after iteration i the file held every scalar logged so far:
     * 4 per train line (loss_mse, loss, learning_rate, momentum) */
    cr_assert_eq(peek.n, 16);
    int want[8] = { 0, 0, 4, 4, 4, 8, 8, 12 };
    for (int i = 0; i < 16; i++) {
        int w = want[i % 8] + (i >= 8 ? 12 + 4 : 0);   /* epoch 2 after epoch 1's and the val phase's */
        cr_expect_eq(peek.seen[i], w, "after iteration %d: %d scalars in the file, want %d", i + 1, peek.seen[i], w);
    }
    free(lines);
    free(ev);
    md_runner_free(r);
    md_optimizer_free(opt);
    md_module_free(m);
    md_cfg_free(cfg);
}

Test(tensorboard_toy, unknown_key_is_a_schema_error) {
    md_error err = { 0 };
    md_cfg *cfg = md_cfg_parse("h = { type = \"TensorboardLoggerHook\"; intervall = 5; };", "tb_keys.cfg", &err);
    cr_assert(cfg, "%s", err.msg);
    void *h = md_build_from_cfg(ctx, "hooks", md_cfg_get(cfg, "h"), NULL, &err);
    cr_assert_null(h);
    cr_expect(strstr(err.msg, "intervall") && strstr(err.msg, "did you mean") && strstr(err.msg, "interval"), "%s",
              err.msg);
    md_cfg_free(cfg);
}

Test(tensorboard_toy, uncreatable_log_dir_is_an_error_naming_it) {
    test_write_file(dir, "afile", "not a folder\n");
    char text[512];
    snprintf(text, sizeof text,
             "optimizer = { type = \"SGD\"; lr = 0.01; };\n"
             "log_config = { interval = 1; hooks = ( { type = \"TensorboardLoggerHook\"; log_dir = \"%s/afile/tb\"; } ); };\n",
             dir);
    md_error err = { 0 };
    md_cfg *cfg;
    md_optimizer *opt;
    md_module *m;
    md_runner *r = toy_runner(text, &cfg, &opt, &m, &err);
    cr_assert_eq(md_runner_register_training_hooks(r, NULL, NULL, NULL, md_cfg_get(cfg, "log_config"), NULL, NULL,
                                                   &err),
                 0, "%s", err.msg);
    cr_assert_neq(run_train_val(r, &err), 0);
    char want[256];
    snprintf(want, sizeof want, "%s/afile/tb", dir);
    cr_expect(strstr(err.msg, "log_dir") && strstr(err.msg, want), "%s", err.msg);
    md_runner_free(r);
    md_optimizer_free(opt);
    md_module_free(m);
    md_cfg_free(cfg);
}
