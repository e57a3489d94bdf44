/* mmdet's VOC-style evaluation (mmdet.core.evaluation.mean_ap and recall);
 * the rules are in evaluation.h. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "mmdet/evaluation.h"

/* bbox_overlaps of two boxes; extra is 1 with legacy coordinates. */
static double voc_iou(const float *a, const float *b, double extra) {
    double a1 = ((double)a[2] - a[0] + extra) * ((double)a[3] - a[1] + extra);
    double a2 = ((double)b[2] - b[0] + extra) * ((double)b[3] - b[1] + extra);
    double x1 = a[0] > b[0] ? a[0] : b[0], y1 = a[1] > b[1] ? a[1] : b[1];
    double x2 = a[2] < b[2] ? a[2] : b[2], y2 = a[3] < b[3] ? a[3] : b[3];
    double w = x2 - x1 + extra, h = y2 - y1 + extra;
    if (w < 0) w = 0;
    if (h < 0) h = 0;
    double ov = w * h, uni = a1 + a2 - ov;
    if (uni < 1e-6) uni = 1e-6;   /* bbox_overlaps' eps */
    return ov / uni;
}

/* A detection of the class being evaluated: its score, its place in the
 * image-then-detection order, and its result. */
typedef struct det_ref { double score; int64_t order; float tp, fp; } det_ref;

