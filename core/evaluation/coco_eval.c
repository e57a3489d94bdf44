/* COCO bbox and segm evaluation, a line-for-line port of pycocotools'
 * COCOeval (evaluate -> evaluateImg -> accumulate -> summarize) for iouType
 * 'bbox' and 'segm' (masks as RLEs: GT through annToRLE at its image's
 * size, IoU by rleIou, a detection's area its mask's).
 *
 * Where pycocotools' choices look arbitrary they are kept on purpose:
 * stable (mergesort) score ordering, the 'ignore' flag overridden by
 * 'iscrowd', a match to a GT whose id is 0 counting as no match, det area
 * = w * h, and numpy's pairwise summation for the final means. The GT and
 * detections are grouped by (category, image) once; categories are then
 * independent and run in parallel. */
#define _GNU_SOURCE   /* qsort_r */
#pragma GCC optimize("fp-contract=off")   /* same roundings as numpy: no FMA */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "mmdet/coco.h"

enum { T = MD_COCO_T, R = MD_COCO_R, A = MD_COCO_A, M = MD_COCO_M, MAXDET = 100 };
static const int MAX_DETS[M] = {1, 10, 100};
static const double AREA_RNG[A][2] = {{0, 1e5 * 1e5}, {0, 32 * 32}, {32 * 32, 96 * 96}, {96 * 96, 1e5 * 1e5}};
static const char *const AREA_LBL[A] = {"all", "small", "medium", "large"};

/* np.linspace(start, stop, num): i * step + start, the last one exactly stop. */
static double linspace(double start, double stop, int num, int i) {
    if (i == num - 1) return stop;
    double step = (stop - start) / (num - 1);
    volatile double y = (double)i * step;
    return y + start;
}
MD_API double md_coco_iou_threshold(int t) { return linspace(0.5, 0.95, T, t); }
MD_API double md_coco_recall_point(int r) { return linspace(0.0, 1.0, R, r); }

/* numpy's add.reduce for a contiguous float64 array: the identity 0 plus
 * the pairwise sum (8-way unrolled blocks of up to 128). */
static double pairwise(const double *a, size_t n) {
    if (n < 8) {
        double res = 0.;
        for (size_t i = 0; i < n; i++) res += a[i];
        return res;
    }
    if (n <= 128) {
        double r[8];
        for (int j = 0; j < 8; j++) r[j] = a[j];
        size_t i;
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++) r[j] += a[i + j];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += a[i];
        return res;
    }
    size_t n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise(a, n2) + pairwise(a + n2, n - n2);
}
static double np_mean(const double *a, size_t n) {
    if (n == 0) return -1;
    return (0.0 + pairwise(a, n)) / (double)n;
}

typedef struct sort_item { uint64_t key; double score; size_t idx; } sort_item;

/* Key ascending, then score descending, then input order: a stable sort
 * by -score within each (category, image) group. */
static int cmp_items(const void *pa, const void *pb) {
    const sort_item *a = pa, *b = pb;
    if (a->key != b->key) return a->key < b->key ? -1 : 1;
    if (a->score > b->score) return -1;
    if (a->score < b->score) return 1;
    return (a->idx > b->idx) - (a->idx < b->idx);
}

/* One detection after evaluateImg, for one area range. */
typedef struct det_rec {
    double score;
    uint32_t pos;          /* order of concatenation across images */
    uint16_t tp, fp;       /* bit t: counted as TP / FP at threshold t */
    uint8_t rank;          /* rank within its image (0..99) */
} det_rec;

static int cmp_det_score(const void *pa, const void *pb, void *arg) {
    const det_rec *r = arg, *a = &r[*(const uint32_t *)pa], *b = &r[*(const uint32_t *)pb];
    if (a->score > b->score) return -1;
    if (a->score < b->score) return 1;
    return (a->pos > b->pos) - (a->pos < b->pos);
}

typedef struct eval_ctx {
    const md_coco *gt;
    const md_coco_det *dets;
    const sort_item *gi, *di;     /* sorted GT and det items */
    size_t ng, nd;
    size_t *g_start, *d_start;    /* [K + 1] ranges in gi / di per category */
    size_t K, I;
    double thr[T], rec[R];
    double *precision, *recall;
    /* segm: the GT annotations' and the detections' RLEs, and the
     * detections' mask areas; NULL for bbox */
    const md_rle *gt_rle, *dt_rle;
    const double *dt_area;
} eval_ctx;

