/* mmdet's FPN neck (mmdet/models/necks/fpn.py): lateral 1x1 ConvModules,
 * top-down nearest upsampling, 3x3 output ConvModules, extra levels by
 * max_pool2d(1, stride 2) or by stride-2 convs on the input, the lateral or
 * the output. State dict names: lateral_convs.N.conv.weight/bias,
 * fpn_convs.N.conv.weight/bias (and .bn.* or .gn.* with a norm_cfg).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include <mmdet/models.h>

#define MAX_INS MD_MAX_LEVELS

enum { EXTRA_NONE = 0, EXTRA_INPUT, EXTRA_LATERAL, EXTRA_OUTPUT };

typedef struct fpn {
    md_module base;
    /* from the schema */
    int out_channels, num_outs, start_level, end_level;
    bool relu_before_extra, no_norm_on_lateral;
    const md_cfg *add_extra_convs, *conv_cfg, *norm_cfg, *act_cfg, *upsample_cfg, *init;
    /* derived at build */
    int num_ins, bel, extra, scale_factor;   /* bel: backbone_end_level (exclusive) */
    md_cfg *init_cfg;                        /* owned clone of init */
} fpn;

/* A bound in the schema is text: MAX_INS spelled out. */
#define STR_(x) #x
#define STR(x) STR_(x)

static const md_key keys[] = {
    { "in_channels", MD_KEY_LIST, NULL, "channels of each input level", true },
    { "out_channels", MD_KEY_INT, NULL, "channels of every output", true, MD_AT(fpn, out_channels), .min = "1" },
    { "num_outs", MD_KEY_INT, NULL, "number of outputs (extra levels beyond the inputs)", true, MD_AT(fpn, num_outs),
      .min = "1", .max = STR(MAX_INS) },
    { "start_level", MD_KEY_INT, "0", "first input level used", false, MD_AT(fpn, start_level) },
    { "end_level", MD_KEY_INT, "-1", "last input level used (-1: the last)", false, MD_AT(fpn, end_level) },
    { "add_extra_convs", MD_KEY_ANY, "false",
      "false (max pool), true or \"on_input\", \"on_lateral\", \"on_output\"", false, MD_AT(fpn, add_extra_convs) },
    { "relu_before_extra_convs", MD_KEY_BOOL, "false", "ReLU before the 2nd and later extra convs", false,
      MD_AT(fpn, relu_before_extra) },
    { "no_norm_on_lateral", MD_KEY_BOOL, "false", "no norm in the lateral convs", false,
      MD_AT(fpn, no_norm_on_lateral) },
    { "conv_cfg", MD_KEY_ANY, "None", "only None (plain Conv2d) is supported", false, MD_AT(fpn, conv_cfg) },
    { "norm_cfg", MD_KEY_ANY, "None",
      "None, { type = \"BN\"; requires_grad = true; } or { type = \"GN\"; num_groups = 32; }", false,
      MD_AT(fpn, norm_cfg) },
    { "act_cfg", MD_KEY_ANY, "None", "None or { type = \"ReLU\"; }", false, MD_AT(fpn, act_cfg) },
    { "upsample_cfg", MD_KEY_GROUP, NULL, "{ mode = \"nearest\"; } (scale_factor = 2 to scale instead of resize)", false,
      MD_AT(fpn, upsample_cfg) },
    { "init_cfg", MD_KEY_ANY, "None", "init config (default: Xavier uniform on the convs); Pretrained loads a checkpoint",
      false, MD_AT(fpn, init) },
    { 0 } };

/* upsample_cfg's keys */
typedef struct upsample { int mode; const md_cfg *scale_factor; } upsample;
static const md_key up_keys[] = {
    { "mode", MD_KEY_STRING, "\"nearest\"", "only nearest", false, MD_CHOICE_AT(upsample, mode, "nearest") },
    { "scale_factor", MD_KEY_ANY, NULL, "integer scale instead of the lower level's size", false,
      MD_AT(upsample, scale_factor) },
    { 0 } };

static const md_module_class list_class = { .name = "ModuleList" };

/* Runs <list>.<i> inside the scope "<list>.<i>". */
static md_tensor *call_item(md_ctx *ctx, md_module *m, const char *list, int i, md_tensor *x) {
    char name[16];
    snprintf(name, sizeof name, "%d", i);
    md_scope_push(ctx, list);
    x = md_module_call(ctx, md_module_child(m, list), name, x);
    md_scope_pop(ctx);
    return x;
}

