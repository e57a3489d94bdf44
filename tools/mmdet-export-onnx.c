/* mmdet-export-onnx: a detector as an ONNX model, as mmdet 2.x's
 * tools/deployment/pytorch2onnx.py: build the model from the config, load
 * the checkpoint, trace its onnx_export on a zero batch of the fixed shape
 * (onnx.h: the ops record themselves) and write the graph with protobuf-c
 * from the ONNX message definitions (proto/onnx.proto). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/mmdet.h>
#include "onnx.pb-c.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: mmdet-export-onnx CONFIG CHECKPOINT --out MODEL.onnx [options]\n"
            "\n"
            "Export a detector to ONNX (mmdet's pytorch2onnx). The graph takes \"input\"\n"
            "[1, 3, H, W] (normalised and padded as the test pipeline leaves it) and gives\n"
            "\"dets\" [1, K, 5] (x1, y1, x2, y2, score; zero rows after the detections) and\n"
            "\"labels\" [1, K], K = test_cfg.max_per_img (the RoI head's for a two-stage\n"
            "detector), boxes in input pixels.\n"
            "\n"
            "  --out FILE                where to write the model (required)\n"
            "  --shape H W               input height and width (default 800 1216)\n"
            "  --opset N                 ONNX opset, %d to %d (default 11)\n"
            "  --no-postprocess          outputs are the head's raw cls_score_<l>, bbox_pred_<l>\n"
            "  --dynamic-export          any batch and input size (\"batch\", \"height\", \"width\";\n"
            "                            \"num_dets\" rows); --shape is the size traced\n",
            MD_ONNX_OPSET_MIN, MD_ONNX_OPSET_MAX);
    fputs(md_tool_opts_usage(), f);
}

static int die(const char *fmt, const char *what) {
    fprintf(stderr, "mmdet-export-onnx: error: ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\n");
    return 1;
}

static int parse_int(const char *s, int lo, int hi, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == 0 || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

/* ONNX IR version of the opsets we write (onnx/docs/Versioning.md). */
static int64_t ir_version(int opset) { return opset <= 11 ? 6 : opset <= 14 ? 7 : 8; }

/* ------------------------------------------------- graph -> protobuf -- */

typedef struct arena { void **p; size_t n, cap; } arena;

static void *take(arena *a, size_t bytes) {
    if (a->n == a->cap) {
        size_t c = a->cap ? 2 * a->cap : 256;
        void **q = realloc(a->p, c * sizeof *q);
        if (!q) return NULL;
        a->p = q, a->cap = c;
    }
    void *b = calloc(1, bytes ? bytes : 1);
    if (b) a->p[a->n++] = b;
    return b;
}

static void arena_free(arena *a) {
    for (size_t i = 0; i < a->n; i++) free(a->p[i]);
    free(a->p);
}

static Onnx__ValueInfoProto *value_info(arena *a, const md_onnx_value_info *v) {
    Onnx__ValueInfoProto *vi = take(a, sizeof *vi);
    Onnx__TypeProto *tp = take(a, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = take(a, sizeof *tt);
    Onnx__TensorShapeProto *sh = take(a, sizeof *sh);
    Onnx__TensorShapeProto__Dimension **dims = take(a, sizeof *dims * (size_t)(v->ndim + 1));
    if (!vi || !tp || !tt || !sh || !dims) return NULL;
    onnx__value_info_proto__init(vi);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sh);
    for (int d = 0; d < v->ndim; d++) {
        if (!(dims[d] = take(a, sizeof **dims))) return NULL;
        onnx__tensor_shape_proto__dimension__init(dims[d]);
        if (v->shape[d] < 0) {   /* dynamic: named */
            dims[d]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dims[d]->dim_param = (char *)(v->dim_param[d] ? v->dim_param[d] : "dynamic");
        } else {
            dims[d]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dims[d]->dim_value = v->shape[d];
        }
    }
    sh->n_dim = (size_t)v->ndim;
    sh->dim = dims;
    tt->elem_type = v->elem_type;
    tt->shape = sh;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    vi->name = (char *)v->name;
    vi->type = tp;
    return vi;
}

