/* PyTorch weights: files written by torch.save, read without Python.
 *
 * Both of torch.save's formats are read: the zip archive of torch >= 1.6
 * (<name>/data.pkl, a pickle, and <name>/data/<key>, one raw little-endian
 * storage per entry, stored uncompressed) and the legacy stream of older
 * versions (_use_new_zipfile_serialization=False).
 *
 * The pickle is read by a restricted unpickler that never executes anything:
 * it understands the opcodes of protocols 0 to 5 that build plain values
 * (None, bools, ints, floats, strings, bytes, tuples, lists, dicts, sets)
 * and accepts only these globals:
 *   collections.OrderedDict
 *   torch._utils._rebuild_tensor, _rebuild_tensor_v2, _rebuild_parameter,
 *     _rebuild_parameter_with_state
 *   torch.{Float,Double,Half,BFloat16,Long,Int,Short,Char,Byte,Bool}Storage
 * Any other global (os.system, builtins.eval, a model class from torch.save
 * of a whole nn.Module, numpy scalars, ...) makes the whole file an error
 * naming the global and the file. Every offset, length, memo index, size and
 * stride is bounds-checked: a corrupt or truncated file is an error naming
 * the file, never a crash.
 *
 * The weights come back as an in-memory md_st (safetensors.h), so everything
 * that loads an md_st (md_module_load_state, checkpoints, init_cfg
 * Pretrained) takes them:
 *   - the state dict is the top-level dict, or its "state_dict" entry (mmcv
 *     and mmdet checkpoints: {"meta", "state_dict", "optimizer"}), or its
 *     "model" entry; its tensor values are the entries, in file order (other
 *     values are skipped);
 *   - tensors are made contiguous (storage offset and strides applied);
 *     float64, float16 and bfloat16 become float32, int64 stays int64,
 *     int32/int16/int8 become int32, uint8 and bool become uint8;
 *   - the checkpoint's "meta" dict becomes metadata: strings as they are,
 *     numbers as decimal text, anything else (CLASSES, hook_msgs) as JSON.
 */
#ifndef MMDET_PTH_H
#define MMDET_PTH_H

#include <stdbool.h>
#include "safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reads a torch.save file (zip or legacy) into an in-memory md_st
 * (md_st_close frees it). NULL with err set (naming the file) on error or
 * refusal. */
md_st *md_pth_open(const char *path, md_error *err);

/* True when the first bytes of the file are a torch.save file's: a zip
 * ("PK\3\4") or a pickle (protocol 2+ opcode 0x80). false when unreadable. */
bool md_pth_sniff(const char *path);

/* Weights by content, whatever the file's name: torch.save files through
 * md_pth_open, anything else as safetensors (md_st_open). */
md_st *md_pth_open_weights(const char *path, md_error *err);

#ifdef __cplusplus
}
#endif
#endif
