/* XMLDataset and VOCDataset: Pascal VOC layout (ImageSets/Main/<split>.txt
 * lists image ids; <img_prefix>/Annotations/<id>.xml describes each image;
 * images are <img_prefix>/JPEGImages/<id>.jpg), parsed with libxml2.
 * mmdet 2.x semantics:
 *  - objects whose name is not in CLASSES are skipped; labels follow CLASSES;
 *  - box corners are int(float(text)), minus 1 (VOC's 1-based pixels);
 *  - `difficult` objects, and in training those with a side (xmax - xmin or
 *    ymax - ymin) under `min_size` (default None), become gt_bboxes_ignore;
 *  - training drops images whose shorter side is under 32 and, with
 *    filter_empty_gt, images without an object of CLASSES (difficult ones
 *    count);
 *  - a missing <size> is read from the image header;
 *  - VOCDataset infers the year from img_prefix ("VOC2007" / "VOC2012") and
 *    evaluates with eval_map on legacy (+1) coordinates, 11-point AP for 2007
 *    and area AP otherwise; XMLDataset evaluates like CustomDataset (area
 *    AP, no +1). Metrics: mAP and AP50; recall@100/300/1000@0.5.
 * Boxes with xmax < xmin or ymax < ymin are dropped and counted. Every XML
 * error names the file and line. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include "custom_dataset.h"
#include <mmdet/evaluation.h>

static const char *const voc_classes[] = {
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
};
#define N_VOC ((int)(sizeof voc_classes / sizeof voc_classes[0]))

/* ------------------------------------------------------------ XML parsing */

typedef struct voc_obj { int64_t label; int difficult; int bbox[4]; int line; } voc_obj;
typedef struct voc_xml {
    int width, height;
    bool has_size;
    int n, cap;
    voc_obj *objs;
    bool any_class;                  /* an object of CLASSES (for filter_empty_gt) */
} voc_xml;

static void voc_xml_free(voc_xml *x) {
    free(x->objs);
    memset(x, 0, sizeof *x);
}

/* ElementTree's find: the first child element called `name`. */
static xmlNodePtr child(xmlNodePtr n, const char *name) {
    for (xmlNodePtr c = n ? n->children : NULL; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE && !strcmp((const char *)c->name, name)) return c;
    return NULL;
}

/* The element's text, whitespace-trimmed, into buf. */
static const char *text_of(xmlNodePtr n, char *buf, size_t cap) {
    buf[0] = 0;
    xmlChar *t = xmlNodeGetContent(n);
    if (!t) return buf;
    const char *s = (const char *)t;
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
    snprintf(buf, cap, "%s", s);
    size_t l = strlen(buf);
    while (l && (buf[l - 1] == ' ' || buf[l - 1] == '\t' || buf[l - 1] == '\n' || buf[l - 1] == '\r')) buf[--l] = 0;
    xmlFree(t);
    return buf;
}

/* int(float(text)) of child `name` of n. */
static int num_child(xmlNodePtr n, const char *name, const char *path, int *out, md_error *err) {
    xmlNodePtr c = child(n, name);
    if (!c)
        return md_failc(err, MD_ERR_PARSE, "%s:%ld: <%s> has no <%s>", path, xmlGetLineNo(n), (const char *)n->name,
                        name);
    char buf[64], *end;
    text_of(c, buf, sizeof buf);
    errno = 0;
    double v = strtod(buf, &end);
    if (!buf[0] || *end || !isfinite(v) || fabs(v) > 1e9)
        return md_failc(err, MD_ERR_PARSE, "%s:%ld: <%s> is '%s', not a number", path, xmlGetLineNo(c), name, buf);
    *out = (int)v;   /* truncation, as int(float(...)) */
    return 0;
}