static Onnx__TensorProto *tensor(arena *a, const md_onnx_value_info *v) {
    Onnx__TensorProto *t = take(a, sizeof *t);
    int64_t *dims = take(a, sizeof *dims * (size_t)(v->ndim + 1));
    if (!t || !dims) return NULL;
    onnx__tensor_proto__init(t);
    memcpy(dims, v->shape, sizeof *dims * (size_t)v->ndim);
    t->n_dims = (size_t)v->ndim;
    t->dims = dims;
    t->data_type = v->elem_type;
    t->name = (char *)v->name;
    t->raw_data.len = v->bytes;   /* row-major little-endian: the host's layout */
    t->raw_data.data = (uint8_t *)v->data;
    return t;
}

static Onnx__AttributeProto *attribute(arena *a, const md_onnx_attr *at) {
    Onnx__AttributeProto *p = take(a, sizeof *p);
    if (!p) return NULL;
    onnx__attribute_proto__init(p);
    p->name = (char *)at->name;
    p->type = (Onnx__AttributeProto__AttributeType)at->kind;
    switch (at->kind) {
    case MD_ONNX_ATTR_INT: p->i = at->i; break;
    case MD_ONNX_ATTR_FLOAT: p->f = at->f; break;
    case MD_ONNX_ATTR_STRING:
        p->s.data = (uint8_t *)at->s;
        p->s.len = strlen(at->s);
        break;
    case MD_ONNX_ATTR_INTS:
        p->n_ints = (size_t)at->n;
        p->ints = (int64_t *)at->ints;
        break;
    case MD_ONNX_ATTR_FLOATS:
        p->n_floats = (size_t)at->n;
        p->floats = (float *)at->floats;
        break;
    }
    return p;
}

static Onnx__NodeProto *node(arena *a, const md_onnx_node_info *n) {
    Onnx__NodeProto *p = take(a, sizeof *p);
    Onnx__AttributeProto **attrs = take(a, sizeof *attrs * (size_t)(n->n_attrs + 1));
    if (!p || !attrs) return NULL;
    onnx__node_proto__init(p);
    p->n_input = (size_t)n->n_inputs;
    p->input = (char **)n->inputs;
    p->n_output = (size_t)n->n_outputs;
    p->output = (char **)n->outputs;
    p->name = (char *)n->name;
    p->op_type = (char *)n->op_type;
    for (int i = 0; i < n->n_attrs; i++)
        if (!(attrs[i] = attribute(a, &n->attrs[i]))) return NULL;
    p->n_attribute = (size_t)n->n_attrs;
    p->attribute = attrs;
    return p;
}

/* The model's bytes into *buf (malloc'ed); its length, or 0 out of memory. */
static size_t serialize(const md_onnx_graph_view *v, uint8_t **buf) {
    arena a = { 0 };
    size_t len = 0;
    Onnx__ModelProto model;
    Onnx__GraphProto graph;
    Onnx__OperatorSetIdProto opset, *opsets[1] = { &opset };
    onnx__model_proto__init(&model);
    onnx__graph_proto__init(&graph);
    onnx__operator_set_id_proto__init(&opset);
    opset.domain = "";
    opset.version = v->opset;
    Onnx__NodeProto **nodes = take(&a, sizeof *nodes * (size_t)(v->n_nodes + 1));
    Onnx__TensorProto **inits = take(&a, sizeof *inits * (size_t)(v->n_initializers + 1));
    Onnx__ValueInfoProto **ins = take(&a, sizeof *ins * (size_t)(v->n_inputs + 1));
    Onnx__ValueInfoProto **outs = take(&a, sizeof *outs * (size_t)(v->n_outputs + 1));
    if (!nodes || !inits || !ins || !outs) goto out;
    for (int i = 0; i < v->n_nodes; i++)
        if (!(nodes[i] = node(&a, &v->nodes[i]))) goto out;
    for (int i = 0; i < v->n_initializers; i++)
        if (!(inits[i] = tensor(&a, &v->initializers[i]))) goto out;
    for (int i = 0; i < v->n_inputs; i++)
        if (!(ins[i] = value_info(&a, &v->inputs[i]))) goto out;
    for (int i = 0; i < v->n_outputs; i++)
        if (!(outs[i] = value_info(&a, &v->outputs[i]))) goto out;
    graph.name = "mmdet-c";
    graph.n_node = (size_t)v->n_nodes, graph.node = nodes;
    graph.n_initializer = (size_t)v->n_initializers, graph.initializer = inits;
    graph.n_input = (size_t)v->n_inputs, graph.input = ins;
    graph.n_output = (size_t)v->n_outputs, graph.output = outs;
    /* no version string: the file depends only on the model and the opset */
    model.ir_version = ir_version(v->opset);
    model.producer_name = "mmdet-c";
    model.graph = &graph;
    model.n_opset_import = 1;
    model.opset_import = opsets;
    len = onnx__model_proto__get_packed_size(&model);
    if (!(*buf = malloc(len ? len : 1))) {
        len = 0;
        goto out;
    }
    onnx__model_proto__pack(&model, *buf);
out:
    arena_free(&a);
    return len;
}