/* maskUtils.iou for boxes (pycocotools' bbIou). */
static double box_iou(const double *D, const double *G, int crowd) {
    double w = fmin(D[2] + D[0], G[2] + G[0]) - fmax(D[0], G[0]);
    if (w <= 0) return 0;
    double h = fmin(D[3] + D[1], G[3] + G[1]) - fmax(D[1], G[1]);
    if (h <= 0) return 0;
    double i = w * h, da = D[2] * D[3], ga = G[2] * G[3];
    double u = crowd ? da : da + ga - i;
    return i / u;
}

/* evaluate + accumulate for category k. Returns 0, or -1 on no memory. */
static int eval_category(const eval_ctx *c, size_t k) {
    size_t g0 = c->g_start[k], g1 = c->g_start[k + 1], d0 = c->d_start[k], d1 = c->d_start[k + 1];
    size_t nd_max = d1 - d0;
    det_rec *recs[A];
    size_t nrec[A] = {0};
    long npig[A] = {0};
    int rc = -1;
    double *ious = NULL, *tmp = NULL;
    uint32_t *perm = NULL;
    det_rec **sel = NULL;
    size_t ious_cap = 0;
    for (int a = 0; a < A; a++) recs[a] = malloc(sizeof(det_rec) * (nd_max ? nd_max : 1));
    perm = malloc(sizeof(uint32_t) * (nd_max ? nd_max : 1));
    sel = malloc(sizeof(det_rec *) * (nd_max ? nd_max : 1));
    tmp = malloc(sizeof(double) * 2 * (nd_max ? nd_max : 1));
    if (!recs[0] || !recs[1] || !recs[2] || !recs[3] || !perm || !sel || !tmp) goto done;

    size_t pg = g0, pd = d0;
    uint32_t pos = 0;
    /* Per image scratch: GT order, flags, matches. */
    size_t scratch_cap = 0;
    int *gorder = NULL, *gig = NULL;
    uint8_t *gtm = NULL;
    while (pg < g1 || pd < d1) {
        uint64_t key = UINT64_MAX;
        if (pg < g1) key = c->gi[pg].key;
        if (pd < d1 && c->di[pd].key < key) key = c->di[pd].key;
        size_t ge = pg, de = pd;
        while (ge < g1 && c->gi[ge].key == key) ge++;
        while (de < d1 && c->di[de].key == key) de++;
        size_t G = ge - pg, Dall = de - pd, D = Dall < MAXDET ? Dall : MAXDET;
        const sort_item *gs = c->gi + pg, *ds = c->di + pd;
        if (G * D > ious_cap) {
            free(ious);
            ious_cap = G * D;
            ious = malloc(sizeof(double) * ious_cap);
            if (!ious) goto done;
        }
        if (G > scratch_cap) {
            free(gorder); free(gig); free(gtm);
            scratch_cap = G;
            gorder = malloc(sizeof(int) * G);
            gig = malloc(sizeof(int) * G);
            gtm = malloc((size_t)T * G);
            if (!gorder || !gig || !gtm) { free(gorder); free(gig); free(gtm); goto done; }
        }
        if (c->gt_rle && D && G) {
            /* maskUtils.iou(dt, gt, iscrowd): [D, G] */
            md_rle *dr = malloc(sizeof *dr * D), *gr = malloc(sizeof *gr * G);
            uint8_t *crowd = malloc(G);
            if (!dr || !gr || !crowd) {
                free(dr); free(gr); free(crowd);
                free(gorder); free(gig); free(gtm);
                goto done;
            }
            for (size_t d = 0; d < D; d++) dr[d] = c->dt_rle[ds[d].idx];
            for (size_t g = 0; g < G; g++) {
                gr[g] = c->gt_rle[gs[g].idx];
                crowd[g] = (uint8_t)(c->gt->anns[gs[g].idx].iscrowd != 0);
            }
            md_rle_iou(dr, (int)D, gr, (int)G, crowd, ious);
            free(dr); free(gr); free(crowd);
        } else {
            for (size_t d = 0; d < D; d++) {
                const double *db = c->dets[ds[d].idx].bbox;
                for (size_t g = 0; g < G; g++) {
                    const md_coco_ann *ga = &c->gt->anns[gs[g].idx];
                    ious[d * G + g] = box_iou(db, ga->bbox, ga->iscrowd);
                }
            }
        }
        for (int a = 0; a < A; a++) {
            double lo = AREA_RNG[a][0], hi = AREA_RNG[a][1];
            /* _ignore = iscrowd or out of range; GT sorted ignore-last, stable. */
            size_t ng_ok = 0;
            for (size_t g = 0; g < G; g++) {
                const md_coco_ann *ga = &c->gt->anns[gs[g].idx];
                int ig = ga->iscrowd || ga->area < lo || ga->area > hi;
                if (!ig) gorder[ng_ok++] = (int)g;
                gig[g] = ig;
            }
            npig[a] += (long)ng_ok;
            size_t p = ng_ok;
            for (size_t g = 0; g < G; g++)
                if (gig[g]) gorder[p++] = (int)g;
            if (G) memset(gtm, 0, (size_t)T * G);
            for (size_t d = 0; d < D; d++) {
                const md_coco_det *dt = &c->dets[ds[d].idx];
                double darea = c->dt_area ? c->dt_area[ds[d].idx] : dt->bbox[2] * dt->bbox[3];
                int out_of_range = darea < lo || darea > hi;
                uint16_t tp = 0, fp = 0;
                for (int t = 0; t < T; t++) {
                    double iou = fmin(c->thr[t], 1 - 1e-10);
                    long m = -1;
                    for (size_t q = 0; q < G; q++) {
                        int g = gorder[q];
                        const md_coco_ann *ga = &c->gt->anns[gs[g].idx];
                        if (gtm[(size_t)t * G + q] && !ga->iscrowd) continue;
                        if (m > -1 && !gig[gorder[m]] && gig[g]) break;
                        if (ious[d * G + g] < iou) continue;
                        iou = ious[d * G + g];
                        m = (long)q;
                    }
                    int matched_nonzero = 0, ig = 0;
                    if (m != -1) {
                        const md_coco_ann *ga = &c->gt->anns[gs[gorder[m]].idx];
                        ig = gig[gorder[m]];
                        matched_nonzero = ga->id != 0;   /* dtm stores the GT id */
                        gtm[(size_t)t * G + m] = 1;
                    }
                    if (!matched_nonzero && out_of_range) ig = 1;
                    if (!ig) {
                        if (matched_nonzero) tp |= (uint16_t)(1u << t);
                        else fp |= (uint16_t)(1u << t);
                    }
                }
                recs[a][nrec[a]++] = (det_rec){dt->score, pos + (uint32_t)d, tp, fp, (uint8_t)d};
            }
        }
        pos += (uint32_t)D;
        pg = ge;
        pd = de;
    }
    free(gorder); free(gig); free(gtm);

    /* accumulate. The score order is the same for every area range and,
     * restricted to the top maxDet of each image, for every maxDets: one
     * stable sort serves all twelve. */
    for (size_t i = 0; i < nrec[0]; i++) perm[i] = (uint32_t)i;
    qsort_r(perm, nrec[0], sizeof *perm, cmp_det_score, recs[0]);
    for (int a = 0; a < A; a++) {
        if (npig[a] == 0) continue;
        for (int mi = 0; mi < M; mi++) {
            size_t ns = 0;
            for (size_t i = 0; i < nrec[a]; i++)
                if (recs[a][perm[i]].rank < MAX_DETS[mi]) sel[ns++] = &recs[a][perm[i]];
            double *rcv = tmp, *pr = tmp + ns;
            for (int t = 0; t < T; t++) {
                double tps = 0, fps = 0;
                for (size_t i = 0; i < ns; i++) {
                    tps += (sel[i]->tp >> t) & 1;
                    fps += (sel[i]->fp >> t) & 1;
                    rcv[i] = tps / (double)npig[a];
                    pr[i] = tps / (fps + tps + 2.220446049250313e-16);
                }
                c->recall[((t * c->K + k) * A + a) * M + mi] = ns ? rcv[ns - 1] : 0;
                for (size_t i = ns; i-- > 1;)
                    if (pr[i] > pr[i - 1]) pr[i - 1] = pr[i];
                size_t pi = 0;
                for (int r = 0; r < R; r++) {
                    while (pi < ns && rcv[pi] < c->rec[r]) pi++;
                    double q = pi < ns ? pr[pi] : 0;
                    if (pi >= ns) {   /* pycocotools stops at the first index past the end */
                        for (int rr = r; rr < R; rr++)
                            c->precision[(((size_t)(t * R + rr) * c->K + k) * A + a) * M + mi] = 0;
                        break;
                    }
                    c->precision[(((size_t)(t * R + r) * c->K + k) * A + a) * M + mi] = q;
                }
            }
        }
    }
    rc = 0;
done:
    for (int a = 0; a < A; a++) free(recs[a]);
    free(sel); free(perm); free(tmp); free(ious);
    return rc;
}

