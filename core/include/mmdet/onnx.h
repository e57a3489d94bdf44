/* ONNX export by tracing, as torch.onnx.export: while a graph is attached
 * to the context (md_onnx_trace_begin), the tensor ops report each call as
 * ONNX nodes (conv2d as Conv, with a folded BatchNorm as its weights;
 * relu as Relu; add as Add; reshape as Reshape, ...), parameters become
 * initializers under their state-dict names, and every tensor made by a
 * traced op gets a value name. Nothing is recorded, and nothing costs
 * more than one test of a pointer, when no graph is attached.
 *
 * The graph only holds nodes, initializers, inputs and outputs: writing
 * the .onnx file (protocol buffers) is the exporter's job
 * (tools/mmdet-export-onnx), which reads them back with md_onnx_graph_view.
 *
 * A tensor an op reads that no traced op made is refused with an error
 * naming the op and the scope, unless it is persistent (a parameter or
 * buffer: an initializer) or was declared a constant (md_onnx_constant,
 * e.g. anchors computed for the export's fixed input size): an op without
 * an ONNX form cannot silently become a constant of the graph.
 *
 * Parts with their own ONNX form (post-processing, a box coder, NMS) build
 * nodes directly with md_onnx_node on value names, like a symbolic
 * function in PyTorch. Traced ops: conv2d, conv2d_fused, batch_norm2d
 * (eval), group_norm (InstanceNormalization over the groups, as PyTorch
 * writes it), relu, relu_, sigmoid, exp, add, add_, sub, mul, div, add_scalar,
 * mul_scalar, clamp, max_pool2d, interpolate_nearest, interpolate_nearest_like,
 * upsample_nearest, reshape, flatten (Flatten), linear (Gemm, or MatMul and
 * Add past two dimensions), softmax, permute, transpose, cat, contiguous.
 * The forms are valid for ONNX opsets 11 to 17 (md_onnx_opset tells a
 * symbolic part which).
 *
 * A dynamic graph (md_onnx_graph_set_dynamic, mmdet's --dynamic-export)
 * takes any batch and image size: traced reshapes keep the batch of their
 * input (0 in the Reshape shape) and the -1 they were given, resizes to
 * another tensor's size read its Shape, and symbolic parts derive sizes
 * from Shape instead of constants (md_onnx_dynamic tells them). Two traces
 * at different sizes must then record the same graph (md_onnx_graph_compare):
 * a constant that depends on the size is an error naming its node. */
#ifndef MMDET_ONNX_H
#define MMDET_ONNX_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MD_ONNX_OPSET_MIN 11
#define MD_ONNX_OPSET_MAX 17

/* ONNX TensorProto.DataType codes of the element types we write. */
enum { MD_ONNX_FLOAT = 1, MD_ONNX_UINT8 = 2, MD_ONNX_INT32 = 6, MD_ONNX_INT64 = 7, MD_ONNX_BOOL = 9 };

typedef enum md_onnx_attr_kind {
    MD_ONNX_ATTR_FLOAT = 1, MD_ONNX_ATTR_INT = 2, MD_ONNX_ATTR_STRING = 3,
    MD_ONNX_ATTR_FLOATS = 6, MD_ONNX_ATTR_INTS = 7
} md_onnx_attr_kind;   /* AttributeProto.AttributeType codes */

typedef struct md_onnx_attr {
    const char *name;
    md_onnx_attr_kind kind;
    int64_t i;
    float f;
    const char *s;
    const int64_t *ints;
    const float *floats;
    int n;                      /* entries of ints / floats */
} md_onnx_attr;

#define MD_ONNX_INT(name_, v_) ((md_onnx_attr){ .name = (name_), .kind = MD_ONNX_ATTR_INT, .i = (v_) })
#define MD_ONNX_FLOAT(name_, v_) ((md_onnx_attr){ .name = (name_), .kind = MD_ONNX_ATTR_FLOAT, .f = (float)(v_) })
#define MD_ONNX_STRING(name_, v_) ((md_onnx_attr){ .name = (name_), .kind = MD_ONNX_ATTR_STRING, .s = (v_) })
#define MD_ONNX_INTS(name_, p_, n_) ((md_onnx_attr){ .name = (name_), .kind = MD_ONNX_ATTR_INTS, .ints = (p_), .n = (n_) })

typedef struct md_onnx_node_info {
    const char *op_type, *name;
    const char **inputs;        /* "" for an omitted optional input */
    int n_inputs;
    const char **outputs;
    int n_outputs;
    const md_onnx_attr *attrs;
    int n_attrs;
} md_onnx_node_info;

