/* Test-time augmentation helpers: mmdet 2.x's bbox_flip, bbox_mapping,
 * bbox_mapping_back (mmdet/core/bbox/transforms.py), the merges of
 * mmdet/core/post_processing/merge_augs.py and of the dense heads'
 * BBoxTestMixin, and multiclass_nms (bbox_nms.py), shared by the heads. */
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "mmdet/bbox.h"

MD_API void md_bbox_flip(float *boxes, int64_t n, int cols, const int img_shape[2], md_flip_dir dir) {
    float h = (float)img_shape[0], w = (float)img_shape[1];
    bool fx = dir != MD_FLIP_VERTICAL, fy = dir == MD_FLIP_VERTICAL || dir == MD_FLIP_DIAGONAL;
    for (int64_t r = 0; r < n; r++)
        for (int c = 0; c + 4 <= cols; c += 4) {
            float *b = boxes + r * cols + c;
            if (fx) {
                float x1 = b[0];
                b[0] = w - b[2];
                b[2] = w - x1;
            }
            if (fy) {
                float y1 = b[1];
                b[1] = h - b[3];
                b[3] = h - y1;
            }
        }
}

MD_API void md_bbox_mapping(float *boxes, int64_t n, int cols, const int img_shape[2], const float scale_factor[4],
                            bool flip, md_flip_dir dir) {
    for (int64_t i = 0; i < n * cols; i++) boxes[i] *= scale_factor[i % cols % 4];
    if (flip) md_bbox_flip(boxes, n, cols, img_shape, dir);
}

MD_API void md_bbox_mapping_back(float *boxes, int64_t n, int cols, const int img_shape[2],
                                 const float scale_factor[4], bool flip, md_flip_dir dir) {
    if (flip) md_bbox_flip(boxes, n, cols, img_shape, dir);
    for (int64_t i = 0; i < n * cols; i++) boxes[i] /= scale_factor[i % cols % 4];
}

MD_API int md_merge_aug_dets(md_ctx *ctx, const md_det_result *cands, const md_img_meta *const *metas, int n_aug,
                             double iou_thr, int64_t max_per_img, md_det_result *out) {
    int64_t total = 0;
    for (int k = 0; k < n_aug; k++) total += cands[k].n > 0 ? cands[k].n : 0;
    md_tensor *boxes = md_tensor_empty(ctx, MD_F32, MD_DIMS(total, 4));
    md_tensor *scores = md_tensor_empty(ctx, MD_F32, MD_DIMS(total));
    md_tensor *labels = md_tensor_empty(ctx, MD_I64, MD_DIMS(total));
    if (!boxes || !scores || !labels) return -1;
    int64_t o = 0;
    for (int k = 0; k < n_aug; k++) {
        int64_t base = o;
        for (int j = 0; j < cands[k].n; j++, o++) {
            memcpy(md_f32(boxes) + 4 * o, cands[k].bboxes + 5 * j, 4 * sizeof(float));
            md_f32(scores)[o] = cands[k].bboxes[5 * j + 4];
            md_i64(labels)[o] = cands[k].labels[j];
        }
        md_bbox_mapping_back_meta(md_f32(boxes) + 4 * base, o - base, 4, metas[k]);
    }
    md_tensor *keep = total ? md_batched_nms(ctx, boxes, scores, labels, iou_thr, false, -1)
                            : md_tensor_empty(ctx, MD_I64, MD_DIMS(0));
    if (!keep) return -1;
    int64_t nk = md_tensor_numel(keep);
    if (max_per_img > 0 && nk > max_per_img) nk = max_per_img;
    float *ob = md_ctx_alloc(ctx, sizeof *ob * (size_t)(5 * nk + 1));
    int64_t *ol = md_ctx_alloc(ctx, sizeof *ol * (size_t)(nk + 1));
    if (!ob || !ol) return -1;
    for (int64_t j = 0; j < nk; j++) {
        int64_t s = md_i64(keep)[j];
        memcpy(ob + 5 * j, md_f32(boxes) + 4 * s, 4 * sizeof(float));
        ob[5 * j + 4] = md_f32(scores)[s];
        ol[j] = md_i64(labels)[s];
    }
    *out = (md_det_result){ (int)nk, ob, ol };
    return 0;
}

