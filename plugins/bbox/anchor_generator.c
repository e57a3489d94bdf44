/* mmdet's AnchorGenerator (mmdet/core/anchor/anchor_generator.py): base
 * anchors per level from base_sizes x ratios x scales (scale-major), shifted
 * over the feature-map grid. Computed in f32 in the same operation order as
 * mmdet so anchors match bit for bit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/bbox.h>
#include <mmdet/mmdet.h>

#define MAX_LEVELS 16
#define MAX_BASE 64

typedef struct anchor_gen {
    md_prior_generator base;
    /* from the schema */
    const md_cfg *scales, *base_sizes, *octave_base_scale, *scales_per_octave, *centers;
    double center_offset;
    bool scale_major;
    /* derived at build */
    int n_levels, n_base;
    int stride_w[MAX_LEVELS], stride_h[MAX_LEVELS];
    float base_anchors[MAX_LEVELS][MAX_BASE][4];
} anchor_gen;

/* A bound in the schema is text: MAX_BASE spelled out. */
#define STR_(x) #x
#define STR(x) STR_(x)

static const md_key keys[] = {
    { "strides", MD_KEY_LIST, NULL, "stride of each level (int or [w, h])", true },
    { "ratios", MD_KEY_LIST, NULL, "h/w ratios of the anchors", true },
    { "scales", MD_KEY_ANY, "None", "anchor scales (or octave_base_scale + scales_per_octave)", false,
      MD_AT(anchor_gen, scales) },
    { "base_sizes", MD_KEY_ANY, "None", "base size per level (default: the strides)", false,
      MD_AT(anchor_gen, base_sizes) },
    { "scale_major", MD_KEY_BOOL, "true", "order the base anchors scale-major (ratio outer loop)", false,
      MD_AT(anchor_gen, scale_major) },
    { "octave_base_scale", MD_KEY_FLOAT, "None", "base scale of the octave scales", false,
      MD_AT(anchor_gen, octave_base_scale) },
    { "scales_per_octave", MD_KEY_INT, "None", "scales per octave: base * 2^(i / n)", false,
      MD_AT(anchor_gen, scales_per_octave), .min = "1", .max = STR(MAX_BASE) },
    { "centers", MD_KEY_ANY, "None", "only None is supported", false, MD_AT(anchor_gen, centers) },
    { "center_offset", MD_KEY_FLOAT, "0.0", "anchor centre offset, as a fraction of the base size", false,
      MD_AT(anchor_gen, center_offset) },
    { 0 } };

static int ag_num_levels(const md_prior_generator *g) { return ((const anchor_gen *)g)->n_levels; }
static int ag_num_base(const md_prior_generator *g, int level) {
    const anchor_gen *a = (const anchor_gen *)g;
    return level >= 0 && level < a->n_levels ? a->n_base : 0;
}
static void ag_stride(const md_prior_generator *g, int level, int *sw, int *sh) {
    const anchor_gen *a = (const anchor_gen *)g;
    *sw = level >= 0 && level < a->n_levels ? a->stride_w[level] : 0;
    *sh = level >= 0 && level < a->n_levels ? a->stride_h[level] : 0;
}

static md_tensor *ag_grid(md_ctx *ctx, const md_prior_generator *g, int level, int64_t fh, int64_t fw) {
    const anchor_gen *a = (const anchor_gen *)g;
    if (level < 0 || level >= a->n_levels)
        return md_op_fail(ctx, "AnchorGenerator.grid_priors", "level %d of %d", level, a->n_levels);
    if (fh < 0 || fw < 0)
        return md_op_fail(ctx, "AnchorGenerator.grid_priors", "feature map %lldx%lld", (long long)fh, (long long)fw);
    int A = a->n_base;
    md_tensor *t = md_tensor_empty(ctx, MD_F32, MD_DIMS(fh * fw * A, 4));
    if (!t) return NULL;
    float *o = md_f32(t);
    for (int64_t y = 0; y < fh; y++) {
        float sy = (float)y * (float)a->stride_h[level];
        for (int64_t x = 0; x < fw; x++) {
            float sx = (float)x * (float)a->stride_w[level];
            for (int k = 0; k < A; k++, o += 4) {
                const float *b = a->base_anchors[level][k];
                o[0] = b[0] + sx; o[1] = b[1] + sy; o[2] = b[2] + sx; o[3] = b[3] + sy;
            }
        }
    }
    return t;
}

static md_tensor *ag_valid(md_ctx *ctx, const md_prior_generator *g, int level, int64_t fh, int64_t fw,
                           int64_t vh, int64_t vw) {
    const anchor_gen *a = (const anchor_gen *)g;
    if (level < 0 || level >= a->n_levels)
        return md_op_fail(ctx, "AnchorGenerator.valid_flags", "level %d of %d", level, a->n_levels);
    int A = a->n_base;
    md_tensor *t = md_tensor_empty(ctx, MD_U8, MD_DIMS(fh * fw * A));
    if (!t) return NULL;
    uint8_t *o = md_u8(t);
    for (int64_t y = 0; y < fh; y++)
        for (int64_t x = 0; x < fw; x++)
            for (int k = 0; k < A; k++) *o++ = (uint8_t)(y < vh && x < vw);
    return t;
}

static void ag_destroy(md_prior_generator *g) { free(g); }