static int parse_doc(xmlDocPtr doc, const char *path, char *const *classes, int n_classes, voc_xml *out,
                     md_error *err) {
    xmlNodePtr root = xmlDocGetRootElement(doc);
    if (!root) return md_failc(err, MD_ERR_PARSE, "%s: no root element", path);
    xmlNodePtr size = child(root, "size");
    if (size) {
        if (num_child(size, "width", path, &out->width, err) || num_child(size, "height", path, &out->height, err))
            return -1;
        out->has_size = true;
    }
    for (xmlNodePtr o = root->children; o; o = o->next) {
        if (o->type != XML_ELEMENT_NODE || strcmp((const char *)o->name, "object")) continue;
        xmlNodePtr nm = child(o, "name");
        if (!nm) return md_failc(err, MD_ERR_PARSE, "%s:%ld: <object> has no <name>", path, xmlGetLineNo(o));
        char name[256];
        text_of(nm, name, sizeof name);
        int64_t label = -1;
        for (int k = 0; k < n_classes; k++)
            if (!strcmp(name, classes[k])) {
                label = k;
                break;
            }
        if (label < 0) continue;
        out->any_class = true;
        voc_obj ob = { .label = label, .line = (int)xmlGetLineNo(o) };
        xmlNodePtr dif = child(o, "difficult");
        if (dif && num_child(o, "difficult", path, &ob.difficult, err)) return -1;
        xmlNodePtr bb = child(o, "bndbox");
        if (!bb) return md_failc(err, MD_ERR_PARSE, "%s:%ld: <object> '%s' has no <bndbox>", path, xmlGetLineNo(o), name);
        static const char *const corner[] = { "xmin", "ymin", "xmax", "ymax" };
        for (int k = 0; k < 4; k++)
            if (num_child(bb, corner[k], path, &ob.bbox[k], err)) return -1;
        if (out->n == out->cap) {
            int nc = out->cap ? 2 * out->cap : 8;
            voc_obj *p = realloc(out->objs, sizeof *p * (size_t)nc);
            if (!p) return md_failc(err, MD_ERR_NOMEM, "%s: out of memory", path);
            out->objs = p, out->cap = nc;
        }
        out->objs[out->n++] = ob;
    }
    return 0;
}

/* Keeps the first error libxml2 reports (the last one is often a
 * consequence, "Premature end of data"), instead of printing it. */
typedef struct first_err { bool set; int line, col; char msg[384]; } first_err;

static void on_xml_error(void *user, xmlErrorPtr e) {
    xmlParserCtxtPtr pc = user;
    first_err *fe = pc ? pc->_private : NULL;
    if (!fe || fe->set || !e || e->level < XML_ERR_ERROR) return;
    fe->set = true;
    fe->line = e->line;
    fe->col = e->int2;
    snprintf(fe->msg, sizeof fe->msg, "%s", e->message ? e->message : "unknown error");
    size_t l = strlen(fe->msg);
    while (l && fe->msg[l - 1] == '\n') fe->msg[--l] = 0;
}

/* Parses one annotation from memory; `path` names it in messages. */
static int voc_parse_mem(const char *buf, size_t n, const char *path, char *const *classes, int n_classes,
                         voc_xml *out, md_error *err) {
    memset(out, 0, sizeof *out);
    if (n > (size_t)INT32_MAX) return md_failc(err, MD_ERR_PARSE, "%s: file too large", path);
    xmlParserCtxtPtr pc = xmlNewParserCtxt();
    if (!pc) return md_failc(err, MD_ERR_NOMEM, "%s: out of memory", path);
    first_err fe = { 0 };
    pc->_private = &fe;
    pc->sax->serror = on_xml_error;
    xmlDocPtr doc = xmlCtxtReadMemory(pc, buf, (int)n, path, NULL, XML_PARSE_NONET | XML_PARSE_NOWARNING);
    int rc;
    if (!doc || fe.set) {
        if (!fe.set) {
            const xmlError *e = xmlCtxtGetLastError(pc);
            on_xml_error(pc, (xmlErrorPtr)e);
        }
        rc = md_failc(err, MD_ERR_PARSE, "%s:%d:%d: XML syntax error: %s", path, fe.line, fe.col,
                      fe.set ? fe.msg : "unknown error");
        if (doc) xmlFreeDoc(doc);
    } else {
        rc = parse_doc(doc, path, classes, n_classes, out, err);
        xmlFreeDoc(doc);
    }
    xmlFreeParserCtxt(pc);
    if (rc) voc_xml_free(out);
    return rc;
}

