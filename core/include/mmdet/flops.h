/* Counting FLOPs per module, as mmcv's get_model_complexity_info does
 * (mmcv/cnn/utils/flops_counter.py, which mmdet's get_flops.py runs).
 *
 * mmcv hooks the forward of leaf layers by their PyTorch type and adds a
 * count from the call's shapes; a "FLOP" there is one multiply-add:
 *   Conv2d           output elements x kh x kw x in_channels / groups
 *                    (+ output elements when it has a bias)
 *   ConvTranspose2d  input positions x kh x kw x in x out / groups
 *                    (+ out x output positions with a bias)
 *   BatchNorm2d, GroupNorm   input elements, twice with affine parameters
 *   Linear           input elements x out_features
 *   ReLU             output elements;  MaxPool2d, AvgPool2d: input elements
 *   Upsample         output elements of the batch's first image
 * Functional calls (F.relu, F.interpolate, F.max_pool2d, additions) are not
 * layers there and count nothing. Here the layers of nn.h count themselves
 * when called through md_module_call / md_module_forward (and inside
 * md_nn_conv_bn_act's fused pass); a component whose mmdet counterpart
 * runs a parameterless layer that is no md_module here (ResNet's `relu`
 * and `maxpool`, ConvModule's `activate`) reports it with md_flops_relu /
 * md_flops_pool under that layer's name. Counts go to the module scope of
 * the call (md_scope_push), so "backbone.layer1.0.conv1".
 *
 *     md_flops *f = md_flops_new(err);
 *     md_flops_attach(ctx, f);
 *     ... one forward ...
 *     md_flops_attach(ctx, NULL);
 *     int64_t all = md_flops_total(f, "");
 *
 * Off (nothing attached), a layer call costs one pointer test.
 */
#ifndef MMDET_FLOPS_H
#define MMDET_FLOPS_H

#include <stdint.h>
#include "ctx.h"
#include "module.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct md_flops md_flops;

/* One counted layer: its full module path, its class name (the md_module's,
 * or the one given to md_flops_add) and the multiply-adds summed over its
 * calls. Entries keep the order of their first count. */
typedef struct md_flops_entry {
    const char *path;
    const char *type;
    int64_t flops;
} md_flops_entry;

md_flops *md_flops_new(md_error *err);
void md_flops_free(md_flops *f);
/* Counts into f from now on (NULL: stop). The caller keeps f. */
void md_flops_attach(md_ctx *ctx, md_flops *f);
bool md_flops_on(const md_ctx *ctx);

/* Adds `flops` to the layer `name` under the current scope ("" or NULL: the
 * scope itself); `type` names its class ("ReLU"). No-op when off. */
void md_flops_add(md_ctx *ctx, const char *name, const char *type, int64_t flops);
/* mmcv's count of an nn.ReLU `name` whose output is `out`, and of a pooling
 * layer `name` (MaxPool2d) whose input is `in`. */
void md_flops_relu(md_ctx *ctx, const char *name, const md_tensor *out);
void md_flops_pool(md_ctx *ctx, const char *name, const char *type, const md_tensor *in);
/* mmcv's count of a layer of nn.h (Conv2d, ConvTranspose2d, BatchNorm2d,
 * GroupNorm, Linear, ReLU, MaxPool2d) run on x giving y; nothing for any
 * other module. md_module_forward calls it; a component that runs a
 * layer's arithmetic itself (a fused pass) calls it in the layer's scope. */
void md_flops_layer(md_ctx *ctx, const char *name, const md_module *layer, const md_tensor *x, const md_tensor *y);

int md_flops_count(const md_flops *f);
const md_flops_entry *md_flops_get(const md_flops *f, int i);
/* The sum over the entry at `path` and every entry below it ("" or NULL:
 * all). */
int64_t md_flops_total(const md_flops *f, const char *path);

#ifdef __cplusplus
}
#endif
#endif