static int cmp_score_desc(const void *a, const void *b) {
    const det_ref *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* AP from cumulated recall (double) and precision (float32) of n points;
 * -1 when out of memory. */
static float average_precision(const double *rec, const float *prec, int64_t n, bool eleven) {
    if (eleven) {
        float ap = 0;
        for (int k = 0; k <= 10; k++) {
            double thr = k * 0.1;   /* np.arange(0, 1 + 1e-3, 0.1) */
            float best = 0;
            bool any = false;
            for (int64_t i = 0; i < n; i++)
                if (rec[i] >= thr && (!any || prec[i] > best)) best = prec[i], any = true;
            ap += any ? best : 0.0f;
        }
        return ap / 11.0f;
    }
    /* mrec = [0, rec, 1], mpre = [0, prec, 0]; envelope from the right. */
    double *mpre = malloc(sizeof *mpre * (size_t)(n + 2));
    if (!mpre) return -1;
    mpre[0] = 0;
    for (int64_t i = 0; i < n; i++) mpre[i + 1] = prec[i];
    mpre[n + 1] = 0;
    for (int64_t i = n + 1; i > 0; i--)
        if (mpre[i] > mpre[i - 1]) mpre[i - 1] = mpre[i];
    double ap = 0;
    for (int64_t i = 0; i <= n; i++) {
        double r0 = i == 0 ? 0 : rec[i - 1], r1 = i == n ? 1 : rec[i];
        if (r1 != r0) ap += (r1 - r0) * mpre[i + 1];
    }
    free(mpre);
    return (float)ap;
}

/* tpfp_default for one image and class: detections di[nd] (indices into
 * res->bboxes), GT boxes g[0 .. ng) then ignored ones g[ng .. ng + ngi);
 * order[nd] and covered[ng + ngi] are scratch. */
static void tpfp(const md_det_result *res, const int *di, int nd, const float **g, int ng, int ngi, double thr,
                 double extra, int *order, bool *covered, det_ref *out) {
    int nt = ng + ngi;
    for (int k = 0; k < nd; k++) out[k].tp = 0, out[k].fp = 0;
    if (nt == 0) {
        for (int k = 0; k < nd; k++) out[k].fp = 1;
        return;
    }
    /* descending score, stable */
    for (int k = 0; k < nd; k++) order[k] = k;
    for (int a = 1; a < nd; a++) {
        int v = order[a], b = a;
        while (b > 0 && res->bboxes[5 * di[order[b - 1]] + 4] < res->bboxes[5 * di[v] + 4]) {
            order[b] = order[b - 1];
            b--;
        }
        order[b] = v;
    }
    memset(covered, 0, sizeof *covered * (size_t)nt);
    for (int o = 0; o < nd; o++) {
        int k = order[o];
        const float *d = res->bboxes + 5 * di[k];
        double best = -1;
        int arg = 0;
        for (int j = 0; j < nt; j++) {
            double iou = (float)voc_iou(d, g[j], extra);   /* numpy computes IoUs in float32 */
            if (iou > best) best = iou, arg = j;
        }
        if (best >= thr) {
            if (arg < ng) {
                if (!covered[arg]) covered[arg] = true, out[k].tp = 1;
                else out[k].fp = 1;
            }
        } else {
            out[k].fp = 1;
        }
    }
}

MD_API int md_voc_eval_map(const md_det_result *res, const md_voc_gt *gts, int64_t n_imgs, int n_classes,
                           double thr, bool eleven, bool legacy, double *mean_ap, double *cls_ap, int64_t *cls_ngt,
                           md_error *err) {
    double extra = legacy ? 1.0 : 0.0;
    int64_t total = 0;
    int max_d = 1, max_g = 1;
    for (int64_t i = 0; i < n_imgs; i++) {
        for (int k = 0; k < res[i].n; k++)
            if (res[i].labels[k] < 0 || res[i].labels[k] >= n_classes)
                return md_failc(err, MD_ERR_GENERIC, "results[%lld]: detection %d has label %lld, outside [0, %d)",
                                (long long)i, k, (long long)res[i].labels[k], n_classes);
        total += res[i].n;
        if (res[i].n > max_d) max_d = res[i].n;
        if (gts[i].n + gts[i].n_ignore > max_g) max_g = gts[i].n + gts[i].n_ignore;
    }
    det_ref *all = malloc(sizeof *all * (size_t)(total + 1));
    int *di = malloc(sizeof *di * (size_t)max_d), *order = malloc(sizeof *order * (size_t)max_d);
    const float **g = malloc(sizeof *g * (size_t)max_g);
    bool *covered = malloc(sizeof *covered * (size_t)max_g);
    double *rec = malloc(sizeof *rec * (size_t)(total + 1));
    float *prec = malloc(sizeof *prec * (size_t)(total + 1));
    int rc = 0;
    if (!all || !di || !order || !g || !covered || !rec || !prec) {
        rc = md_failc(err, MD_ERR_NOMEM, "VOC evaluation: out of memory for %lld detections", (long long)total);
        goto done;
    }
    double sum = 0;
    int with_gt = 0;
    for (int c = 0; c < n_classes; c++) {
        int64_t nall = 0, ngt = 0;
        for (int64_t i = 0; i < n_imgs; i++) {
            int nd = 0, ng = 0, ngi = 0;
            for (int k = 0; k < res[i].n; k++)
                if (res[i].labels[k] == c) di[nd++] = k;
            for (int j = 0; j < gts[i].n; j++)
                if (gts[i].labels[j] == c) g[ng++] = gts[i].bboxes + 4 * j;
            for (int j = 0; j < gts[i].n_ignore; j++)
                if (gts[i].labels_ignore[j] == c) g[ng + ngi++] = gts[i].bboxes_ignore + 4 * j;
            ngt += ng;
            tpfp(&res[i], di, nd, g, ng, ngi, thr, extra, order, covered, all + nall);
            for (int k = 0; k < nd; k++) {
                all[nall + k].score = res[i].bboxes[5 * di[k] + 4];
                all[nall + k].order = nall + k;
            }
            nall += nd;
        }
        qsort(all, (size_t)nall, sizeof *all, cmp_score_desc);
        float tp = 0, fp = 0;
        const float eps = FLT_EPSILON;
        for (int64_t k = 0; k < nall; k++) {
            tp += all[k].tp;
            fp += all[k].fp;
            rec[k] = (double)tp / (ngt > 0 ? (double)ngt : (double)eps);
            float den = tp + fp > eps ? tp + fp : eps;
            prec[k] = tp / den;
        }
        float ap = average_precision(rec, prec, nall, eleven);
        if (ap < 0) {
            rc = md_failc(err, MD_ERR_NOMEM, "VOC evaluation: out of memory");
            goto done;
        }
        if (cls_ap) cls_ap[c] = ap;
        if (cls_ngt) cls_ngt[c] = ngt;
        if (ngt > 0) sum += ap, with_gt++;
    }
    /* numpy's float32 mean of the per-class APs */
    *mean_ap = with_gt ? (double)(float)(sum / with_gt) : 0.0;
done:
    free(all), free(di), free(order), free(g), free(covered), free(rec), free(prec);
    return rc;
}

static int cmp_double_desc(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x > y ? -1 : x < y;
}

MD_API int md_voc_eval_recalls(const md_det_result *res, const md_voc_gt *gts, int64_t n_imgs, const int *nums,
                               int n_nums, double thr, bool legacy, double *out, md_error *err) {
    double extra = legacy ? 1.0 : 0.0;
    int64_t total_gt = 0;
    int max_p = 1;
    for (int64_t i = 0; i < n_imgs; i++) {
        total_gt += gts[i].n;
        if (res[i].n > max_p) max_p = res[i].n;
    }
    double *ious_all = malloc(sizeof *ious_all * (size_t)(total_gt + 1));
    int *order = malloc(sizeof *order * (size_t)max_p);
    if (!ious_all || !order) {
        free(ious_all), free(order);
        return md_failc(err, MD_ERR_NOMEM, "VOC recall: out of memory");
    }
    int max_num = 0;
    for (int k = 0; k < n_nums; k++)
        if (nums[k] > max_num) max_num = nums[k];
    for (int kk = 0; kk < n_nums; kk++) {
        int64_t pos = 0;
        for (int64_t i = 0; i < n_imgs; i++) {
            int ng = gts[i].n, np_ = res[i].n;
            /* np.argsort(scores)[::-1]: ascending stable, then reversed */
            for (int k = 0; k < np_; k++) order[k] = k;
            for (int a = 1; a < np_; a++) {
                int v = order[a], b = a;
                while (b > 0 && res[i].bboxes[5 * order[b - 1] + 4] > res[i].bboxes[5 * v + 4]) {
                    order[b] = order[b - 1];
                    b--;
                }
                order[b] = v;
            }
            for (int a = 0, b = np_ - 1; a < b; a++, b--) {
                int t = order[a];
                order[a] = order[b], order[b] = t;
            }
            int prop = np_ < max_num ? np_ : max_num;   /* min(n, proposal_nums[-1]) */
            int cols = prop < nums[kk] ? prop : nums[kk];
            if (ng == 0) continue;
            if (cols == 0) {
                for (int j = 0; j < ng; j++) ious_all[pos++] = 0;
                continue;
            }
            double *m = malloc(sizeof *m * (size_t)ng * (size_t)cols);
            if (!m) {
                free(ious_all), free(order);
                return md_failc(err, MD_ERR_NOMEM, "VOC recall: out of memory");
            }
            for (int j = 0; j < ng; j++)
                for (int p = 0; p < cols; p++)
                    m[(size_t)j * cols + p] = (float)voc_iou(gts[i].bboxes + 4 * j, res[i].bboxes + 5 * order[p], extra);
            for (int it = 0; it < ng; it++) {
                /* the GT whose best proposal is best overall (first maxima) */
                int gbest = 0, pbest = 0;
                double vbest = -INFINITY;
                for (int j = 0; j < ng; j++) {
                    int pa = 0;
                    for (int p = 1; p < cols; p++)
                        if (m[(size_t)j * cols + p] > m[(size_t)j * cols + pa]) pa = p;
                    if (m[(size_t)j * cols + pa] > vbest) vbest = m[(size_t)j * cols + pa], gbest = j, pbest = pa;
                }
                ious_all[pos++] = vbest;
                for (int p = 0; p < cols; p++) m[(size_t)gbest * cols + p] = -1;
                for (int j = 0; j < ng; j++) m[(size_t)j * cols + pbest] = -1;
            }
            free(m);
        }
        qsort(ious_all, (size_t)total_gt, sizeof *ious_all, cmp_double_desc);
        int64_t hit = 0;
        for (int64_t j = 0; j < total_gt; j++) hit += ious_all[j] >= thr;
        out[kk] = total_gt ? (double)hit / (double)total_gt : NAN;
    }
    free(ious_all), free(order);
    return 0;
}