static int fpn_forward(md_ctx *ctx, md_module *m, md_tensor *const *ins, int n_in, md_tensor **outs,
                       int max_outs) {
    fpn *f = (fpn *)m;
    if (n_in != f->num_ins) {
        md_op_fail(ctx, "FPN", "%d inputs given, in_channels has %d", n_in, f->num_ins);
        return -1;
    }
    if (max_outs < f->num_outs) {
        md_op_fail(ctx, "FPN", "room for %d outputs, %d needed", max_outs, f->num_outs);
        return -1;
    }
    md_tensor *lat[MAX_INS];
    int used = f->bel - f->start_level;
    for (int i = 0; i < used; i++) lat[i] = call_item(ctx, m, "lateral_convs", i, ins[i + f->start_level]);
    for (int i = used - 1; i > 0; i--) {
        md_tensor *up = NULL;
        if (!lat[i] || !lat[i - 1]) return -1;
        if (f->scale_factor) up = md_upsample_nearest(ctx, lat[i], f->scale_factor);
        else up = md_interpolate_nearest_like(ctx, lat[i], lat[i - 1]);
        /* mmdet's laterals[i - 1] += up; neither operand is read again */
        md_tensor *sum = md_add_(ctx, lat[i - 1], up);
        if (sum && sum->data != lat[i - 1]->data) md_tensor_release(ctx, lat[i - 1]);
        md_tensor_release(ctx, up);
        lat[i - 1] = sum;
    }
    md_tensor *res[MAX_INS * 2];
    for (int i = 0; i < used; i++) {
        res[i] = call_item(ctx, m, "fpn_convs", i, lat[i]);
        /* the conv keeps what its backward needs; the extra levels may read the last lateral */
        if (!(f->extra == EXTRA_LATERAL && i == used - 1)) md_tensor_release(ctx, lat[i]);
    }
    int n = used;
    if (f->num_outs > n) {
        if (f->extra == EXTRA_NONE) {
            for (; n < f->num_outs; n++) res[n] = md_max_pool2d(ctx, res[n - 1], 1, 2, 0, false);
        } else {
            md_tensor *src = f->extra == EXTRA_INPUT ? ins[f->bel - 1]
                           : f->extra == EXTRA_LATERAL ? lat[used - 1] : res[used - 1];
            res[n] = call_item(ctx, m, "fpn_convs", n, src);
            if (f->extra == EXTRA_LATERAL) md_tensor_release(ctx, lat[used - 1]);
            for (n++; n < f->num_outs; n++) {
                md_tensor *x = f->relu_before_extra ? md_relu(ctx, res[n - 1]) : res[n - 1];
                res[n] = call_item(ctx, m, "fpn_convs", n, x);
                if (x != res[n - 1]) md_tensor_release(ctx, x);
            }
        }
    }
    for (int i = 0; i < n; i++) {
        if (!res[i]) return -1;
        outs[i] = res[i];
    }
    return md_ctx_failed(ctx) ? -1 : n;
}

static int fpn_num_outs(const md_module *m) { return ((const fpn *)m)->num_outs; }
static int fpn_out_channels(const md_module *m, int i) {
    const fpn *f = (const fpn *)m;
    return i >= 0 && i < f->num_outs ? f->out_channels : -1;
}
static int fpn_init_weights(md_ctx *ctx, md_module *m, md_error *err) {
    return md_init_cfg_pretrained(ctx, m, ((fpn *)m)->init_cfg, "FPN", err) < 0 ? -1 : 0;
}
static void fpn_destroy(md_module *m) { md_cfg_free(((fpn *)m)->init_cfg); }

static const md_neck_class fpn_cls = {
    .model = { .module = { .name = "FPN", .destroy = fpn_destroy }, .init_weights = fpn_init_weights },
    .forward = fpn_forward,
    .num_outs = fpn_num_outs,
    .out_channels = fpn_out_channels,
};