/* summarize(): mean of the entries > -1 of a slice, numpy's way. */
static double summarize(const md_coco_eval *e, int ap, int t_sel, int a, int mi, double *buf) {
    size_t K = e->n_categories, n = 0;
    for (int t = 0; t < T; t++) {
        if (t_sel >= 0 && t != t_sel) continue;
        if (ap) {
            for (int r = 0; r < R; r++)
                for (size_t k = 0; k < K; k++) {
                    double v = e->precision[(((size_t)(t * R + r) * K + k) * A + a) * M + mi];
                    if (v > -1) buf[n++] = v;
                }
        } else {
            for (size_t k = 0; k < K; k++) {
                double v = e->recall[((t * K + k) * A + a) * M + mi];
                if (v > -1) buf[n++] = v;
            }
        }
    }
    return np_mean(buf, n);
}

static int thr_index(double v) {
    for (int t = 0; t < T; t++)
        if (md_coco_iou_threshold(t) == v) return t;
    return -2;   /* no such threshold: an empty slice, -1 like numpy */
}

typedef struct stat_def { int ap; double iou; int area; int mi; } stat_def;
static const stat_def STATS[12] = {
    {1, -1, 0, 2}, {1, .5, 0, 2}, {1, .75, 0, 2}, {1, -1, 1, 2}, {1, -1, 2, 2}, {1, -1, 3, 2},
    {0, -1, 0, 0}, {0, -1, 0, 1}, {0, -1, 0, 2}, {0, -1, 1, 2}, {0, -1, 2, 2}, {0, -1, 3, 2},
};

