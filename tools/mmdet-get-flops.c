/* mmdet-get-flops: FLOPs and parameters of a detector, as mmdet's
 * tools/analysis_tools/get_flops.py: build the model from the config, run
 * its forward_dummy (backbone, neck, the heads' raw outputs) on one image
 * of the given shape (padded to size_divisor), counting as mmcv's
 * get_model_complexity_info counts (flops.h), then print the module tree
 * with each module's parameters and FLOPs and their shares, and the
 * totals. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/mmdet.h>

static void usage(FILE *f) {
    fputs("usage: mmdet-get-flops CONFIG [options]\n"
          "\n"
          "Count a detector's FLOPs (multiply-adds) and parameters per module (mmdet's\n"
          "tools/analysis_tools/get_flops.py, mmcv's get_model_complexity_info).\n"
          "\n"
          "  --shape H [W]             input image size (default 1280 800; one number: square)\n"
          "  --size-divisor N          pad H and W up to multiples of N (default 32; -1: no padding)\n"
          "  --exact                   also list every module's FLOPs and parameters as exact\n"
          "                            integers, one \"path flops params\" line each\n"
          "  --device DEV              cpu, cuda or cuda:N (the config's device; default cpu)\n",
          f);
    fputs(md_tool_opts_usage(), f);
}

static int die(const char *msg, const char *what) {
    fprintf(stderr, "mmdet-get-flops: error: ");
    fprintf(stderr, msg, what);
    fprintf(stderr, "\n");
    return 1;
}

/* ------------------------------------------------------ the module tree -- */

/* A module of the model, or a layer that counted FLOPs without being an
 * md_module here (ResNet's relu, ConvModule's activate: `entry` set). */
typedef struct node {
    char *name, *path;
    md_module *m;
    const md_flops_entry *entry;
    int64_t flops, params;
    int first;                /* index of the first entry counted below it */
    struct node **kids;
    int n_kids;
} node;

static void node_free(node *n) {
    if (!n) return;
    for (int i = 0; i < n->n_kids; i++) node_free(n->kids[i]);
    free(n->kids);
    free(n->name);
    free(n->path);
    free(n);
}

static node *node_new(const char *name, const char *path) {
    node *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    n->name = strdup(name);
    n->path = strdup(path);
    n->first = INT_MAX;
    if (!n->name || !n->path) {
        node_free(n);
        return NULL;
    }
    return n;
}

static int add_kid(node *p, node *k) {
    node **kids = realloc(p->kids, sizeof *kids * (size_t)(p->n_kids + 1));
    if (!kids) return -1;
    p->kids = kids;
    p->kids[p->n_kids++] = k;
    return 0;
}

static node *build_tree(md_module *m, const char *name, const char *path) {
    node *n = node_new(name, path);
    if (!n) return NULL;
    n->m = m;
    for (int i = 0; i < m->n_children; i++) {
        char sub[1024];
        snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", m->children[i].name);
        node *k = build_tree(m->children[i].m, m->children[i].name, sub);
        if (!k || add_kid(n, k) != 0) {
            node_free(k);
            node_free(n);
            return NULL;
        }
    }
    return n;
}

/* Whether `path` is `prefix` or below it. */
static bool under(const char *path, const char *prefix) {
    size_t k = strlen(prefix);
    return !k || (!strncmp(path, prefix, k) && (path[k] == 0 || path[k] == '.'));
}

/* Puts counted entry i at its module, or as a layer of its own under the
 * deepest module above it. */
static int place(node *root, const md_flops_entry *e, int i) {
    node *n = root;
    for (;;) {
        if (i < n->first) n->first = i;
        if (!strcmp(n->path, e->path)) {
            n->flops += e->flops;
            return 0;
        }
        node *next = NULL;
        for (int k = 0; k < n->n_kids && !next; k++)
            if (n->kids[k]->m && under(e->path, n->kids[k]->path)) next = n->kids[k];
        if (!next) break;
        n = next;
    }
    const char *rest = e->path + strlen(n->path) + (*n->path ? 1 : 0);
    node *v = node_new(rest, e->path);
    if (!v || add_kid(n, v) != 0) {
        node_free(v);
        return -1;
    }
    v->entry = e;
    v->flops = e->flops;
    v->first = i;
    return 0;
}