/* act_cfg: None or a group of a supported type. */
static int read_layer_cfg(const md_cfg *c, const char *key, const char *const *types, int n_types, bool *on,
                          md_error *err) {
    *on = false;
    if (md_cfg_is_none(c)) return 0;
    if (md_cfg_kind(c) != MD_CFG_GROUP) return md_failc(err, MD_ERR_CONFIG, "%s must be None or a group", key);
    const char *type = md_cfg_str(c, "type", "");
    for (int i = 0; i < n_types; i++)
        if (!strcmp(type, types[i])) {
            *on = true;
            return 0;
        }
    return md_failc(err, MD_ERR_CONFIG, "%s.type '%s' is not supported (%s%s%s)", key, type, types[0],
                    n_types > 1 ? ", " : "", n_types > 1 ? types[1] : "");
}

static int add_conv_module(md_ctx *ctx, md_module *list, int idx, md_conv_module_opts *o, md_error *err) {
    md_module *cm = md_nn_conv_module(ctx, o, err);
    if (!cm) return -1;
    char name[16];
    snprintf(name, sizeof name, "%d", idx);
    if (md_module_add_child(list, name, cm, err) != 0) {
        md_module_free(cm);
        return -1;
    }
    /* FPN's init_cfg: Xavier (uniform, gain 1, bias 0) on every Conv2d. */
    md_module *conv = md_module_child(cm, "conv");
    md_init_xavier(md_nn_weight(conv), md_ctx_rng(ctx), 1.0, true);
    if (md_nn_bias(conv)) md_init_constant(md_nn_bias(conv), 0);
    return 0;
}