MD_API void md_coco_eval_free(md_coco_eval *e) {
    if (!e) return;
    free(e->category_ids); free(e->category_ap); free(e->precision); free(e->recall);
    memset(e, 0, sizeof *e);
}

/* _prepare's _toMask for segm: every GT annotation and detection as an RLE
 * (annToRLE at its image's size) and the detections' areas (loadRes). */
static int segm_prepare(const md_coco *gt, const md_coco_det *dets, size_t n, md_rle **gt_rle, md_rle **dt_rle,
                        double **dt_area, md_error *err) {
    *gt_rle = calloc(gt->n_anns ? gt->n_anns : 1, sizeof **gt_rle);
    *dt_rle = calloc(n ? n : 1, sizeof **dt_rle);
    *dt_area = calloc(n ? n : 1, sizeof **dt_area);
    if (!*gt_rle || !*dt_rle || !*dt_area) return md_failc(err, MD_ERR_NOMEM, "coco eval: out of memory");
    for (size_t i = 0; i < gt->n_anns; i++) {
        const md_coco_ann *a = &gt->anns[i];
        const md_coco_image *im = &gt->images[a->image_index];
        if (a->segmentation.kind == MD_MASK_ANN_NONE)
            return md_failc(err, MD_ERR_CONFIG, "coco eval (segm): annotation %lld has no segmentation", (long long)a->id);
        if (md_mask_ann_to_rle(&a->segmentation, im->height, im->width, &(*gt_rle)[i], err))
            return md_error_wrap(err, "coco eval (segm): annotation %lld", (long long)a->id);
    }
    for (size_t i = 0; i < n; i++) {
        long ii = md_coco_image_index(gt, dets[i].image_id);
        if (ii < 0) continue;   /* reported by the evaluation */
        if (dets[i].segmentation.kind == MD_MASK_ANN_NONE)
            return md_failc(err, MD_ERR_CONFIG, "coco eval (segm): detection %zu (image %lld) has no segmentation", i,
                            (long long)dets[i].image_id);
        const md_coco_image *im = &gt->images[ii];
        if (md_mask_ann_to_rle(&dets[i].segmentation, im->height, im->width, &(*dt_rle)[i], err))
            return md_error_wrap(err, "coco eval (segm): detection %zu", i);
        (*dt_area)[i] = (double)md_rle_area(&(*dt_rle)[i]);
    }
    return 0;
}