MD_API md_tensor *md_merge_aug_proposals(md_ctx *ctx, md_tensor *const *proposals, const md_img_meta *const *metas,
                                         int n_aug, double iou_thr, int64_t max_per_img) {
    int64_t total = 0;
    for (int k = 0; k < n_aug; k++) {
        if (!proposals[k]) return NULL;
        if (proposals[k]->ndim != 2 || proposals[k]->shape[1] != 5)
            return md_op_fail(ctx, "merge_aug_proposals", "variant %d: proposals must be [P, 5]", k);
        total += proposals[k]->shape[0];
    }
    md_tensor *all = md_tensor_empty(ctx, MD_F32, MD_DIMS(total, 5));
    if (!all) return NULL;
    int64_t o = 0;
    for (int k = 0; k < n_aug; k++) {
        md_tensor *p = md_contiguous(ctx, proposals[k]);
        if (!p) return NULL;
        int64_t P = p->shape[0];
        memcpy(md_f32(all) + 5 * o, md_f32(p), sizeof(float) * (size_t)(5 * P));
        for (int64_t j = 0; j < P; j++) md_bbox_mapping_back_meta(md_f32(all) + 5 * (o + j), 1, 4, metas[k]);
        o += P;
    }
    if (total == 0) return all;
    md_tensor *boxes = md_contiguous(ctx, md_slice(ctx, all, 1, 0, 4, 1));
    md_tensor *scores = md_contiguous(ctx, md_slice(ctx, all, 1, 4, 5, 1));
    scores = md_reshape(ctx, scores, MD_DIMS(-1));
    /* nms keeps in descending score order, so the best come first */
    md_tensor *keep = boxes && scores ? md_nms(ctx, boxes, scores, iou_thr, -1) : NULL;
    if (!keep) return NULL;
    int64_t K = keep->shape[0];
    if (max_per_img > 0 && K > max_per_img) K = max_per_img;
    return md_index_select(ctx, all, 0, md_slice(ctx, keep, 0, 0, K, 1));
}

MD_API int md_merge_aug_bboxes(md_ctx *ctx, md_tensor *const *bboxes, md_tensor *const *scores,
                               const md_img_meta *const *metas, int n_aug, md_tensor **merged_bboxes,
                               md_tensor **merged_scores) {
    *merged_bboxes = NULL;
    if (merged_scores) *merged_scores = NULL;
    if (n_aug < 1 || !bboxes[0]) {
        md_op_fail(ctx, "merge_aug_bboxes", "no variants");
        return -1;
    }
    const md_tensor *b0 = bboxes[0];
    if (b0->ndim != 2 || b0->shape[1] % 4) {
        md_op_fail(ctx, "merge_aug_bboxes", "boxes must be [K, 4 * k], got %d dims", b0->ndim);
        return -1;
    }
    int64_t K = b0->shape[0];
    int cols = (int)b0->shape[1];
    md_tensor *acc = md_tensor_zeros(ctx, MD_F32, MD_DIMS(K, cols));
    md_tensor *sacc = scores ? md_tensor_zeros(ctx, MD_F32, scores[0] ? scores[0]->ndim : 0,
                                               scores[0] ? scores[0]->shape : NULL) : NULL;
    float *tmp = md_ctx_alloc(ctx, sizeof *tmp * (size_t)(K * cols + 1));
    if (!acc || (scores && !sacc) || !tmp) return -1;
    for (int k = 0; k < n_aug; k++) {
        md_tensor *b = bboxes[k] ? md_contiguous(ctx, bboxes[k]) : NULL;
        if (!b || b->ndim != 2 || b->shape[0] != K || b->shape[1] != cols) {
            md_op_fail(ctx, "merge_aug_bboxes", "variant %d: boxes [%lld, %lld], variant 0 [%lld, %d]", k,
                       b ? (long long)b->shape[0] : -1LL, b && b->ndim > 1 ? (long long)b->shape[1] : -1LL,
                       (long long)K, cols);
            return -1;
        }
        memcpy(tmp, md_f32(b), sizeof *tmp * (size_t)(K * cols));
        md_bbox_mapping_back_meta(tmp, K, cols, metas[k]);
        for (int64_t i = 0; i < K * cols; i++) md_f32(acc)[i] += tmp[i];
        if (scores) {
            md_tensor *s = scores[k] ? md_contiguous(ctx, scores[k]) : NULL;
            if (!s || md_tensor_numel(s) != md_tensor_numel(sacc) || s->dtype != MD_F32) {
                md_op_fail(ctx, "merge_aug_bboxes", "variant %d: scores of another shape than variant 0's", k);
                return -1;
            }
            for (int64_t i = 0; i < md_tensor_numel(s); i++) md_f32(sacc)[i] += md_f32(s)[i];
        }
    }
    for (int64_t i = 0; i < K * cols; i++) md_f32(acc)[i] /= (float)n_aug;
    for (int64_t i = 0; sacc && i < md_tensor_numel(sacc); i++) md_f32(sacc)[i] /= (float)n_aug;
    *merged_bboxes = acc;
    if (merged_scores) *merged_scores = sacc;
    return 0;
}

