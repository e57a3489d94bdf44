/* IterTimerHook: data_time and time of every iteration into the log buffer. */
#include <stdlib.h>
#include <time.h>
#include <mmdet/mmdet.h>

typedef struct timer_hook { md_hook base; double t; } timer_hook;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int before_epoch(md_hook *h, md_runner *r, md_error *err) {
    (void)r;
    (void)err;
    ((timer_hook *)h)->t = now();
    return 0;
}

static int before_iter(md_hook *h, md_runner *r, md_error *err) {
    (void)err;
    md_runner_log_value(r, "data_time", now() - ((timer_hook *)h)->t, 1);
    return 0;
}

static int after_iter(md_hook *h, md_runner *r, md_error *err) {
    (void)err;
    timer_hook *t = (timer_hook *)h;
    double n = now();
    md_runner_log_value(r, "time", n - t->t, 1);
    t->t = n;
    return 0;
}

static const md_hook_iface iface = {
    .before_train_epoch = before_epoch, .before_val_epoch = before_epoch,
    .before_train_iter = before_iter, .before_val_iter = before_iter,
    .after_train_iter = after_iter, .after_val_iter = after_iter,
    .default_priority = MD_PRIORITY_LOW,
};

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    (void)cfg;
    timer_hook *h = calloc(1, sizeof *h);
    if (!h) md_failc(err, MD_ERR_NOMEM, "out of memory");
    else h->base.iface = &iface;
    return h;
}

MD_PLUGIN("iter_timer", "1.0", "Apache-2.0");
static const md_class cls = { .name = "IterTimerHook", .build = build, MD_IFACE(&iface, MD_IFACE_HOOK),
                              .doc = "time and data_time per iteration" };
MD_REGISTER("hooks", cls)