static void rles_free(md_rle *r, size_t n) {
    for (size_t i = 0; r && i < n; i++) md_rle_free(&r[i]);
    free(r);
}

MD_API int md_coco_evaluate(const md_coco *gt, const md_coco_det *dets, size_t n, md_coco_eval *out, md_error *err) {
    return md_coco_evaluate_as(gt, dets, n, MD_COCO_IOU_BBOX, out, err);
}

MD_API int md_coco_evaluate_as(const md_coco *gt, const md_coco_det *dets, size_t n, md_coco_iou_type type,
                               md_coco_eval *out, md_error *err) {
    memset(out, 0, sizeof *out);
    md_rle *gt_rle = NULL, *dt_rle = NULL;
    double *dt_area = NULL;
    if (type == MD_COCO_IOU_SEGM && segm_prepare(gt, dets, n, &gt_rle, &dt_rle, &dt_area, err)) {
        rles_free(gt_rle, gt->n_anns);
        rles_free(dt_rle, n);
        free(dt_area);
        return -1;
    }
    size_t K = gt->n_categories, I = gt->n_images;
    eval_ctx c = {.gt = gt, .dets = dets, .K = K, .I = I, .gt_rle = gt_rle, .dt_rle = dt_rle, .dt_area = dt_area};
    for (int t = 0; t < T; t++) c.thr[t] = md_coco_iou_threshold(t);
    for (int r = 0; r < R; r++) c.rec[r] = md_coco_recall_point(r);
    size_t *cat_rank = malloc(sizeof(size_t) * (K ? K : 1)), *img_rank = malloc(sizeof(size_t) * (I ? I : 1));
    sort_item *gi = malloc(sizeof(sort_item) * (gt->n_anns ? gt->n_anns : 1));
    sort_item *di = malloc(sizeof(sort_item) * (n ? n : 1));
    c.g_start = calloc(K + 1, sizeof(size_t));
    c.d_start = calloc(K + 1, sizeof(size_t));
    out->n_categories = K;
    out->category_ids = malloc(sizeof(int64_t) * (K ? K : 1));
    out->category_ap = malloc(sizeof(double) * (K ? K : 1));
    out->precision = malloc(sizeof(double) * T * R * (K ? K : 1) * A * M);
    out->recall = malloc(sizeof(double) * T * (K ? K : 1) * A * M);
    double *buf = malloc(sizeof(double) * T * R * (K ? K : 1));
    int rc = -1;
    if (!cat_rank || !img_rank || !gi || !di || !c.g_start || !c.d_start || !out->category_ids ||
        !out->category_ap || !out->precision || !out->recall || !buf) {
        md_failc(err, MD_ERR_NOMEM, "coco eval: out of memory (%zu images, %zu categories, %zu detections)", I, K, n);
        goto done;
    }
    /* p.catIds and p.imgIds are sorted ids. */
    for (size_t k = 0; k < K; k++) {
        cat_rank[gt->category_by_id_[k]] = k;
        out->category_ids[k] = gt->categories[gt->category_by_id_[k]].id;
    }
    for (size_t i = 0; i < I; i++) img_rank[gt->image_by_id_[i]] = i;
    for (size_t i = 0; i < gt->n_anns; i++) {
        const md_coco_ann *a = &gt->anns[i];
        gi[i] = (sort_item){cat_rank[a->category_index] * I + img_rank[a->image_index], 0, i};
    }
    size_t nd = 0;
    for (size_t i = 0; i < n; i++) {
        long ii = md_coco_image_index(gt, dets[i].image_id);
        if (ii < 0) {
            md_failc(err, MD_ERR_CONFIG, "coco eval: detection %zu: image_id %lld is not in the ground truth", i,
                     (long long)dets[i].image_id);
            goto done;
        }
        long ci = md_coco_category_index(gt, dets[i].category_id);
        if (ci < 0) { out->n_dets_unmatched_category++; continue; }
        di[nd++] = (sort_item){cat_rank[ci] * I + img_rank[ii], dets[i].score, i};
    }
    qsort(gi, gt->n_anns, sizeof *gi, cmp_items);
    qsort(di, nd, sizeof *di, cmp_items);
    /* Category ranges (keys are k * I + image rank). */
    for (size_t i = 0, k = 0; k <= K; k++) {
        while (i < gt->n_anns && gi[i].key / (I ? I : 1) < k) i++;
        c.g_start[k] = k == K ? gt->n_anns : i;
    }
    for (size_t i = 0, k = 0; k <= K; k++) {
        while (i < nd && di[i].key / (I ? I : 1) < k) i++;
        c.d_start[k] = k == K ? nd : i;
    }
    c.gi = gi; c.di = di; c.ng = gt->n_anns; c.nd = nd;
    c.precision = out->precision;
    c.recall = out->recall;
    for (size_t i = 0; i < (size_t)T * R * K * A * M; i++) out->precision[i] = -1;
    for (size_t i = 0; i < (size_t)T * K * A * M; i++) out->recall[i] = -1;
    int failed = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(| : failed)
    for (long k = 0; k < (long)K; k++) failed |= eval_category(&c, (size_t)k) != 0;
    if (failed) {
        md_failc(err, MD_ERR_NOMEM, "coco eval: out of memory evaluating %zu detections", n);
        goto done;
    }
    for (int s = 0; s < 12; s++) {
        const stat_def *d = &STATS[s];
        int t = d->iou < 0 ? -1 : thr_index(d->iou);
        out->stats[s] = t == -2 ? -1 : summarize(out, d->ap, t, d->area, d->mi, buf);
    }
    for (size_t k = 0; k < K; k++) {
        size_t m = 0;
        for (int t = 0; t < T; t++)
            for (int r = 0; r < R; r++) {
                double v = out->precision[(((size_t)(t * R + r) * K + k) * A + 0) * M + 2];
                if (v > -1) buf[m++] = v;
            }
        out->category_ap[k] = np_mean(buf, m);
    }
    rc = 0;
done:
    free(cat_rank); free(img_rank); free(gi); free(di); free(c.g_start); free(c.d_start); free(buf);
    rles_free(gt_rle, gt->n_anns);
    rles_free(dt_rle, n);
    free(dt_area);
    if (rc) md_coco_eval_free(out);
    return rc;
}

MD_API const char *md_coco_stat_line(const md_coco_eval *e, int i, char *buf, size_t n) {
    if (i < 0 || i >= 12) {
        snprintf(buf, n, "?");
        return buf;
    }
    const stat_def *d = &STATS[i];
    char iou[32];
    if (d->iou < 0) snprintf(iou, sizeof iou, "%0.2f:%0.2f", md_coco_iou_threshold(0), md_coco_iou_threshold(T - 1));
    else snprintf(iou, sizeof iou, "%0.2f", d->iou);
    snprintf(buf, n, " %-18s %s @[ IoU=%-9s | area=%6s | maxDets=%3d ] = %0.3f",
             d->ap ? "Average Precision" : "Average Recall", d->ap ? "(AP)" : "(AR)", iou, AREA_LBL[d->area],
             MAX_DETS[d->mi], e->stats[i]);
    return buf;
}

MD_API void md_coco_eval_print(const md_coco_eval *e, FILE *f) {
    char line[160];
    for (int i = 0; i < 12; i++) fprintf(f, "%s\n", md_coco_stat_line(e, i, line, sizeof line));
}
