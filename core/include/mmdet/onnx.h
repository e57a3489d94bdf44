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
 * mul_scalar, clamp, max_pool2d, interpolate_nearest, upsample_nearest,
 * reshape, flatten, permute, transpose, cat, contiguous. The forms are
 * valid for ONNX opsets 11 to 17 (md_onnx_opset tells a symbolic part which). */
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
    int64_t shape[MD_MAX_DIMS];
    const void *data;           /* little-endian, row-major */
    size_t bytes;
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

#ifdef __cplusplus
}
#endif
#endif