static const md_prior_generator_iface iface = {
    .num_levels = ag_num_levels, .num_base_priors = ag_num_base, .stride = ag_stride,
    .grid_priors = ag_grid, .valid_flags = ag_valid, .destroy = ag_destroy,
};

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    anchor_gen *a = md_object_new(sizeof *a, &iface, "AnchorGenerator", cfg, keys, err);
    if (!a) return NULL;
    /* strides: ints or [w, h] pairs */
    const md_cfg *st = md_cfg_get(cfg, "strides");
    int n = md_cfg_kind(st) == MD_CFG_LIST ? md_cfg_len(st) : 1;
    if (n < 1 || n > MAX_LEVELS) {
        md_failc(err, MD_ERR_CONFIG, "strides: %d levels (1 to %d supported)", n, MAX_LEVELS);
        goto fail;
    }
    a->n_levels = n;
    for (int i = 0; i < n; i++) {
        const md_cfg *s = md_cfg_kind(st) == MD_CFG_LIST ? md_cfg_at(st, i) : st;
        if (md_cfg_kind(s) == MD_CFG_LIST && md_cfg_len(s) == 2) {
            a->stride_w[i] = (int)md_cfg_as_int(md_cfg_at(s, 0));
            a->stride_h[i] = (int)md_cfg_as_int(md_cfg_at(s, 1));
        } else if (md_cfg_kind(s) == MD_CFG_INT || md_cfg_kind(s) == MD_CFG_FLOAT) {
            a->stride_w[i] = a->stride_h[i] = (int)md_cfg_as_int(s);
        } else {
            md_failc(err, MD_ERR_CONFIG, "strides[%d]: expected an int or [w, h]", i);
            goto fail;
        }
        if (a->stride_w[i] <= 0 || a->stride_h[i] <= 0) {
            md_failc(err, MD_ERR_CONFIG, "strides[%d] must be positive", i);
            goto fail;
        }
    }
    double ratios[MAX_BASE], scales[MAX_BASE], base_sizes[MAX_LEVELS];
    int n_ratios = md_cfg_float_array(cfg, "ratios", ratios, MAX_BASE, err);
    if (n_ratios < 1) {
        if (n_ratios == 0) md_failc(err, MD_ERR_CONFIG, "ratios: empty");
        goto fail;
    }
    int n_scales;
    bool has_scales = a->scales != NULL, has_octave = a->octave_base_scale && a->scales_per_octave;
    if (has_scales == has_octave) {
        md_failc(err, MD_ERR_CONFIG, "give either scales or octave_base_scale with scales_per_octave");
        goto fail;
    }
    if (has_scales) {
        n_scales = md_cfg_float_array(cfg, "scales", scales, MAX_BASE, err);
        if (n_scales < 1) {
            if (n_scales == 0) md_failc(err, MD_ERR_CONFIG, "scales: empty");
            goto fail;
        }
    } else {
        double obs = md_cfg_as_float(a->octave_base_scale);
        n_scales = (int)md_cfg_as_int(a->scales_per_octave);   /* 1 to MAX_BASE (the schema's bounds) */
        /* numpy float64: 2 ** (i / n) * octave_base_scale, then float32 */
        for (int i = 0; i < n_scales; i++) scales[i] = pow(2.0, (double)i / n_scales) * obs;
    }
    if (n_ratios * n_scales > MAX_BASE) {
        md_failc(err, MD_ERR_CONFIG, "%d ratios x %d scales: at most %d base anchors", n_ratios, n_scales, MAX_BASE);
        goto fail;
    }
    a->n_base = n_ratios * n_scales;
    if (a->base_sizes) {
        int nb = md_cfg_float_array(cfg, "base_sizes", base_sizes, MAX_LEVELS, err);
        if (nb < 0) goto fail;
        if (nb != n) {
            md_failc(err, MD_ERR_CONFIG, "base_sizes has %d entries, strides %d", nb, n);
            goto fail;
        }
    } else {
        for (int i = 0; i < n; i++) base_sizes[i] = a->stride_w[i] < a->stride_h[i] ? a->stride_w[i] : a->stride_h[i];
    }
    if (a->centers) {
        md_failc(err, MD_ERR_CONFIG, "centers: only None is supported");
        goto fail;
    }
    double off = a->center_offset;
    bool scale_major = a->scale_major;
    for (int l = 0; l < n; l++) {
        float w = (float)base_sizes[l], h = w;
        float xc = (float)(off * base_sizes[l]), yc = xc;
        for (int i = 0; i < n_ratios; i++)
            for (int j = 0; j < n_scales; j++) {
                float hr = sqrtf((float)ratios[i]), wr = 1.0f / hr, s = (float)scales[j];
                float ws, hs;
                int k;
                if (scale_major) {
                    ws = w * wr * s; hs = h * hr * s; k = i * n_scales + j;
                } else {
                    ws = w * s * wr; hs = h * s * hr; k = j * n_ratios + i;
                }
                float *b = a->base_anchors[l][k];
                b[0] = xc - 0.5f * ws; b[1] = yc - 0.5f * hs; b[2] = xc + 0.5f * ws; b[3] = yc + 0.5f * hs;
            }
    }
    return a;
fail:
    free(a);
    return NULL;
}

static const md_class cls = { .name = "AnchorGenerator", .keys = keys, .build = build, MD_IFACE(&iface, MD_IFACE_PRIOR_GENERATOR),
                              .doc = "mmdet's anchor generator (strides, ratios, scales or octave scales)" };
MD_PLUGIN("anchor_generator", "1.0", "Apache-2.0");
MD_REGISTER("prior_generators", cls)
