/* Private to the convolution front-ends (op_conv.c, op_deform_conv.c). */
#ifndef MMDET_OP_CONV_H
#define MMDET_OP_CONV_H

#include "internal.h"

/* The shape of conv(x, w) after the checks every conv entry point shares
 * (f32, one device, 4-D, parameters, channels and groups, bias, output
 * size); -1 after md_op_fail naming `op`. */
int md__conv_check(md_ctx *ctx, const char *op, md_tensor *x, md_tensor *w, md_tensor *bias, md_conv2d_params p,
                   md__conv_shape *out);

#endif
