/* The tiny detectors' batch (detector_tiny.h). */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include "detector_tiny.h"
#include "testlib.h"

/* mmdet's ImageNet Normalize */
static const float MEAN[3] = { 123.675f, 116.28f, 103.53f }, STD[3] = { 58.395f, 57.12f, 57.375f };

void tiny_detector_batch(md_ctx *ctx, md_st *batch_st, md_batch *b, md_img_meta *metas) {
    memset(b, 0, sizeof *b);
    memset(metas, 0, 2 * sizeof *metas);
    md_tensor *u8 = golden_get(ctx, batch_st, "img_u8");
    cr_assert_eq(u8->dtype, MD_U8);
    cr_assert_eq(u8->ndim, 4);
    int64_t H = u8->shape[2], W = u8->shape[3];
    md_error err = { 0 };
    b->img = md_tensor_new_persistent(ctx, MD_F32, MD_DIMS(2, 3, H, W), &err);
    cr_assert_not_null(b->img, "%s", err.msg);
    for (int i = 0; i < 2; i++) {
        char key[32];
        snprintf(key, sizeof key, "meta%d.img_shape", i);
        md_tensor *shape = golden_get(ctx, batch_st, key);
        snprintf(key, sizeof key, "meta%d.scale_factor", i);
        md_tensor *sf = golden_get(ctx, batch_st, key);
        md_img_meta *m = &metas[i];
        m->img_shape[0] = (int)md_i64(shape)[0], m->img_shape[1] = (int)md_i64(shape)[1], m->img_shape[2] = 3;
        m->pad_shape[0] = (int)H, m->pad_shape[1] = (int)W, m->pad_shape[2] = 3;
        memcpy(m->scale_factor, md_f32(sf), 4 * sizeof(float));
        for (int k = 0; k < 2; k++) m->ori_shape[k] = (int)lroundf((float)m->img_shape[k] / m->scale_factor[k]);
        m->ori_shape[2] = 3;
        for (int c = 0; c < 3; c++)
            for (int64_t y = 0; y < H; y++)
                for (int64_t x = 0; x < W; x++) {
                    int64_t o = ((i * 3 + c) * H + y) * W + x;
                    md_f32(b->img)[o] = y < m->img_shape[0] && x < m->img_shape[1]
                                            ? ((float)md_u8(u8)[o] - MEAN[c]) / STD[c] : 0.0f;
                }
    }
    b->n = 2;
    b->metas = metas;
}