/* ---------------------------------------------------------------- main -- */

/* The model's onnx_export traced on a zero batch [N, 3, H, W]: the graph,
 * or NULL with err set. */
static md_onnx_graph *trace(md_ctx *ctx, md_module *model, int opset, bool dynamic, int64_t N, int64_t H, int64_t W,
                            bool postprocess, md_error *err) {
    const md_model_iface *iface = model->cls->iface;
    md_onnx_graph *g = md_onnx_graph_new(opset, err);
    if (!g) return NULL;
    md_onnx_graph_set_dynamic(g, dynamic);
    md_tensor *img = md_tensor_zeros(ctx, MD_F32, MD_DIMS(N, 3, H, W));
    md_onnx_trace_begin(ctx, g);
    int trc = img ? md_onnx_input(ctx, img, "input") : -1;
    if (trc) md_error_from_ctx(ctx, err, "input");
    else trc = iface->onnx_export(ctx, model, img, postprocess, err);
    md_onnx_trace_end(ctx);
    if (trc) {
        md_onnx_graph_free(g);
        return NULL;
    }
    return g;
}

/* mmdet's dynamic_axes: the input's batch, height and width; the outputs'
 * batch, the detections' count, a raw map's height and width. */
static int name_dynamic_dims(md_onnx_graph *g, md_error *err) {
    md_onnx_graph_view v = md_onnx_graph_view_of(g);
    static const char *in_names[4] = { "batch", NULL, "height", "width" };
    for (int d = 0; d < 4; d++)
        if (in_names[d] && md_onnx_graph_dim_param(g, "input", d, in_names[d], err)) return -1;
    for (int i = 0; i < v.n_outputs; i++) {
        const md_onnx_value_info *o = &v.outputs[i];
        char name[3][300];
        snprintf(name[0], sizeof name[0], "batch");
        snprintf(name[1], sizeof name[1], "%s_height", o->name);
        snprintf(name[2], sizeof name[2], "%s_width", o->name);
        bool dets = !strcmp(o->name, "dets") || !strcmp(o->name, "labels");
        if (md_onnx_graph_dim_param(g, o->name, 0, name[0], err) ||
            (dets && md_onnx_graph_dim_param(g, o->name, 1, "num_dets", err)) ||
            (!dets && o->ndim == 4 && (md_onnx_graph_dim_param(g, o->name, 2, name[1], err) ||
                                        md_onnx_graph_dim_param(g, o->name, 3, name[2], err))))
            return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    md_process_init(argc, argv);
    const char *config = NULL, *checkpoint = NULL, *out = NULL;
    md_tool_opts to;
    md_error terr = { 0 };
    if (md_tool_opts_init(&to, argc, &terr) != 0) return die("%s", terr.msg);
    int H = 800, W = 1216, opset = 11;
    bool postprocess = true, dynamic = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int shared = md_tool_opts_parse(&to, argc, argv, &i, &terr);
        if (shared < 0) return die("%s", terr.msg);
        if (shared) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(a, "--shape") && i + 2 < argc) {
            if (parse_int(argv[i + 1], 1, 65536, &H) || parse_int(argv[i + 2], 1, 65536, &W))
                return die("--shape needs two positive integers H W, got %s", argv[i + 1]);
            i += 2;
        } else if (!strcmp(a, "--opset") && i + 1 < argc) {
            if (parse_int(argv[++i], 1, 1000, &opset) || opset < MD_ONNX_OPSET_MIN || opset > MD_ONNX_OPSET_MAX) {
                fprintf(stderr, "mmdet-export-onnx: error: --opset %s: the export is validated for opsets %d to %d\n",
                        argv[i], MD_ONNX_OPSET_MIN, MD_ONNX_OPSET_MAX);
                return 1;
            }
        } else if (!strcmp(a, "--no-postprocess")) postprocess = false;
        else if (!strcmp(a, "--dynamic-export")) dynamic = true;
        else if (a[0] == '-' && a[1]) {
            usage(stderr);
            return die("unknown option or missing value: %s", a);
        } else if (!config) config = a;
        else if (!checkpoint) checkpoint = a;
        else {
            usage(stderr);
            return die("unexpected argument: %s", a);
        }
    }
    if (!config || !checkpoint || !out) {
        usage(stderr);
        return 2;
    }

    md_error err = { 0 };
    int rc = 1;
    md_ctx *ctx = md_ctx_new(&err);
    md_cfg *cfg = NULL;
    md_module *model = NULL;
    md_onnx_graph *g = NULL;
    uint8_t *buf = NULL;
    if (!ctx) return die("%s", err.msg);
    if (!(cfg = md_tool_setup(ctx, config, &to, &err))) goto fail;
    if (to.device) {
        md_failc(&err, MD_ERR_CONFIG, "--device %s: the export traces on the CPU; leave --device out", to.device);
        goto fail;
    }
    /* the trace reads weights and constants on the host */
    if (!md_cfg_set_str(cfg, "device", "cpu")) {
        md_failc(&err, MD_ERR_NOMEM, "out of memory");
        goto fail;
    }
    md_ckpt_info info;
    if (!(model = md_detector_init(ctx, cfg, config, checkpoint, &info, &err))) goto fail;
    const md_model_iface *iface = model->cls->iface;
    if (!iface || !iface->onnx_export) {
        md_failc(&err, MD_ERR_CONFIG, "%s: the detector %s has no ONNX export", config, model->cls->name);
        goto fail;
    }
    md_module_train(model, false);
    md_grad_set_enabled(ctx, false);
    if (!(g = trace(ctx, model, opset, dynamic, 1, H, W, postprocess, &err))) {
        md_error_wrap(&err, "%s: export", config);
        goto fail;
    }
    if (dynamic) {
        /* a second trace at another batch and size must record the same
         * graph: nothing in it depends on the traced size */
        md_ctx_step_reset(ctx);
        md_onnx_graph *g2 = trace(ctx, model, opset, dynamic, 2, H + 32, W + 64, postprocess, &err);
        int same = g2 ? md_onnx_graph_compare(g, g2, &err) : -1;
        md_onnx_graph_free(g2);
        if (same || name_dynamic_dims(g, &err)) {
            md_error_wrap(&err, "%s: --dynamic-export", config);
            goto fail;
        }
    }
    md_onnx_graph_view v = md_onnx_graph_view_of(g);
    size_t len = serialize(&v, &buf);
    if (!len) {
        md_failc(&err, MD_ERR_NOMEM, "out of memory writing the model");
        goto fail;
    }
    FILE *f = fopen(out, "wb");
    if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
        md_failc(&err, MD_ERR_IO, "cannot write %s: %s", out, strerror(errno));
        goto fail;
    }
    size_t params = 0;
    for (int i = 0; i < v.n_initializers; i++) params += v.initializers[i].bytes;
    printf("%s: opset %d, %d nodes, %d initializers (%.1f KiB), input", out, opset, v.n_nodes, v.n_initializers,
           (double)params / 1024.0);
    for (int i = 0; i < v.n_inputs + v.n_outputs; i++) {
        const md_onnx_value_info *io = i < v.n_inputs ? &v.inputs[i] : &v.outputs[i - v.n_inputs];
        printf("%s%s%s[", i == v.n_inputs ? ", outputs " : i ? ", " : " ", i < v.n_inputs ? "" : io->name,
               i < v.n_inputs ? "" : " ");
        for (int d = 0; d < io->ndim; d++) {
            if (io->shape[d] < 0) printf("%s%s", d ? ", " : "", io->dim_param[d]);
            else printf("%s%lld", d ? ", " : "", (long long)io->shape[d]);
        }
        printf("]");
    }
    printf("\n");
    rc = 0;
fail:
    if (rc) fprintf(stderr, "mmdet-export-onnx: error: %s\n", err.msg);
    free(buf);
    md_onnx_graph_free(g);
    md_module_free(model);
    md_cfg_free(cfg);
    md_ctx_free(ctx);
    md_tool_opts_free(&to);
    return rc;
}