static int read_all(const char *path, char **buf, size_t *n, md_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return md_failc(err, MD_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 4096, len = 0;
    char *b = malloc(cap);
    while (b) {
        size_t r = fread(b + len, 1, cap - len, f);
        len += r;
        if (len < cap) break;
        char *nb = realloc(b, cap *= 2);
        if (!nb) free(b);
        b = nb;
    }
    int bad = ferror(f);
    fclose(f);
    if (!b) return md_failc(err, MD_ERR_NOMEM, "out of memory reading %s", path);
    if (bad) {
        free(b);
        return md_failc(err, MD_ERR_IO, "error reading %s", path);
    }
    *buf = b, *n = len;
    return 0;
}

static int voc_parse_file(const char *path, char *const *classes, int n_classes, voc_xml *out, md_error *err) {
    char *buf;
    size_t n;
    memset(out, 0, sizeof *out);
    if (read_all(path, &buf, &n, err)) return -1;
    int rc = voc_parse_mem(buf, n, path, classes, n_classes, out, err);
    free(buf);
    return rc;
}

/* ------------------------------------------------------------- the dataset */

typedef struct voc_ds {
    custom_ds c;
    int year;                    /* 2007, 2012; 0: XMLDataset */
    bool legacy_eval;
    int64_t *ign_labels;         /* labels of c.ign boxes */
    int64_t ign_cap;
} voc_ds;

static void voc_destroy(md_dataset *ds) {
    voc_ds *d = (voc_ds *)ds;
    free(d->ign_labels);
    custom_free(&d->c);
}

static int voc_evaluate(const md_dataset *ds, const md_det_result *results, int64_t n, const char *metric,
                        md_metrics *out, md_error *err) {
    const voc_ds *d = (const voc_ds *)ds;
    const custom_ds *c = &d->c;
    if (n != c->n)
        return md_failc(err, MD_ERR_GENERIC, "%s: %lld results for %lld images", ds->type, (long long)n,
                        (long long)c->n);
    if (!metric) metric = "mAP";
    if (strcmp(metric, "mAP") && strcmp(metric, "recall"))
        return md_failc(err, MD_ERR_CONFIG, "%s: metric %s is not supported (mAP, recall)", ds->type, metric);
    md_voc_gt *gts = calloc((size_t)(n ? n : 1), sizeof *gts);
    if (!gts) return md_failc(err, MD_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++) {
        gts[i].n = (int)(c->off[i + 1] - c->off[i]);
        gts[i].bboxes = c->gt.xyxy + 4 * c->off[i];
        gts[i].labels = c->gt.labels + c->off[i];
        gts[i].n_ignore = (int)(c->ign_off[i + 1] - c->ign_off[i]);
        gts[i].bboxes_ignore = c->ign.xyxy + 4 * c->ign_off[i];
        gts[i].labels_ignore = d->ign_labels + c->ign_off[i];
    }
    int rc;
    out->n = 0;
    if (!strcmp(metric, "mAP")) {
        double map = 0;
        rc = md_voc_eval_map(results, gts, n, ds->n_classes, 0.5, d->year == 2007, d->legacy_eval, &map, NULL, NULL, err);
        if (!rc) {
            /* VOCDataset moves mAP first; CustomDataset lists AP50 first. */
            md_metric ap50 = { "AP50", round(map * 1000) / 1000 }, m = { "mAP", map };
            out->m[out->n++] = d->year ? m : ap50;
            out->m[out->n++] = d->year ? ap50 : m;
        }
    } else {
        static const int nums[] = { 100, 300, 1000 };
        double rec[3];
        rc = md_voc_eval_recalls(results, gts, n, nums, 3, 0.5, d->legacy_eval, rec, err);
        for (int k = 0; !rc && k < 3; k++) {
            snprintf(out->m[out->n].name, sizeof out->m[0].name, "recall@%d@0.5", nums[k]);
            out->m[out->n++].value = rec[k];
        }
    }
    free(gts);
    if (rc) md_error_wrap(err, "%s", ds->type);
    return rc;
}

static const md_dataset_iface voc_iface = {
    .len = custom_len, .get = custom_get, .ann_info = custom_ann_info, .img_info = custom_img_info,
    .evaluate = voc_evaluate, .destroy = voc_destroy,
};

static int push_ign_label(voc_ds *d, int64_t label) {
    if (d->c.ign.n > d->ign_cap) {
        int64_t nc = d->ign_cap ? 2 * d->ign_cap : 64;
        while (nc < d->c.ign.n) nc *= 2;
        int64_t *p = realloc(d->ign_labels, sizeof *p * (size_t)nc);
        if (!p) return -1;
        d->ign_labels = p, d->ign_cap = nc;
    }
    d->ign_labels[d->c.ign.n - 1] = label;
    return 0;
}

/* Reads the id list (mmcv.list_from_file; blank lines skipped). */
static int read_ids(const char *path, char ***ids, int64_t *n, md_error *err) {
    char *buf;
    size_t len;
    if (read_all(path, &buf, &len, err)) return -1;
    int64_t cap = 64, k = 0;
    char **v = malloc(sizeof *v * (size_t)cap);
    char *p = buf, *end = buf + len;
    while (v && p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *e = nl ? nl : end;
        char *q = e;
        while (q > p && (q[-1] == '\r' || q[-1] == ' ' || q[-1] == '\t')) q--;
        if (q > p) {
            if (k == cap) {
                char **nv = realloc(v, sizeof *v * (size_t)(cap *= 2));
                if (!nv) break;
                v = nv;
            }
            if (!(v[k] = strndup(p, (size_t)(q - p)))) break;
            k++;
        }
        p = e + 1;
    }
    free(buf);
    if (!v || p < end) {
        for (int64_t i = 0; v && i < k; i++) free(v[i]);
        free(v);
        return md_failc(err, MD_ERR_NOMEM, "out of memory reading %s", path);
    }
    *ids = v, *n = k;
    return 0;
}

static int load(md_ctx *ctx, voc_ds *d, const md_cfg *cfg, md_error *err) {
    custom_ds *c = &d->c;
    const char *img_sub = md_cfg_str(cfg, "img_subdir", "JPEGImages");
    const char *ann_sub = md_cfg_str(cfg, "ann_subdir", "Annotations");
    int64_t min_size = md_cfg_int(cfg, "min_size", 0);
    bool filter = !c->base.test_mode, filter_empty = md_cfg_bool(cfg, "filter_empty_gt", true);
    if (min_size > 0 && c->base.test_mode)
        return md_failc(err, MD_ERR_CONFIG, "min_size (boxes) cannot be used with test_mode");
    char **ids = NULL;
    int64_t n_ids = 0, j = 0;
    if (read_ids(c->ann_file, &ids, &n_ids, err)) return -1;
    int rc = -1;
    c->infos = calloc((size_t)(n_ids + 1), sizeof *c->infos);
    c->off = calloc((size_t)(n_ids + 2), sizeof *c->off);
    c->ign_off = calloc((size_t)(n_ids + 2), sizeof *c->ign_off);
    if (!c->infos || !c->off || !c->ign_off || md_boxes_reserve(&c->gt, 16, true) ||
        md_boxes_reserve(&c->ign, 16, false)) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        goto done;
    }
    const char *prefix = c->img_prefix ? c->img_prefix : "";
    for (int64_t i = 0; i < n_ids; i++) {
        size_t l = strlen(prefix) + strlen(ann_sub) + strlen(img_sub) + strlen(ids[i]) + 16;
        char *fname = malloc(l), *ann_rel = malloc(l), *ann_path = NULL;
        if (fname && ann_rel) {
            snprintf(fname, l, "%s/%s.jpg", img_sub, ids[i]);
            snprintf(ann_rel, l, "%s/%s.xml", ann_sub, ids[i]);
            ann_path = md_path_join(prefix, ann_rel);
        }
        free(ann_rel);
        voc_xml x;
        if (!ann_path) {
            free(fname);
            md_failc(err, MD_ERR_NOMEM, "out of memory");
            goto done;
        }
        if (voc_parse_file(ann_path, c->base.classes, c->base.n_classes, &x, err)) {
            free(fname), free(ann_path);
            md_error_wrap(err, "%s (image %lld of %s)", ids[i], (long long)i, c->ann_file);
            goto done;
        }
        if (!x.has_size) {
            char *ip = md_path_join(prefix, fname);
            int bad = !ip || md_image_read_size(ip, &x.width, &x.height, err);
            free(ip);
            if (bad) {
                if (!md_error_is_set(err)) md_failc(err, MD_ERR_NOMEM, "out of memory");
                md_error_wrap(err, "%s has no <size>", ann_path);
                free(fname), free(ann_path), voc_xml_free(&x);
                goto done;
            }
        }
        bool keep = true;
        if (filter) {
            if ((x.width < x.height ? x.width : x.height) < 32) keep = false;
            else if (filter_empty && !x.any_class) keep = false;
        }
        if (!keep) {
            free(fname), free(ann_path), voc_xml_free(&x);
            continue;
        }
        c->infos[j] = (md_img_info){ fname, x.width, x.height, i };
        for (int k = 0; k < x.n; k++) {
            const voc_obj *o = &x.objs[k];
            if (o->bbox[2] < o->bbox[0] || o->bbox[3] < o->bbox[1]) {
                c->dropped++;
                continue;
            }
            bool ignore = min_size > 0 && (o->bbox[2] - o->bbox[0] < min_size || o->bbox[3] - o->bbox[1] < min_size);
            float b[4] = { (float)(o->bbox[0] - 1), (float)(o->bbox[1] - 1), (float)(o->bbox[2] - 1),
                           (float)(o->bbox[3] - 1) };
            int bad = (o->difficult || ignore) ? md_boxes_push(&c->ign, b, 0) || push_ign_label(d, o->label)
                                               : md_boxes_push(&c->gt, b, o->label);
            if (bad) {
                free(ann_path), voc_xml_free(&x);
                md_failc(err, MD_ERR_NOMEM, "out of memory");
                j++;   /* fname is owned by infos now */
                goto done;
            }
        }
        free(ann_path);
        voc_xml_free(&x);
        j++;
        c->off[j] = c->gt.n;
        c->ign_off[j] = c->ign.n;
    }
    c->n = j;
    if (!d->ign_labels && !(d->ign_labels = calloc(1, sizeof *d->ign_labels))) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (c->dropped)
        md_warn(ctx, "%s: %lld boxes with xmax < xmin or ymax < ymin dropped", c->ann_file, (long long)c->dropped);
    rc = custom_set_flags(c, err);
done:
    if (rc) c->n = j;   /* custom_free frees the filenames infos[0..j) own */
    for (int64_t i = 0; i < n_ids; i++) free(ids[i]);
    free(ids);
    return rc;
}

