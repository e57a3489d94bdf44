/* A third-party plugin, compiled outside the tree against an installed core:
 *
 *   cc -shared -fPIC -o my_head.so my_head.c $(pkg-config --cflags --libs mmdet)
 */
#include <stdlib.h>
#include <mmdet/mmdet.h>

typedef struct my_head {
    int64_t num_classes;
    double score_thr;
} my_head;

static const md_key keys[] = {
    { "num_classes", MD_KEY_INT, NULL, "number of object classes", true },
    { "score_thr", MD_KEY_FLOAT, "0.05", "drop boxes scoring below this", false },
    { 0 } };

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    int64_t n = md_cfg_int(cfg, "num_classes", 0);
    if (n <= 0) {
        md_failc(err, MD_ERR_CONFIG, "num_classes must be positive, got %lld", (long long)n);
        return NULL;
    }
    my_head *h = malloc(sizeof *h);
    if (!h) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    h->num_classes = n;
    h->score_thr = md_cfg_float(cfg, "score_thr", 0.05);
    md_info(ctx, "MyHead: %lld classes, score_thr %g", (long long)n, h->score_thr);
    return h;
}

static const md_class my_head_class = {
    .name = "MyHead", .keys = keys, .build = build,
    .doc = "an out-of-tree head (plugin guide example)",
};

MD_PLUGIN("my_head", "1.0", "MIT");
MD_REGISTER("heads", my_head_class)
