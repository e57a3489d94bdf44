/* Detection ops with mmcv 1.7 / mmdet 2.28 semantics: RoIAlign, NMS,
 * batched NMS and bbox overlaps. Argument checks, output allocation and
 * autograd here; the kernels are the backend's detection entries (on the
 * CPU backends/cpu/detection.c). Ops whose checks
 * or output size depend on values (RoI batch indices, NMS, batched NMS's
 * class offsets) read those values back to the host: one synchronisation. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

static bool is_boxes(const md_tensor *t) {
    return t->dtype == MD_F32 && t->ndim == 2 && t->shape[1] == 4;
}

/* A CPU step copy of a device tensor, not recorded for autograd (t itself
 * on the CPU). */
static md_tensor *host_copy(md_ctx *ctx, md_tensor *t) {
    bool prev = md_grad_set_enabled(ctx, false);
    md_tensor *h = md_tensor_to(ctx, t, MD_DEVICE_CPU);
    md_grad_set_enabled(ctx, prev);
    return h;
}

/* t (a CPU step tensor) copied to like's device, not recorded (t itself
 * when like is on the CPU). */
static md_tensor *to_device_of(md_ctx *ctx, md_tensor *t, const md_tensor *like) {
    if (!t) return t;
    bool prev = md_grad_set_enabled(ctx, false);
    md_tensor *d = md_tensor_to(ctx, t, md_tensor_device(like));
    md_grad_set_enabled(ctx, prev);
    return d;
}

/* ---- roi_align ---- */
typedef struct roi_align_saved {
    md_tensor *rois;   /* contiguous */
    int out_h, out_w, sampling_ratio;
    float spatial_scale;
    bool aligned;
} roi_align_saved;

static int roi_align_backward(md_ctx *ctx, md_node *node, md_tensor *grad_out) {
    if (!md_node_needs_grad(node, 0)) return 0;
    const roi_align_saved *s = md_node_saved(node);
    md_tensor *feat = md_node_input(node, 0);
    const md_backend *be = md__be(ctx, "roi_align", feat);
    if (!be) return -1;
    md_tensor *gd = md__empty_like_on(ctx, feat, MD_F32, feat->ndim, feat->shape);   /* the kernel overwrites it */
    if (!gd) return -1;
    if (be->roi_align_backward(md_f32(grad_out), feat->shape[0], feat->shape[1], feat->shape[2], feat->shape[3],
                               md_f32(s->rois), s->rois->shape[0], s->out_h, s->out_w, s->spatial_scale,
                               s->sampling_ratio, s->aligned, md_f32(gd)) != 0)
        return md__be_failed(ctx, "roi_align", be), -1;
    return md_node_accumulate(ctx, node, 0, gd);
}