/* An initializer (data set) or a graph input/output (data NULL). */
typedef struct md_onnx_value_info {
    const char *name;
    int elem_type;              /* MD_ONNX_FLOAT, ... */
    int ndim;
    int64_t shape[MD_MAX_DIMS]; /* < 0: a dynamic dimension, named dim_param[d] */
    const void *data;           /* little-endian, row-major */
    size_t bytes;
    const char *dim_param[MD_MAX_DIMS];
} md_onnx_value_info;

typedef struct md_onnx_graph md_onnx_graph;

/* What the exporter writes: valid until the graph changes or is freed. */
typedef struct md_onnx_graph_view {
    int opset;
    const md_onnx_node_info *nodes;
    int n_nodes;
    const md_onnx_value_info *initializers;
    int n_initializers;
    const md_onnx_value_info *inputs, *outputs;
    int n_inputs, n_outputs;
} md_onnx_graph_view;

/* opset in [MD_ONNX_OPSET_MIN, MD_ONNX_OPSET_MAX], else NULL with err set. */
md_onnx_graph *md_onnx_graph_new(int opset, md_error *err);
void md_onnx_graph_free(md_onnx_graph *g);
md_onnx_graph_view md_onnx_graph_view_of(const md_onnx_graph *g);
/* Makes g a dynamic graph (see above) before the trace. */
void md_onnx_graph_set_dynamic(md_onnx_graph *g, bool dynamic);
/* Dimension d of the graph input or output `io` is dynamic, named `param`
 * ("batch", "height", ...). 0, or -1 with err set (no such input/output). */
int md_onnx_graph_dim_param(md_onnx_graph *g, const char *io, int d, const char *param, md_error *err);
/* 0 when a and b hold the same nodes (op, inputs, outputs, attributes) and
 * initializers (name, type, shape, bytes); else -1 with err naming the first
 * difference (the inputs' and outputs' declared shapes are not compared). */
int md_onnx_graph_compare(const md_onnx_graph *a, const md_onnx_graph *b, md_error *err);

/* Attaches g to the context: the ops report to it until md_onnx_trace_end.
 * Trace in eval mode with grad off. */
void md_onnx_trace_begin(md_ctx *ctx, md_onnx_graph *g);
void md_onnx_trace_end(md_ctx *ctx);
/* Detaches the graph and returns it (NULL when none) for work that must
 * not be recorded (constants computed by ops); md_onnx_trace_begin resumes. */
md_onnx_graph *md_onnx_trace_pause(md_ctx *ctx);
/* Whether a graph is attached, and its opset (0 when none). */
bool md_onnx_tracing(const md_ctx *ctx);
int md_onnx_opset(const md_ctx *ctx);
/* Whether the attached graph is dynamic (false when none). */
bool md_onnx_dynamic(const md_ctx *ctx);

/* t is the graph input `name` (its shape and f32 type as is). 0, or -1
 * (ctx error). */
int md_onnx_input(md_ctx *ctx, md_tensor *t, const char *name);
/* Graph output `name` from the value of t, or from the value `value` of
 * the given type and shape (post-processing built with md_onnx_node). */
int md_onnx_output(md_ctx *ctx, md_tensor *t, const char *name);
int md_onnx_output_value(md_ctx *ctx, const char *value, const char *name, int elem_type, int ndim,
                         const int64_t *shape);

/* The value name of t: a traced op's result, a graph input, a constant or
 * a persistent tensor (added as an initializer named after the parameter
 * or the scope). NULL with the ctx error for a tensor none of these made. */
const char *md_onnx_value(md_ctx *ctx, md_tensor *t);
/* Declares t (a step tensor computed outside the trace from no traced
 * value, e.g. anchors for the fixed input size) a constant of the graph:
 * its current data becomes an initializer. Returns its value name. */
const char *md_onnx_constant(md_ctx *ctx, md_tensor *t, const char *hint);
/* Initializers from data: f32 and i64 of the given shape. */
const char *md_onnx_const_f32(md_ctx *ctx, const char *hint, int ndim, const int64_t *shape, const float *data);
const char *md_onnx_const_i64(md_ctx *ctx, const char *hint, int ndim, const int64_t *shape, const int64_t *data);
/* Appends a node op_type(inputs) named after the current scope; out[0 ..
 * n_out) receive fresh output value names. 0, or -1 with the ctx error. */