MD_API int md_multiclass_nms(md_ctx *ctx, md_tensor *boxes, md_tensor *scores, int64_t C, double score_thr,
                             double iou_thr, int64_t max_per_img, md_tensor **det_bboxes, md_tensor **det_labels) {
    *det_bboxes = *det_labels = NULL;
    boxes = md_contiguous(ctx, boxes);
    scores = md_contiguous(ctx, scores);
    if (!boxes || !scores) return -1;
    int64_t K = scores->shape[0];
    bool per_class = boxes->shape[1] > 4;
    int64_t nv = 0;
    const float *sp = md_f32(scores), *bp = md_f32(boxes);
    for (int64_t k = 0; k < K; k++)
        for (int64_t c = 0; c < C; c++) nv += sp[k * (C + 1) + c] > score_thr;
    md_tensor *vb = md_tensor_empty(ctx, MD_F32, MD_DIMS(nv, 4)), *vs = md_tensor_empty(ctx, MD_F32, MD_DIMS(nv));
    md_tensor *vl = md_tensor_empty(ctx, MD_I64, MD_DIMS(nv));
    if (!vb || !vs || !vl) return -1;
    int64_t j = 0;
    for (int64_t k = 0; k < K; k++)
        for (int64_t c = 0; c < C; c++) {
            float s = sp[k * (C + 1) + c];
            if (!(s > score_thr)) continue;
            const float *b = per_class ? bp + (k * C + c) * 4 : bp + k * 4;
            memcpy(md_f32(vb) + j * 4, b, 4 * sizeof(float));
            md_f32(vs)[j] = s;
            md_i64(vl)[j++] = c;
        }
    if (nv == 0) {
        *det_bboxes = md_tensor_zeros(ctx, MD_F32, MD_DIMS(0, 5));
        *det_labels = md_tensor_zeros(ctx, MD_I64, MD_DIMS(0));
        return *det_bboxes && *det_labels ? 0 : -1;
    }
    md_tensor *keep = md_batched_nms(ctx, vb, vs, vl, iou_thr, false, max_per_img > 0 ? max_per_img : -1);
    if (!keep) return -1;
    int64_t D = keep->shape[0];
    if (max_per_img > 0 && D > max_per_img) D = max_per_img;
    *det_bboxes = md_tensor_empty(ctx, MD_F32, MD_DIMS(D, 5));
    *det_labels = md_tensor_empty(ctx, MD_I64, MD_DIMS(D));
    if (!*det_bboxes || !*det_labels) return -1;
    for (int64_t d = 0; d < D; d++) {
        int64_t i = md_i64(keep)[d];
        memcpy(md_f32(*det_bboxes) + d * 5, md_f32(vb) + i * 4, 4 * sizeof(float));
        md_f32(*det_bboxes)[d * 5 + 4] = md_f32(vs)[i];
        md_i64(*det_labels)[d] = md_i64(vl)[i];
    }
    return 0;
}