MD_API md_tensor *md_roi_align(md_ctx *ctx, md_tensor *feat, md_tensor *rois, int out_h, int out_w,
                               double spatial_scale, int sampling_ratio, bool aligned) {
    static const char *op = "roi_align";
    if (!feat || !rois) return NULL;
    char sf[96], sr[96];
    md_tensor *both[2] = { feat, rois };
    if (!md__same_device(ctx, op, 2, both)) return NULL;
    const md_backend *be = md__be(ctx, op, feat);
    if (!be) return NULL;
    if (!be->roi_align_forward || !be->roi_align_backward) return md__no_kernel(ctx, op, feat);
    if (feat->dtype != MD_F32 || feat->ndim != 4)
        return md_op_fail(ctx, op, "feat must be f32 [N, C, H, W], got %s", md_tensor_describe(feat, sf, sizeof sf));
    if (rois->dtype != MD_F32 || rois->ndim != 2 || rois->shape[1] != 5)
        return md_op_fail(ctx, op, "rois must be f32 [K, 5] (batch index, x1, y1, x2, y2), got %s",
                          md_tensor_describe(rois, sr, sizeof sr));
    if (out_h <= 0 || out_w <= 0)
        return md_op_fail(ctx, op, "output size %dx%d must be positive", out_h, out_w);
    if (!(spatial_scale > 0) || !isfinite(spatial_scale))
        return md_op_fail(ctx, op, "spatial_scale %g must be positive", spatial_scale);
    if (sampling_ratio < 0)
        return md_op_fail(ctx, op, "sampling_ratio %d must be >= 0 (0 = adaptive)", sampling_ratio);
    md_tensor *f = md__contig(ctx, feat), *r = md__contig(ctx, rois);
    if (!f || !r) return NULL;
    int64_t K = r->shape[0], N = f->shape[0];
    md_tensor *rh = host_copy(ctx, r);   /* the checks below read the RoIs */
    if (!rh) return NULL;
    const float *rp = md_f32(rh);
    float scale = (float)spatial_scale;
    for (int64_t k = 0; k < K; k++) {
        const float *q = rp + 5 * k;
        if (!(q[0] >= 0 && q[0] < (float)N && q[0] == floorf(q[0])))
            return md_op_fail(ctx, op, "RoI %lld has batch index %g, not an integer in [0, %lld) for feat %s",
                              (long long)k, q[0], (long long)N, md_tensor_describe(feat, sf, sizeof sf));
        if (!isfinite(q[1]) || !isfinite(q[2]) || !isfinite(q[3]) || !isfinite(q[4]))
            return md_op_fail(ctx, op, "RoI %lld has a non-finite coordinate (%g, %g, %g, %g)",
                              (long long)k, q[1], q[2], q[3], q[4]);
        /* mmcv asserts this in aligned mode ("ROIs in ROIAlign cannot have
         * non-negative size!"); the legacy mode clamps sizes to 1 instead. */
        if (aligned && (q[3] * scale - q[1] * scale < 0 || q[4] * scale - q[2] * scale < 0))
            return md_op_fail(ctx, op, "RoI %lld (%g, %g, %g, %g) has negative size (x2 < x1 or y2 < y1)",
                              (long long)k, q[1], q[2], q[3], q[4]);
    }
    md_tensor *out = md__empty_like_on(ctx, f, MD_F32, MD_DIMS(K, f->shape[1], out_h, out_w));
    if (!out) return NULL;
    if (be->roi_align_forward(md_f32(f), N, f->shape[1], f->shape[2], f->shape[3], md_f32(r), K, out_h, out_w, scale,
                              sampling_ratio, aligned, md_f32(out)) != 0)
        return md__be_failed(ctx, op, be);
    md_tensor *ins[1] = { feat };   /* rois get no gradient, as in mmcv */
    md_node *node = md_autograd_record(ctx, out, ins, 1, roi_align_backward, op);
    if (node) {
        roi_align_saved *s = md_node_save(ctx, node, sizeof *s);
        if (!s) return NULL;
        *s = (roi_align_saved){ r, out_h, out_w, sampling_ratio, scale, aligned };
        if (md_node_keep(ctx, node, r)) return NULL;
    }
    return out;
}

/* ---- nms and batched_nms ---- */
#define MD_NMS_SPLIT_THR 10000   /* mmcv batched_nms's split_thr */

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}
static bool check_nms_args(md_ctx *ctx, const char *op, md_tensor *boxes, md_tensor *scores) {
    char sb[96], ss[96];
    md_tensor *both[2] = { boxes, scores };
    if (!md__same_device(ctx, op, 2, both)) return false;
    const md_backend *be = md__be(ctx, op, boxes);
    if (!be) return false;
    if (!be->nms && !be->nms_split) return md__no_kernel(ctx, op, boxes), false;
    if (!is_boxes(boxes)) {
        md_op_fail(ctx, op, "boxes must be f32 [N, 4] (x1, y1, x2, y2), got %s",
                   md_tensor_describe(boxes, sb, sizeof sb));
        return false;
    }
    if (scores->dtype != MD_F32 || scores->ndim != 1 || scores->shape[0] != boxes->shape[0]) {
        md_op_fail(ctx, op, "scores must be f32 [N] matching boxes %s, got %s",
                   md_tensor_describe(boxes, sb, sizeof sb), md_tensor_describe(scores, ss, sizeof ss));
        return false;
    }
    return true;
}

/* The backend's NMS (on a device the sort and the suppression mask run
 * there, the greedy pass on the host); the kept indices come back as a
 * tensor on b's device. nms_split keeps the CPU's batched_nms modes
 * (`split`); a backend with only nms runs one pass over the groups. */
static md_tensor *run_nms(md_ctx *ctx, const char *op, md_tensor *b, md_tensor *s, const int64_t *group,
                          int64_t n_groups, double iou_thr, int64_t max_num, bool split) {
    int64_t n = b->shape[0];
    int64_t *keep = md_ctx_alloc(ctx, sizeof(int64_t) * (size_t)(n ? n : 1));
    if (!keep) return NULL;
    const md_backend *be = md__be(ctx, op, b);
    if (!be) return NULL;
    /* the host groups, on b's device (on the CPU dg is hg itself, so hg
     * lives as long as the call) */
    md_tensor hg = { .dtype = MD_I64, .device = MD_CPU, .ndim = 1, .shape = { n }, .stride = { 1 }, .data = (void *)group };
    md_tensor *dg = NULL;
    if (group && !(dg = to_device_of(ctx, &hg, b))) return NULL;
    int64_t cnt = 0;
    int rc = 0;
    if (n > 0)
        rc = be->nms_split ? be->nms_split(md_f32(b), md_f32(s), dg ? md_i64(dg) : NULL, n_groups, n, (float)iou_thr,
                                           max_num, split, keep, &cnt)
                           : be->nms(md_f32(b), md_f32(s), dg ? md_i64(dg) : NULL, n, (float)iou_thr, max_num, keep,
                                     &cnt);
    if (rc != 0) return md__be_failed(ctx, op, be);
    return to_device_of(ctx, md_tensor_from(ctx, MD_I64, MD_DIMS(cnt), keep), b);
}