int md_onnx_node(md_ctx *ctx, const char *op_type, const char *const *inputs, int n_in, const char **out,
                 int n_out, const md_onnx_attr *attrs, int n_attrs);
/* The same with one output: its name, or NULL. */
const char *md_onnx_node1(md_ctx *ctx, const char *op_type, const char *const *inputs, int n_in,
                          const md_onnx_attr *attrs, int n_attrs);
/* t's value is `value` (a symbolic op's result for a tensor the op also
 * computed). 0 or -1. */
int md_onnx_bind(md_ctx *ctx, md_tensor *t, const char *value);

/* ---- symbolic helpers (onnx_ops.c) for the parts that build nodes ----
 * Each takes and returns value names; a NULL input gives NULL (the first
 * failure's error stays in the context), so calls nest. */
const char *md_onnx_op2(md_ctx *ctx, const char *op, const char *a, const char *b);
const char *md_onnx_i64s(md_ctx *ctx, const char *hint, int n, const int64_t *v);   /* [n] */
const char *md_onnx_f32s(md_ctx *ctx, const char *hint, int n, const float *v);     /* [n] */
/* Reshape to a constant shape (0 copies the input's dimension, -1 infers). */
const char *md_onnx_reshape(md_ctx *ctx, const char *v, int ndim, const int64_t *shape);
/* v[start:end] along axis. */
const char *md_onnx_slice(md_ctx *ctx, const char *v, int64_t axis, int64_t start, int64_t end);
/* Shape(v)[start:end], i64 [end - start]. */
const char *md_onnx_shape(md_ctx *ctx, const char *v, int64_t start, int64_t end);
const char *md_onnx_concat(md_ctx *ctx, const char *const *vs, int n, int64_t axis);
const char *md_onnx_cast(md_ctx *ctx, const char *v, int elem_type);
/* rows inds [N, k] (i64) of x [N, K, d] (d constant) -> [N, k, d] */
const char *md_onnx_gather_rows(md_ctx *ctx, const char *x, const char *inds, int64_t d);
/* TopK along axis 1 of x [N, K] (largest, sorted): k is min(k, K), taken
 * from Shape(x) in a dynamic graph or when K_static (the traced K) is < 0,
 * a constant otherwise. 0 or -1. */
int md_onnx_topk(md_ctx *ctx, const char *x, int64_t k, int64_t K_static, const char **vals, const char **inds);

/* Detections of a batch as values: dets [N, K, 5] (x1, y1, x2, y2, score;
 * zero rows after the detections) and labels [N, K] i64; n and k their
 * sizes in this trace (which a dynamic graph does not fix). */
typedef struct md_onnx_dets { const char *dets, *labels; int64_t n, k; } md_onnx_dets;

/* The traced input image: its value, and its static batch and size. */
typedef struct md_onnx_image { const char *input; int64_t n, h, w; } md_onnx_image;
/* f32 [2] (w, h) of the input: boxes are clipped to it (mmdet's
 * img_shape_for_onnx): Shape(input) in a dynamic graph, else a constant. */
const char *md_onnx_image_max_wh(md_ctx *ctx, const md_onnx_image *img);

/* mmcv's add_dummy_nms_for_onnx: NonMaxSuppression of boxes [N, T, 4] per
 * class of scores [N, T, C] (max_per_class boxes per class above score_thr,
 * overlaps above iou_thr suppressed), the selected (image, class, box) rows
 * as a 0/1 mask over every candidate, then the max_per_img best (TopK) as
 * dets/labels; rows past the detections are zero. */
typedef struct md_onnx_nms_opts {
    int64_t max_per_class;
    double iou_thr, score_thr;
    int64_t max_per_img;        /* <= 0: every candidate */
    const char *labels;         /* [N, T] i64 label of each candidate (C == 1); NULL: the class index */
    const char *out_boxes;      /* [N, T, 4] written to dets in place of boxes (NULL: boxes) */
} md_onnx_nms_opts;
/* T: the number of candidates in this trace (< 0: unknown). out->n is
 * the caller's to set. 0 or -1. */
int md_onnx_nms(md_ctx *ctx, const char *boxes, const char *scores, int64_t T, int64_t C, const md_onnx_nms_opts *o,
                md_onnx_dets *out);
/* The graph outputs "dets" and "labels" from d (their batch and count
 * dimensions dynamic in a dynamic graph). 0 or -1. */
int md_onnx_output_dets(md_ctx *ctx, const md_onnx_dets *d);

#ifdef __cplusplus
}
#endif
#endif