/* mmcv's accumulate_*: a counted layer keeps its own figures, anything
 * else sums its children; parameters are the trainable ones of layers. */
static void accumulate(node *n) {
    char buf[8];
    bool layer = n->m && md_nn_describe(n->m, buf, sizeof buf);
    if (layer) n->params = md_module_num_params(n->m, true);
    for (int i = 0; i < n->n_kids; i++) {
        accumulate(n->kids[i]);
        if (!layer) n->params += n->kids[i]->params;
        n->flops += n->kids[i]->flops;
    }
}

/* Children in the order of the model's modules, each layer that is no
 * module placed before the first module counted after it. */
static void order_kids(node *n) {
    if (!n->n_kids) return;   /* a leaf (kids may be NULL) */
    node **out = malloc(sizeof *out * (size_t)(n->n_kids + 1));
    if (!out) return;
    int k = 0;
    bool *done = calloc((size_t)n->n_kids + 1, 1);
    if (!done) {
        free(out);
        return;
    }
    for (int i = 0; i < n->n_kids; i++) {
        if (!n->kids[i]->m) continue;
        for (;;) {   /* the earliest pending layer counted before this module */
            int best = -1;
            for (int j = 0; j < n->n_kids; j++)
                if (!n->kids[j]->m && !done[j] && n->kids[j]->first < n->kids[i]->first &&
                    (best < 0 || n->kids[j]->first < n->kids[best]->first))
                    best = j;
            if (best < 0) break;
            done[best] = true;
            out[k++] = n->kids[best];
        }
        out[k++] = n->kids[i];
    }
    for (int j = 0; j < n->n_kids; j++)
        if (!n->kids[j]->m && !done[j]) out[k++] = n->kids[j];
    memcpy(n->kids, out, sizeof *out * (size_t)n->n_kids);
    free(out);
    free(done);
    for (int i = 0; i < n->n_kids; i++) order_kids(n->kids[i]);
}

/* ------------------------------------------------------------- printing -- */

/* Python's str(round(v, digits)) for the magnitudes printed here. */
static const char *py_round(double v, int digits, char *buf, size_t n) {
    snprintf(buf, n, "%.*f", digits, v);
    char *e = buf + strlen(buf) - 1;
    while (e > buf && *e == '0' && e[-1] != '.') *e-- = 0;
    if (!strcmp(buf, "-0.0")) snprintf(buf, n, "0.0");
    return buf;
}

static double share(int64_t part, int64_t total) { return total ? 100.0 * (double)part / (double)total : 0.0; }

/* The line print_model_with_flops adds to every module's repr. */
static void stat_line(FILE *f, const node *n, int64_t total_flops, int64_t total_params) {
    char p[64], g[64], extra[256] = "";
    if (n->m) md_nn_describe(n->m, extra, sizeof extra);
    else if (!strcmp(n->entry->type, "ReLU")) snprintf(extra, sizeof extra, "inplace=True");
    fprintf(f, "%s M, %.3f%% Params, %s GFLOPs, %.3f%% FLOPs, %s", py_round((double)n->params / 1e6, 3, p, sizeof p),
            share(n->params, total_params), py_round((double)n->flops / 1e9, 3, g, sizeof g),
            share(n->flops, total_flops), extra);
}

/* PyTorch's Module.__repr__: "Class(stats)" for a leaf, else the stats and
 * the children "(name): ..." on lines of their own, two spaces deeper. */
