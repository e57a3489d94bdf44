/* mmdet-coco-eval: COCO bbox or segm evaluation of a results file against a
 * ground truth file, printing pycocotools' summary lines (or one JSON object). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mmdet/coco.h>
#include <mmdet/ctx.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: mmdet-coco-eval GT.json DT.json [--iou-type bbox|segm] [--json] [--classwise]\n"
            "  GT.json      COCO annotation file\n"
            "  DT.json      COCO results file: [{image_id, category_id, bbox, score}, ...]\n"
            "               (segm: with \"segmentation\": {\"size\": [h, w], \"counts\": RLE})\n"
            "  --iou-type   bbox (default) or segm: IoU of boxes or of masks (pycocotools' iouType)\n"
            "  --json       print {\"stats\": [12 numbers]} instead of the summary lines\n"
            "  --classwise  also print AP@[.5:.95] per category (with --json: a \"classwise\" list)\n");
}

int main(int argc, char **argv) {
    md_process_init(argc, argv);
    const char *paths[2] = {0};
    int np = 0, json = 0, classwise = 0;
    md_coco_iou_type type = MD_COCO_IOU_BBOX;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--iou-type")) {
            const char *v = i + 1 < argc ? argv[++i] : "";
            if (!strcmp(v, "bbox")) type = MD_COCO_IOU_BBOX;
            else if (!strcmp(v, "segm")) type = MD_COCO_IOU_SEGM;
            else {
                fprintf(stderr, "mmdet-coco-eval: --iou-type must be bbox or segm, got '%s'\n", v);
                return 2;
            }
        }
        else if (!strcmp(argv[i], "--classwise")) classwise = 1;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "mmdet-coco-eval: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else if (np < 2) paths[np++] = argv[i];
        else {
            fprintf(stderr, "mmdet-coco-eval: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (np != 2) {
        usage(stderr);
        return 2;
    }
    md_error err = {0};
    md_coco *gt = md_coco_load(paths[0], &err);
    if (!gt) {
        fprintf(stderr, "mmdet-coco-eval: %s\n", err.msg);
        return 1;
    }
    md_coco_det *dets = NULL;
    size_t n = 0;
    if (md_coco_load_dets(paths[1], &dets, &n, &err)) {
        fprintf(stderr, "mmdet-coco-eval: %s\n", err.msg);
        md_coco_free(gt);
        return 1;
    }
    md_coco_eval ev;
    if (md_coco_evaluate_as(gt, dets, n, type, &ev, &err)) {
        fprintf(stderr, "mmdet-coco-eval: %s: %s\n", paths[1], err.msg);
        md_coco_dets_free(dets, n);
        md_coco_free(gt);
        return 1;
    }
    if (json) {
        printf("{\"stats\": [");
        for (int i = 0; i < 12; i++) printf("%s%.17g", i ? ", " : "", ev.stats[i]);
        printf("]");
        if (classwise) {
            printf(", \"classwise\": [");
            for (size_t k = 0; k < ev.n_categories; k++) {
                const md_coco_category *c = &gt->categories[md_coco_category_index(gt, ev.category_ids[k])];
                printf("%s{\"id\": %lld, \"name\": \"", k ? ", " : "", (long long)c->id);
                for (const char *s = c->name; *s; s++) {
                    if (*s == '"' || *s == '\\') printf("\\%c", *s);
                    else if ((unsigned char)*s < 0x20) printf("\\u%04x", *s);
                    else putchar(*s);
                }
                printf("\", \"ap\": %.17g}", ev.category_ap[k]);
            }
            printf("]");
        }
        printf("}\n");
    } else {
        md_coco_eval_print(&ev, stdout);
        if (classwise) {
            printf("\n%-24s %s\n", "category", "AP");
            for (size_t k = 0; k < ev.n_categories; k++) {
                const md_coco_category *c = &gt->categories[md_coco_category_index(gt, ev.category_ids[k])];
                printf("%-24s %0.3f\n", c->name[0] ? c->name : "?", ev.category_ap[k]);
            }
        }
    }
    if (ev.n_dets_unmatched_category)
        fprintf(stderr, "mmdet-coco-eval: %zu detections of categories not in %s were ignored\n",
                ev.n_dets_unmatched_category, paths[0]);
    md_coco_eval_free(&ev);
    md_coco_dets_free(dets, n);
    md_coco_free(gt);
    return 0;
}
