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
#include <mmdet/custom_dataset.h>

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
    md_custom_dataset c;
    const char *img_subdir, *ann_subdir;
    const md_cfg *min_size;      /* boxes with a smaller side are ignored; NULL: None */
    int year;                    /* VOCDataset: 2007, 2012; 0: XMLDataset */
} voc_ds;

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

/* XMLDataset.load_annotations, with _filter_imgs on each image as it is
 * read (its XML says whether it has an object of CLASSES). */
static int xml_load(md_custom_dataset *c, md_error *err) {
    voc_ds *d = (voc_ds *)c;
    xmlInitParser();
    int64_t min_size = d->min_size ? md_cfg_as_int(d->min_size) : 0;
    if (min_size > 0 && c->base.test_mode)
        return md_failc(err, MD_ERR_CONFIG, "min_size (boxes) cannot be used with test_mode");
    char **ids = NULL;
    int64_t n_ids = 0, dropped = 0;
    if (read_ids(c->ann_file, &ids, &n_ids, err)) return -1;
    int rc = -1;
    const char *prefix = c->img_prefix ? c->img_prefix : "";
    const char *img_sub = d->img_subdir ? d->img_subdir : "JPEGImages";
    const char *ann_sub = d->ann_subdir ? d->ann_subdir : "Annotations";
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
        free(ann_path);
        md_img_info info = { fname, x.width, x.height, i };
        if (!md_custom_dataset_keep_img(c, &info, x.any_class)) {
            free(fname), voc_xml_free(&x);
            continue;
        }
        if (md_custom_dataset_add_img(c, fname, x.width, x.height, i, err)) {
            voc_xml_free(&x);
            goto done;
        }
        for (int k = 0; k < x.n; k++) {
            const voc_obj *o = &x.objs[k];
            if (o->bbox[2] < o->bbox[0] || o->bbox[3] < o->bbox[1]) {
                dropped++;
                continue;
            }
            bool small = min_size > 0 && (o->bbox[2] - o->bbox[0] < min_size || o->bbox[3] - o->bbox[1] < min_size);
            float b[4] = { (float)(o->bbox[0] - 1), (float)(o->bbox[1] - 1), (float)(o->bbox[2] - 1),
                           (float)(o->bbox[3] - 1) };
            if (md_custom_dataset_add_box(c, b, o->label, o->difficult || small, err)) {
                voc_xml_free(&x);
                goto done;
            }
        }
        voc_xml_free(&x);
    }
    if (dropped)
        md_warn(c->ctx, "%s: %lld boxes with xmax < xmin or ymax < ymin dropped", c->ann_file, (long long)dropped);
    rc = 0;
done:
    for (int64_t i = 0; i < n_ids; i++) free(ids[i]);
    free(ids);
    return rc;
}

/* VOCDataset: the year from img_prefix, then XMLDataset's loading. */
static int voc_load(md_custom_dataset *c, md_error *err) {
    voc_ds *d = (voc_ds *)c;
    const char *p = c->img_prefix ? c->img_prefix : "";
    if (strstr(p, "VOC2007")) d->year = 2007;
    else if (strstr(p, "VOC2012")) d->year = 2012;
    else
        return md_failc(err, MD_ERR_CONFIG, "Cannot infer dataset year from img_prefix '%s' (it must contain VOC2007 "
                        "or VOC2012; use XMLDataset otherwise)", p);
    return xml_load(c, err);
}

/* VOCDataset.evaluate: eval_map on legacy (+1) coordinates, 11-point AP for
 * VOC2007, mAP listed first; XMLDataset keeps CustomDataset's. */
static int voc_evaluate(const md_custom_dataset *c, const md_det_result *results, int64_t n, const char *metric,
                        md_metrics *out, md_error *err) {
    const voc_ds *d = (const voc_ds *)c;
    md_map_eval_opts opts = { .iou_thr = 0.5, .eleven_points = d->year == 2007, .legacy_coordinates = true,
                              .map_first = true };
    return md_custom_dataset_evaluate_map(c, results, n, metric, &opts, out, err);
}

static const md_key voc_keys[] = {
    MD_CUSTOM_DATASET_KEYS,
    { "min_size", MD_KEY_FLOAT, NULL, "boxes with a side under this become ignored (training)", false,
      MD_AT(voc_ds, min_size) },
    { "img_subdir", MD_KEY_STRING, "\"JPEGImages\"", "image directory under img_prefix", false,
      MD_AT(voc_ds, img_subdir) },
    { "ann_subdir", MD_KEY_STRING, "\"Annotations\"", "XML directory under img_prefix", false,
      MD_AT(voc_ds, ann_subdir) },
    { 0 } };

static const md_custom_dataset_class xml_cls = {
    .name = "XMLDataset", .size = sizeof(voc_ds), .keys = voc_keys, .load_annotations = xml_load,
};
static const md_custom_dataset_class voc_cls = {
    .name = "VOCDataset", .size = sizeof(voc_ds), .keys = voc_keys, .classes = voc_classes, .n_classes = N_VOC,
    .palette = "voc", .load_annotations = voc_load, .evaluate = voc_evaluate,
};

static void *xml_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    return md_custom_dataset_build(ctx, &xml_cls, cfg, err);
}
static void *voc_build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    return md_custom_dataset_build(ctx, &voc_cls, cfg, err);
}

static const md_class voc_class = {
    .name = "VOCDataset", .keys = voc_keys, .build = voc_build, MD_IFACE(&md_custom_dataset_iface, MD_IFACE_DATASET),
    .doc = "Pascal VOC dataset (mmdet's VOCDataset): XML annotations, VOC mAP",
};
static const md_class xml_class = {
    .name = "XMLDataset", .keys = voc_keys, .build = xml_build, MD_IFACE(&md_custom_dataset_iface, MD_IFACE_DATASET),
    .doc = "VOC-layout dataset with your own classes (mmdet's XMLDataset)",
};

MD_PLUGIN("voc_dataset", "1.0", "Apache-2.0");
MD_REGISTER("datasets", voc_class)
MD_REGISTER("datasets", xml_class)