static void print_tree(FILE *f, const node *n, int indent, int64_t total_flops, int64_t total_params) {
    const char *cls = n->m ? (n->m->cls && n->m->cls->name ? n->m->cls->name : "Module") : n->entry->type;
    if (indent) fprintf(f, "(%s): ", n->name);
    fprintf(f, "%s(", cls);
    if (!n->n_kids) {
        stat_line(f, n, total_flops, total_params);
        fputc(')', f);
        return;
    }
    fprintf(f, "\n%*s", indent + 2, "");
    stat_line(f, n, total_flops, total_params);
    for (int i = 0; i < n->n_kids; i++) {
        fprintf(f, "\n%*s", indent + 2, "");
        print_tree(f, n->kids[i], indent + 2, total_flops, total_params);
    }
    fprintf(f, "\n%*s)", indent, "");
}

static void print_exact(FILE *f, const node *n) {
    fprintf(f, "%s %lld %lld\n", *n->path ? n->path : "(model)", (long long)n->flops, (long long)n->params);
    for (int i = 0; i < n->n_kids; i++) print_exact(f, n->kids[i]);
}

/* mmcv's flops_to_string / params_to_string with their defaults. */
static const char *flops_str(int64_t v, char *buf, size_t n) {
    char r[64];
    snprintf(buf, n, "%s GFLOPs", py_round((double)v / 1e9, 2, r, sizeof r));
    return buf;
}
static const char *params_str(int64_t v, char *buf, size_t n) {
    char r[64];
    if (v >= 1000000) snprintf(buf, n, "%s M", py_round((double)v / 1e6, 2, r, sizeof r));
    else if (v >= 1000) snprintf(buf, n, "%s k", py_round((double)v / 1e3, 2, r, sizeof r));
    else snprintf(buf, n, "%lld", (long long)v);
    return buf;
}

/* ----------------------------------------------------------------- main -- */

static bool parse_int(const char *s, long *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end) return false;
    *out = v;
    return true;
}