static void *fpn_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    fpn *f = md_module_new(sizeof *f, &fpn_cls.model.module);
    md_module *lists[2] = { NULL, NULL };
    if (!f) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    md_module *m = &f->base;
    if (md_cfg_read_struct(cfg, keys, f, "FPN", err)) goto fail;
    int64_t in_ch[MAX_INS];
    int num_ins = md_cfg_int_array(cfg, "in_channels", in_ch, MAX_INS, err);
    if (num_ins < 0) goto fail;
    int out_ch = f->out_channels, num_outs = f->num_outs, start = f->start_level, end_level = f->end_level;
    if (num_ins < 1) {
        md_failc(err, MD_ERR_CONFIG, "in_channels needs 1 to %d levels (got %d)", MAX_INS, num_ins);
        goto fail;
    }
    for (int i = 0; i < num_ins; i++)
        if (in_ch[i] <= 0) {
            md_failc(err, MD_ERR_CONFIG, "in_channels[%d] = %lld must be positive", i, (long long)in_ch[i]);
            goto fail;
        }
    int bel; /* backbone_end_level */
    if (start < 0 || start >= num_ins) {
        md_failc(err, MD_ERR_CONFIG, "start_level %d is outside the %d inputs", start, num_ins);
        goto fail;
    }
    if (end_level == -1 || end_level == num_ins - 1) {
        bel = num_ins;
        if (num_outs < num_ins - start) {
            md_failc(err, MD_ERR_CONFIG, "num_outs %d must be at least the %d levels used (in_channels from start_level %d)",
                     num_outs, num_ins - start, start);
            goto fail;
        }
    } else {
        bel = end_level + 1;
        if (end_level < start || end_level >= num_ins) {
            md_failc(err, MD_ERR_CONFIG, "end_level %d must be in [start_level %d, %d)", end_level, start, num_ins);
            goto fail;
        }
        if (num_outs != end_level - start + 1) {
            md_failc(err, MD_ERR_CONFIG, "num_outs %d must equal end_level - start_level + 1 = %d (no extra levels "
                     "when end_level is not the last input)", num_outs, end_level - start + 1);
            goto fail;
        }
    }
    int extra = EXTRA_NONE;
    const md_cfg *ae = f->add_extra_convs;
    if (md_cfg_kind(ae) == MD_CFG_STRING) {
        const char *s = md_cfg_as_str(ae);
        static const char *const modes[] = { "on_input", "on_lateral", "on_output" };
        for (int i = 0; i < 3; i++)
            if (!strcmp(s, modes[i])) extra = i + 1;
        if (!extra) {
            const char *sug = md_suggest(s, modes, 3);
            md_failc(err, MD_ERR_CONFIG, "add_extra_convs \"%s\" must be one of on_input, on_lateral, on_output%s%s%s",
                     s, sug ? " (did you mean \"" : "", sug ? sug : "", sug ? "\"?)" : "");
            goto fail;
        }
    } else if (md_cfg_kind(ae) == MD_CFG_BOOL) {
        extra = md_cfg_as_bool(ae) ? EXTRA_INPUT : EXTRA_NONE;  /* True means on_input */
    } else if (ae) {
        md_failc(err, MD_ERR_CONFIG, "add_extra_convs must be a bool or a string");
        goto fail;
    }
    if (f->conv_cfg) {
        md_failc(err, MD_ERR_CONFIG, "conv_cfg must be None (plain Conv2d)");
        goto fail;
    }
    static const char *const act_types[] = { "ReLU" };
    md_conv_module_opts nopt = { 0 };   /* the norm fields every ConvModule shares */
    bool act;
    if (md_norm_cfg_read(f->norm_cfg, "norm_cfg", "BN,SyncBN,GN", &nopt, err) ||
        read_layer_cfg(f->act_cfg, "act_cfg", act_types, 1, &act, err))
        goto fail;
    int scale = 0;
    if (f->upsample_cfg) {
        upsample up;
        if (md_cfg_check_keys(f->upsample_cfg, up_keys, "upsample_cfg", err) != 0 ||
            md_cfg_read_struct(f->upsample_cfg, up_keys, &up, "upsample_cfg", err) != 0)
            goto fail;
        if (up.scale_factor) {
            double v = md_cfg_as_float(up.scale_factor);
            scale = (int)v;
            if (scale < 1 || v != scale) {
                md_failc(err, MD_ERR_CONFIG, "upsample_cfg.scale_factor %g must be a positive integer", v);
                goto fail;
            }
        }
    }
    if (md_init_cfg_check(f->init, "init_cfg", err) != 0) goto fail;

    f->num_ins = num_ins;
    f->bel = bel;
    f->extra = extra;
    f->scale_factor = scale;
    if (f->init && !(f->init_cfg = md_cfg_clone(f->init))) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        goto fail;
    }
    const char *names[2] = { "lateral_convs", "fpn_convs" };
    for (int k = 0; k < 2; k++) {
        lists[k] = md_module_new(sizeof(md_module), &list_class);
        if (!lists[k]) {
            md_failc(err, MD_ERR_NOMEM, "out of memory");
            goto fail;
        }
        if (md_module_add_child(m, names[k], lists[k], err) != 0) {
            md_module_free(lists[k]);
            goto fail;
        }
    }
    bool lat_norm = nopt.norm && !f->no_norm_on_lateral;
    for (int i = start; i < bel; i++) {
        md_conv_module_opts lo = nopt;
        lo.in = (int)in_ch[i], lo.out = out_ch, lo.kernel = 1, lo.stride = 1, lo.norm = lat_norm;
        lo.act = act, lo.bias = -1;
        if (add_conv_module(ctx, lists[0], i - start, &lo, err)) goto fail;
    }
    for (int i = start; i < bel; i++) {
        md_conv_module_opts fo = nopt;
        fo.in = out_ch, fo.out = out_ch, fo.kernel = 3, fo.stride = 1, fo.padding = 1, fo.act = act, fo.bias = -1;
        if (add_conv_module(ctx, lists[1], i - start, &fo, err)) goto fail;
    }
    int extra_levels = num_outs - bel + start;
    for (int i = 0; extra && i < extra_levels; i++) {
        int cin = i == 0 && extra == EXTRA_INPUT ? (int)in_ch[bel - 1] : out_ch;
        md_conv_module_opts eo = nopt;
        eo.in = cin, eo.out = out_ch, eo.kernel = 3, eo.stride = 2, eo.padding = 1, eo.act = act, eo.bias = -1;
        if (add_conv_module(ctx, lists[1], bel - start + i, &eo, err)) goto fail;
    }
    md_module_train(m, true);
    return m;
fail:
    md_module_free(m);
    return NULL;
}

static const md_class fpn_class = {
    .name = "FPN", .keys = keys, .build = fpn_build, MD_IFACE(&fpn_cls, MD_IFACE_NECK),
    .doc = "Feature Pyramid Network (mmdet 2.x), extra levels by max pool or convs",
};

MD_PLUGIN("fpn", "1.0", "Apache-2.0");
MD_REGISTER("necks", fpn_class)