MD_API md_tensor *md_nms(md_ctx *ctx, md_tensor *boxes, md_tensor *scores, double iou_thr, int64_t max_num) {
    if (!boxes || !scores) return NULL;
    if (!check_nms_args(ctx, "nms", boxes, scores)) return NULL;
    md_tensor *b = md__contig(ctx, boxes), *s = md__contig(ctx, scores);
    if (!b || !s) return NULL;
    return run_nms(ctx, "nms", b, s, NULL, 0, iou_thr, max_num, false);
}

MD_API md_tensor *md_batched_nms(md_ctx *ctx, md_tensor *boxes, md_tensor *scores, md_tensor *idxs,
                                 double iou_thr, bool class_agnostic, int64_t max_num) {
    static const char *op = "batched_nms";
    if (!boxes || !scores || !idxs) return NULL;
    if (!check_nms_args(ctx, op, boxes, scores)) return NULL;
    char sb[96], si[96];
    md_tensor *all[2] = { boxes, idxs };
    if (!md__same_device(ctx, op, 2, all)) return NULL;
    if (idxs->dtype != MD_I64 || idxs->ndim != 1 || idxs->shape[0] != boxes->shape[0])
        return md_op_fail(ctx, op, "idxs must be i64 [N] matching boxes %s, got %s",
                          md_tensor_describe(boxes, sb, sizeof sb), md_tensor_describe(idxs, si, sizeof si));
    md_tensor *b = md__contig(ctx, boxes), *s = md__contig(ctx, scores), *ix = md__contig(ctx, idxs);
    if (!b || !s || !ix) return NULL;
    int64_t n = b->shape[0];
    if (class_agnostic || n == 0) return run_nms(ctx, op, b, s, NULL, 0, iou_thr, max_num, false);
    /* mmcv: boxes + idx * (boxes.max() + 1), in f32, then one NMS; the
     * offsets are computed on the host. */
    md_tensor *bh = host_copy(ctx, b), *ih = host_copy(ctx, ix);
    if (!bh || !ih) return NULL;
    const float *bp = md_f32(bh);
    const int64_t *ip = md_i64(ih);
    float mx = -INFINITY, mn = INFINITY;
    int64_t imin = INT64_MAX, imax = INT64_MIN;
    for (int64_t i = 0; i < 4 * n; i++) {
        mx = bp[i] > mx ? bp[i] : mx;
        mn = bp[i] < mn ? bp[i] : mn;
    }
    for (int64_t i = 0; i < n; i++) {
        imin = ip[i] < imin ? ip[i] : imin;
        imax = ip[i] > imax ? ip[i] : imax;
    }
    md_tensor *ob = md_tensor_empty(ctx, MD_F32, MD_DIMS(n, 4));
    if (!ob) return NULL;
    float *op_ = md_f32(ob), step = mx + 1.0f;
    for (int64_t i = 0; i < n; i++) {
        float off = (float)ip[i] * step;
        for (int k = 0; k < 4; k++) op_[4 * i + k] = bp[4 * i + k] + off;
    }
    /* With non-negative coordinates the offset copies of different classes
     * are at least 1 px apart, so they can never overlap: NMS then runs per
     * class, the same result with less work. Otherwise (negative coordinates,
     * a negative threshold, offsets beyond f32's exact range) one global NMS
     * over the offset boxes reproduces mmcv even where classes interact.
     * From split_thr (10000) boxes on, mmcv runs one NMS per class instead
     * (on the offset boxes too), which orders tied scores differently. */
    bool split = n >= MD_NMS_SPLIT_THR;
    double reach = fmax(fabs((double)imin), fabs((double)imax)) * ((double)mx + 1.0) + (double)mx;
    bool separable = split || (mn >= 0 && iou_thr >= 0 && reach < (double)(1 << 22) && imax - imin < n + 1024);
    ob = to_device_of(ctx, ob, b);
    if (!ob) return NULL;
    if (!separable) return run_nms(ctx, op, ob, s, NULL, 0, iou_thr, max_num, false);
    int64_t *grp = md_ctx_alloc(ctx, sizeof(int64_t) * (size_t)n);
    if (!grp) return NULL;
    int64_t n_groups = imax - imin + 1;
    if (imax - imin < n + 1024) {
        for (int64_t i = 0; i < n; i++) grp[i] = ip[i] - imin;
    } else {   /* sparse class ids (split path only): their ranks */
        int64_t *u = md_ctx_alloc(ctx, sizeof(int64_t) * (size_t)n);
        if (!u) return NULL;
        memcpy(u, ip, sizeof(int64_t) * (size_t)n);
        qsort(u, (size_t)n, sizeof *u, cmp_i64);
        n_groups = 0;
        for (int64_t i = 0; i < n; i++)
            if (!i || u[i] != u[i - 1]) u[n_groups++] = u[i];
        for (int64_t i = 0; i < n; i++)
            grp[i] = (int64_t *)bsearch(&ip[i], u, (size_t)n_groups, sizeof *u, cmp_i64) - u;
    }
    return run_nms(ctx, op, ob, s, grp, n_groups, iou_thr, max_num, split);
}

