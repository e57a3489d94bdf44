/* mmdet's MlvlPointGenerator (mmdet/core/anchor/point_generator.py): one
 * prior per feature-map location, the point ((x + offset) * stride_w,
 * (y + offset) * stride_h), for anchor-free heads. grid_priors gives mmdet's
 * with_stride=True layout, rows (x, y, stride_w, stride_h), so a head (or a
 * box coder, which reads the first two columns) has the stride of every
 * point without knowing its level. Computed in f32 as mmdet does. */
#include <stdlib.h>
#include <mmdet/bbox.h>
#include <mmdet/mmdet.h>

#define MAX_LEVELS 16


typedef struct point_gen {
    md_prior_generator base;
    int n_levels;
    int stride_w[MAX_LEVELS], stride_h[MAX_LEVELS];
    double offset;
} point_gen;

static const md_key keys[] = {
    { "strides", MD_KEY_LIST, NULL, "stride of each level (int or [w, h])", true },
    { "offset", MD_KEY_FLOAT, "0.5", "point offset within its cell, in strides", false, MD_AT(point_gen, offset),
      .min = "0.0", .max = "1.0" },
    { 0 } };

static int pg_num_levels(const md_prior_generator *g) { return ((const point_gen *)g)->n_levels; }
static int pg_num_base(const md_prior_generator *g, int level) {
    return level >= 0 && level < ((const point_gen *)g)->n_levels ? 1 : 0;
}
static void pg_stride(const md_prior_generator *g, int level, int *sw, int *sh) {
    const point_gen *p = (const point_gen *)g;
    bool ok = level >= 0 && level < p->n_levels;
    *sw = ok ? p->stride_w[level] : 0;
    *sh = ok ? p->stride_h[level] : 0;
}

static md_tensor *pg_grid(md_ctx *ctx, const md_prior_generator *g, int level, int64_t fh, int64_t fw) {
    const point_gen *p = (const point_gen *)g;
    if (level < 0 || level >= p->n_levels)
        return md_op_fail(ctx, "MlvlPointGenerator.grid_priors", "level %d of %d", level, p->n_levels);
    if (fh < 0 || fw < 0)
        return md_op_fail(ctx, "MlvlPointGenerator.grid_priors", "feature map %lldx%lld", (long long)fh, (long long)fw);
    md_tensor *t = md_tensor_empty(ctx, MD_F32, MD_DIMS(fh * fw, 4));
    if (!t) return NULL;
    float *o = md_f32(t), sw = (float)p->stride_w[level], sh = (float)p->stride_h[level];
    for (int64_t y = 0; y < fh; y++) {
        float py = ((float)y + (float)p->offset) * sh;
        for (int64_t x = 0; x < fw; x++, o += 4) {
            o[0] = ((float)x + (float)p->offset) * sw;
            o[1] = py;
            o[2] = sw;
            o[3] = sh;
        }
    }
    return t;
}

/* mmdet's single_level_valid_flags: the locations inside valid_h x valid_w. */
static md_tensor *pg_valid(md_ctx *ctx, const md_prior_generator *g, int level, int64_t fh, int64_t fw, int64_t vh,
                           int64_t vw) {
    const point_gen *p = (const point_gen *)g;
    if (level < 0 || level >= p->n_levels)
        return md_op_fail(ctx, "MlvlPointGenerator.valid_flags", "level %d of %d", level, p->n_levels);
    md_tensor *t = md_tensor_empty(ctx, MD_U8, MD_DIMS(fh * fw));
    if (!t) return NULL;
    uint8_t *o = md_u8(t);
    for (int64_t y = 0; y < fh; y++)
        for (int64_t x = 0; x < fw; x++) *o++ = (uint8_t)(y < vh && x < vw);
    return t;
}

static void pg_destroy(md_prior_generator *g) { free(g); }

static const md_prior_generator_iface iface = {
    .num_levels = pg_num_levels, .num_base_priors = pg_num_base, .stride = pg_stride,
    .grid_priors = pg_grid, .valid_flags = pg_valid, .destroy = pg_destroy,
};

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    point_gen *p = md_object_new(sizeof *p, &iface, "MlvlPointGenerator", cfg, keys, err);
    if (!p) return NULL;
    /* strides: ints or [w, h] pairs (mmdet's _pair) */
    const md_cfg *st = md_cfg_get(cfg, "strides");
    bool list = md_cfg_kind(st) == MD_CFG_LIST;
    int n = list ? md_cfg_len(st) : 1;
    if (n < 1 || n > MAX_LEVELS) {
        md_failc(err, MD_ERR_CONFIG, "strides: %d levels (1 to %d supported)", n, MAX_LEVELS);
        goto fail;
    }
    p->n_levels = n;
    for (int i = 0; i < n; i++) {
        const md_cfg *s = list ? md_cfg_at(st, i) : st;
        if (md_cfg_kind(s) == MD_CFG_LIST && md_cfg_len(s) == 2) {
            p->stride_w[i] = (int)md_cfg_as_int(md_cfg_at(s, 0));
            p->stride_h[i] = (int)md_cfg_as_int(md_cfg_at(s, 1));
        } else if (md_cfg_kind(s) == MD_CFG_INT) {
            p->stride_w[i] = p->stride_h[i] = (int)md_cfg_as_int(s);
        } else {
            md_failc(err, MD_ERR_CONFIG, "strides[%d]: expected an int or [w, h]", i);
            goto fail;
        }
        if (p->stride_w[i] <= 0 || p->stride_h[i] <= 0) {
            md_failc(err, MD_ERR_CONFIG, "strides[%d] must be positive", i);
            goto fail;
        }
    }
    return p;
fail:
    free(p);
    return NULL;
}

static const md_class cls = { .name = "MlvlPointGenerator", .keys = keys, .build = build,
                              MD_IFACE(&iface, MD_IFACE_PRIOR_GENERATOR),
                              .doc = "mmdet's point generator: one point per location (x, y, stride_w, stride_h)" };
MD_PLUGIN("point_generator", "1.0", "Apache-2.0");
MD_REGISTER("prior_generators", cls)
