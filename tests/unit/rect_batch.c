/* The two-image rectangles batch of the two-stage and dense-head tests. */
#include <stdlib.h>
#include "rect_batch.h"

/* See rect_batch.h. */
md_batch *rect_batch_new(md_ctx *ctx) {
    static const int boxes[2][2][5] = { { { 6, 8, 30, 40, 0 }, { 36, 30, 60, 52, 1 } },
                                        { { 20, 4, 50, 24, 2 }, { 8, 34, 28, 60, 0 } } };
    static const float colour[3][3] = { { 2, -1, -1 }, { -1, 2, -1 }, { -1, -1, 2 } };
    md_error err = { 0 };
    md_batch *b = calloc(1, sizeof *b);
    b->n = 2;
    b->img = md_tensor_new_persistent(ctx, MD_F32, MD_DIMS(2, 3, RECT_IMG, RECT_IMG), &err);
    b->metas = calloc(2, sizeof *b->metas);
    b->gt_bboxes = calloc(2, sizeof *b->gt_bboxes);
    b->gt_bboxes_ignore = calloc(2, sizeof *b->gt_bboxes_ignore);
    float *p = md_f32(b->img);
    for (int64_t i = 0; i < md_tensor_numel(b->img); i++) p[i] = -0.5f;
    for (int i = 0; i < 2; i++) {
        md_img_meta *m = &b->metas[i];
        m->ori_shape[0] = RECT_IMG * 2, m->ori_shape[1] = RECT_IMG * 2, m->ori_shape[2] = 3;
        m->img_shape[0] = m->pad_shape[0] = RECT_IMG, m->img_shape[1] = m->pad_shape[1] = RECT_IMG;
        m->img_shape[2] = m->pad_shape[2] = 3;
        for (int k = 0; k < 4; k++) m->scale_factor[k] = 0.5f;
        b->gt_bboxes[i].n = 2;
        b->gt_bboxes[i].xyxy = calloc(8, sizeof(float));
        b->gt_bboxes[i].labels = calloc(2, sizeof(int64_t));
        for (int k = 0; k < 2; k++) {
            const int *r = boxes[i][k];
            for (int j = 0; j < 4; j++) b->gt_bboxes[i].xyxy[4 * k + j] = (float)r[j];
            b->gt_bboxes[i].labels[k] = r[4];
            for (int c = 0; c < 3; c++)
                for (int y = r[1]; y < r[3]; y++)
                    for (int x = r[0]; x < r[2]; x++) p[((i * 3 + c) * RECT_IMG + y) * RECT_IMG + x] = colour[r[4]][c];
        }
    }
    return b;
}

void rect_batch_free(md_batch *b) {
    for (int i = 0; i < 2; i++) {
        free(b->gt_bboxes[i].xyxy);
        free(b->gt_bboxes[i].labels);
    }
    free(b->gt_bboxes);
    free(b->gt_bboxes_ignore);
    free(b->metas);
    md_tensor_free(b->img);
    free(b);
}