/* ---- bbox_overlaps ---- */
typedef struct overlaps_saved {
    md_tensor *a, *b;   /* contiguous */
    int mode;
    bool aligned;
    float eps;
} overlaps_saved;

static int bbox_overlaps_backward(md_ctx *ctx, md_node *node, md_tensor *grad_out) {
    const overlaps_saved *s = md_node_saved(node);
    bool ga_on = md_node_needs_grad(node, 0), gb_on = md_node_needs_grad(node, 1);
    md_tensor *ga = ga_on ? md__empty_like_on(ctx, s->a, MD_F32, MD_DIMS(s->a->shape[0], 4)) : NULL;
    md_tensor *gb = gb_on ? md__empty_like_on(ctx, s->b, MD_F32, MD_DIMS(s->b->shape[0], 4)) : NULL;
    if ((ga_on && !ga) || (gb_on && !gb)) return -1;
    const md_backend *be = md__be(ctx, "bbox_overlaps", s->a);
    if (!be) return -1;
    if (be->bbox_overlaps_backward(md_f32(s->a), s->a->shape[0], md_f32(s->b), s->b->shape[0], s->mode, s->aligned,
                                   s->eps, md_f32(grad_out), ga ? md_f32(ga) : NULL, gb ? md_f32(gb) : NULL) != 0)
        return md__be_failed(ctx, "bbox_overlaps", be), -1;
    if (ga && md_node_accumulate(ctx, node, 0, ga) != 0) return -1;
    if (gb && md_node_accumulate(ctx, node, 1, gb) != 0) return -1;
    return 0;
}

MD_API md_tensor *md_bbox_overlaps(md_ctx *ctx, md_tensor *a, md_tensor *b, md_iou_mode mode, bool aligned,
                                   double eps) {
    static const char *op = "bbox_overlaps";
    if (!a || !b) return NULL;
    char sa[96], sb[96];
    md_tensor *both[2] = { a, b };
    if (!md__same_device(ctx, op, 2, both)) return NULL;
    const md_backend *be = md__be(ctx, op, a);
    if (!be) return NULL;
    if (!be->bbox_overlaps_forward || !be->bbox_overlaps_backward) return md__no_kernel(ctx, op, a);
    if (mode != MD_IOU && mode != MD_IOF && mode != MD_GIOU)
        return md_op_fail(ctx, op, "unsupported mode %d (iou, iof or giou)", (int)mode);
    if (!is_boxes(a) || !is_boxes(b))
        return md_op_fail(ctx, op, "boxes must be f32 [N, 4] and [M, 4], got %s and %s",
                          md_tensor_describe(a, sa, sizeof sa), md_tensor_describe(b, sb, sizeof sb));
    if (aligned && a->shape[0] != b->shape[0])
        return md_op_fail(ctx, op, "aligned mode needs as many boxes on both sides, got %s and %s",
                          md_tensor_describe(a, sa, sizeof sa), md_tensor_describe(b, sb, sizeof sb));
    md_tensor *ac = md__contig(ctx, a), *bc = md__contig(ctx, b);
    if (!ac || !bc) return NULL;
    int64_t n = a->shape[0], m = b->shape[0];
    md_tensor *out = aligned ? md__empty_like_on(ctx, ac, MD_F32, MD_DIMS(n))
                             : md__empty_like_on(ctx, ac, MD_F32, MD_DIMS(n, m));
    if (!out) return NULL;
    if (be->bbox_overlaps_forward(md_f32(ac), n, md_f32(bc), m, (int)mode, aligned, (float)eps, md_f32(out)) != 0)
        return md__be_failed(ctx, op, be);
    md_tensor *ins[2] = { a, b };
    md_node *node = md_autograd_record(ctx, out, ins, 2, bbox_overlaps_backward, op);
    if (node) {
        overlaps_saved *s = md_node_save(ctx, node, sizeof *s);
        if (!s) return NULL;
        *s = (overlaps_saved){ ac, bc, (int)mode, aligned, (float)eps };
        if (md_node_keep(ctx, node, ac) || md_node_keep(ctx, node, bc)) return NULL;
    }
    return out;
}