static const md_key voc_keys[] = {
    { "ann_file", MD_KEY_ANY, NULL, "image id list, e.g. VOC2007/ImageSets/Main/trainval.txt", true },
    { "pipeline", MD_KEY_LIST, "[]", "transforms applied to each sample", false },
    { "classes", MD_KEY_ANY, NULL, "class names (list), a file of names, or None: the VOC classes", false },
    { "data_root", MD_KEY_ANY, NULL, "joined before ann_file and img_prefix", false },
    { "img_prefix", MD_KEY_ANY, "\"\"", "the VOC year directory (holds Annotations/ and JPEGImages/)", false },
    { "seg_prefix", MD_KEY_ANY, NULL, "segmentation map directory (unused)", false },
    { "proposal_file", MD_KEY_ANY, NULL, "precomputed proposals (unsupported)", false },
    { "test_mode", MD_KEY_BOOL, "false", "no filtering; samples come without annotations", false },
    { "filter_empty_gt", MD_KEY_BOOL, "true", "drop images without an object of CLASSES in training", false },
    { "min_size", MD_KEY_ANY, NULL, "boxes with a side under this become ignored (training)", false },
    { "img_subdir", MD_KEY_STRING, "\"JPEGImages\"", "image directory under img_prefix", false },
    { "ann_subdir", MD_KEY_STRING, "\"Annotations\"", "XML directory under img_prefix", false },
    { "file_client_args", MD_KEY_GROUP, NULL, "accepted for mmdet configs; local files only", false },
    { 0 } };

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err, bool voc) {
    xmlInitParser();
    voc_ds *d = calloc(1, sizeof *d);
    if (!d) {
        md_failc(err, MD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    d->c.base.iface = &voc_iface;
    const md_cfg *ms = md_cfg_get(cfg, "min_size");
    if (ms && md_cfg_kind(ms) != MD_CFG_NONE && md_cfg_kind(ms) != MD_CFG_INT && md_cfg_kind(ms) != MD_CFG_FLOAT) {
        md_failc(err, MD_ERR_CONFIG, "min_size (%s:%d): expected a number or None, got %s",
                 md_cfg_file(ms) ? md_cfg_file(ms) : "?", md_cfg_line(ms), md_cfg_type_name(md_cfg_kind(ms)));
        free(d);
        return NULL;
    }
    if (custom_init(ctx, &d->c, cfg, voc ? "VOCDataset" : "XMLDataset", voc ? voc_classes : NULL, voc ? N_VOC : 0,
                    err))
        goto fail;
    if (!voc && d->c.base.n_classes == 0) {
        md_failc(err, MD_ERR_CONFIG, "XMLDataset needs `classes` (it has no default class names)");
        goto fail;
    }
    if (voc) {
        const char *p = d->c.img_prefix ? d->c.img_prefix : "";
        if (strstr(p, "VOC2007")) d->year = 2007;
        else if (strstr(p, "VOC2012")) d->year = 2012;
        else {
            md_failc(err, MD_ERR_CONFIG, "Cannot infer dataset year from img_prefix '%s' (it must contain VOC2007 "
                     "or VOC2012; use XMLDataset otherwise)", p);
            goto fail;
        }
        d->legacy_eval = true;
    }
    if (load(ctx, d, cfg, err)) goto fail;
    return d;
fail:
    voc_destroy(&d->c.base);
    return NULL;
}

static void *voc_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) { return build(ctx, cfg, err, true); }
static void *xml_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) { return build(ctx, cfg, err, false); }

static const md_class voc_class = {
    .name = "VOCDataset", .keys = voc_keys, .build = voc_build, MD_IFACE(&voc_iface, MD_IFACE_DATASET),
    .doc = "Pascal VOC dataset (mmdet's VOCDataset): XML annotations, VOC mAP",
};
static const md_class xml_class = {
    .name = "XMLDataset", .keys = voc_keys, .build = xml_build, MD_IFACE(&voc_iface, MD_IFACE_DATASET),
    .doc = "VOC-layout dataset with your own classes (mmdet's XMLDataset)",
};

MD_PLUGIN("voc_dataset", "1.0", "Apache-2.0");
MD_REGISTER("datasets", voc_class)
MD_REGISTER("datasets", xml_class)
