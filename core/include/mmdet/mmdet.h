/* The plugin API in one include. */
#ifndef MMDET_H
#define MMDET_H
#include "error.h"
#include "ctx.h"
#include "config.h"
#include "registry.h"
#include "tensor.h"
#include "device.h"
#include "ops.h"
#include "safetensors.h"
#include "module.h"
#include "optim.h"
#include "nn.h"
#include "flops.h"
#include "checkpoint.h"
#include "pth.h"
#include "runner.h"
#include "models.h"
#include "losses.h"
#include "onnx.h"
#include "dist.h"
#include "amp.h"
#endif
