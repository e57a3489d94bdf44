/* A fixture batch for detector tests: two 64x64 images (originals twice as
 * large: scale_factor 0.5), each with two filled rectangles whose colour is
 * the class (3 classes), and their ground truth. */
#ifndef MMDET_TEST_RECT_BATCH_H
#define MMDET_TEST_RECT_BATCH_H

#include <mmdet/mmdet.h>

#define RECT_IMG 64
/* Persistent image tensor and malloc'ed tables; free with rect_batch_free. */
md_batch *rect_batch_new(md_ctx *ctx);
void rect_batch_free(md_batch *b);

#endif