int main(int argc, char **argv) {
    md_process_init(argc, argv);
    const char *config = NULL;
    md_tool_opts to;
    md_error terr = { 0 };
    if (md_tool_opts_init(&to, argc, &terr) != 0) return die("%s", terr.msg);
    int n_shape = 0;
    long shape[2] = { 1280, 800 }, divisor = 32;
    bool exact = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int shared = md_tool_opts_parse(&to, argc, argv, &i, &terr);
        if (shared < 0) return die("%s", terr.msg);
        if (shared) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--shape")) {
            n_shape = 0;
            long v;
            while (i + 1 < argc && parse_int(argv[i + 1], &v)) {
                if (n_shape == 2) return die("%s", "--shape takes one or two numbers (H [W])");
                if (v < 1) return die("--shape: %s is not a positive size", argv[i + 1]);
                shape[n_shape++] = v;
                i++;
            }
            if (!n_shape) return die("%s", "--shape needs H [W]");
            if (n_shape == 1) shape[1] = shape[0];
        } else if (!strcmp(a, "--size-divisor") && i + 1 < argc) {
            if (!parse_int(argv[++i], &divisor)) return die("--size-divisor: %s is not an integer", argv[i]);
        } else if (!strcmp(a, "--exact")) exact = true;
        else if (a[0] == '-' && a[1]) {
            usage(stderr);
            return die("unknown option or missing value: %s", a);
        } else if (!config) config = a;
        else return die("unexpected argument %s", a);
    }
    if (!config) {
        usage(stderr);
        return 2;
    }
    long ori_h = shape[0], ori_w = shape[1], h = ori_h, w = ori_w;
    if (divisor > 0) {
        h = (h + divisor - 1) / divisor * divisor;
        w = (w + divisor - 1) / divisor * divisor;
    }

    md_error err = { 0 };
    int rc = 1;
    md_ctx *ctx = md_ctx_new(&err);
    md_cfg *cfg = NULL;
    md_module *model = NULL;
    md_flops *flops = NULL;
    node *root = NULL;
    if (!ctx) return die("%s", err.msg);
    if (!(cfg = md_tool_setup(ctx, config, &to, &err))) goto fail;

    /* build_detector(cfg.model, train_cfg, test_cfg); mmdet does not
     * initialise the weights here, so a Pretrained backbone is not read */
    const md_cfg *mc = md_cfg_get(cfg, "model");
    if (!mc) {
        md_failc(&err, MD_ERR_CONFIG, "%s: the config has no `model`", config);
        goto fail;
    }
    if (md_cfg_get(mc, "backbone.init_cfg") && md_cfg_apply_option(cfg, "model.backbone.init_cfg=None", &err)) goto fail;
    md_cfg *defaults = md_cfg_new_group();
    if (!defaults) {
        md_failc(&err, MD_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (!md_cfg_is_none(md_cfg_get(cfg, "train_cfg"))) md_cfg_set_copy(defaults, "train_cfg", md_cfg_get(cfg, "train_cfg"));
    if (!md_cfg_is_none(md_cfg_get(cfg, "test_cfg"))) md_cfg_set_copy(defaults, "test_cfg", md_cfg_get(cfg, "test_cfg"));
    model = md_build_from_cfg(ctx, "detectors", md_cfg_get(cfg, "model"), defaults, &err);
    md_cfg_free(defaults);
    if (!model || md_module_to_config_device(ctx, model, cfg, &err) != 0) goto fail;
    const md_model_iface *it = model->cls ? (const md_model_iface *)model->cls->iface : NULL;
    if (!it || !it->forward_dummy) {
        md_failc(&err, MD_ERR_CONFIG, "FLOPs counting needs forward_dummy, which %s does not have",
                 model->cls && model->cls->name ? model->cls->name : "the model");
        goto fail;
    }

    /* one dummy forward in eval mode, counting */
    md_module_train(model, false);
    md_grad_set_enabled(ctx, false);
    if (!(flops = md_flops_new(&err))) goto fail;
    md_tensor *img = md_tensor_zeros(ctx, MD_F32, MD_DIMS(1, 3, h, w));
    if (!img) {
        md_error_from_ctx(ctx, &err, NULL);
        goto fail;
    }
    md_flops_attach(ctx, flops);
    int frc = it->forward_dummy(ctx, model, img, &err);
    md_flops_attach(ctx, NULL);
    if (frc != 0) goto fail;

    if (!(root = build_tree(model, "", ""))) {
        md_failc(&err, MD_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < md_flops_count(flops); i++)
        if (place(root, md_flops_get(flops, i), i) != 0) {
            md_failc(&err, MD_ERR_NOMEM, "out of memory");
            goto fail;
        }
    accumulate(root);
    order_kids(root);
    int64_t total_flops = md_flops_total(flops, ""), total_params = md_module_num_params(model, true);
    print_tree(stdout, root, 0, total_flops, total_params);
    fputc('\n', stdout);

    const char *split = "==============================";
    char fs[64], ps[64];
    if (divisor > 0 && (h != ori_h || w != ori_w))
        printf("%s\nUse size divisor set input shape from (3, %ld, %ld) to (3, %ld, %ld)\n\n", split, ori_h, ori_w, h,
               w);
    printf("%s\nInput shape: (3, %ld, %ld)\nFlops: %s\nParams: %s\n%s\n", split, h, w,
           flops_str(total_flops, fs, sizeof fs), params_str(total_params, ps, sizeof ps), split);
    printf("Read these figures with care before quoting them: a FLOP here is one multiply-add, and only the\n"
           "layers the counter knows are counted (convolutions, normalisation, activations, pooling, linear\n"
           "layers, upsampling modules); additions, interpolation, RoIAlign and post-processing count nothing.\n");
    if (exact) {
        printf("%s\nexact counts (path flops params):\n", split);
        print_exact(stdout, root);
    }
    rc = 0;
fail:
    if (rc) fprintf(stderr, "mmdet-get-flops: error: %s\n", err.msg);
    node_free(root);
    md_flops_free(flops);
    md_module_free(model);
    md_cfg_free(cfg);
    md_ctx_free(ctx);
    md_tool_opts_free(&to);
    return rc;
}
