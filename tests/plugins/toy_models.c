/* Toy "models" entries: a schema-checked leaf and a container that builds
 * its child through the registry, as mmdet's modules do. */
#include <stdlib.h>
#include <mmdet/mmdet.h>
#include "toy.h"

static int64_t linear_forward(const toy_model *m, int64_t x) {
    return x * m->out_features + (m->bias ? 1 : 0);
}

static void toy_destroy(toy_model *m) {
    if (!m) return;
    if (m->child) m->child->iface->destroy(m->child);
    free(m);
}

static const toy_iface linear_iface = { linear_forward, toy_destroy };

static const md_key linear_keys[] = {
    { "in_features", MD_KEY_INT, NULL, "input width", true },
    { "out_features", MD_KEY_INT, NULL, "output width", true },
    { "bias", MD_KEY_BOOL, "true", "add a bias", false },
    { "init_std", MD_KEY_FLOAT, "0.01", "weight init std", false },
    { "act", MD_KEY_STRING, "\"relu\"", "activation", false },
    { 0 } };

static void *linear_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    int64_t in = md_cfg_int(cfg, "in_features", 0), out = md_cfg_int(cfg, "out_features", 0);
    if (in <= 0) {
        md_failc(err, MD_ERR_CONFIG, "in_features must be positive, got %lld", (long long)in);
        return NULL;
    }
    toy_model *m = calloc(1, sizeof *m);
    if (!m) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    m->iface = &linear_iface;
    m->type = "ToyLinear";
    m->in_features = in;
    m->out_features = out;
    m->bias = md_cfg_bool(cfg, "bias", false);
    m->init_std = md_cfg_float(cfg, "init_std", -1);
    m->act = md_cfg_str(cfg, "act", NULL);
    return m;
}

static const md_class toy_linear = {
    .name = "ToyLinear", .keys = linear_keys, .build = linear_build,
    .iface = &linear_iface, .doc = "a toy linear layer: y = x * out_features + bias",
};

static int64_t container_forward(const toy_model *m, int64_t x) {
    return m->child->iface->forward(m->child, x) + 1000;
}

static const toy_iface container_iface = { container_forward, toy_destroy };

static const md_key container_keys[] = {
    { "child", MD_KEY_GROUP, NULL, "the wrapped module", true },
    { "out_features", MD_KEY_INT, "7", "passed to the child unless it sets its own", false },
    { 0 } };

static void *container_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    /* The child's defaults come from the parent, like num_classes in mmdet. */
    md_cfg *defaults = md_cfg_new_group();
    if (!defaults) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    md_cfg_set_int(defaults, "out_features", md_cfg_int(cfg, "out_features", 7));
    toy_model *child = md_build_from_cfg(ctx, "models", md_cfg_get(cfg, "child"), defaults, err);
    md_cfg_free(defaults);
    if (!child) return NULL;
    toy_model *m = calloc(1, sizeof *m);
    if (!m) {
        child->iface->destroy(child);
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    m->iface = &container_iface;
    m->type = "ToyContainer";
    m->child = child;
    return m;
}

static const md_class toy_container = {
    .name = "ToyContainer", .keys = container_keys, .build = container_build,
    .iface = &container_iface, .doc = "wraps one child module built by type",
};

MD_PLUGIN("toy_models", "1.0", "Apache-2.0");
MD_REGISTER("models", toy_linear)
MD_REGISTER("models", toy_container)
