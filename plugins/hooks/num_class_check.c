/* NumClassCheckHook (mmdet): before training or validation starts, every
 * head's num_classes must equal the length of the dataset's CLASSES. As
 * mmdet's, the region proposal head is left out: its num_classes is the
 * objectness channel (mmdet skips RPNHead and GARPNHead by type; here also
 * whatever head serves as a two-stage detector's rpn_head). */
#include <stdlib.h>
#include <string.h>
#include <mmdet/mmdet.h>

/* Names in a JSON list of strings, as the runner keeps CLASSES. */
static int count_names(const char *json, char *first, size_t n) {
    int count = 0;
    bool in = false;
    size_t k = 0;
    for (const char *p = json; p && *p; p++) {
        if (in && *p == '\\' && p[1]) {
            p++;
            continue;
        }
        if (*p == '"') {
            in = !in;
            if (in) count++;
            continue;
        }
        if (in && count <= 3 && k + 2 < n) first[k++] = *p;
        else if (!in && *p == ',' && count < 3 && k + 3 < n) {
            first[k++] = ',';
            first[k++] = ' ';
        }
    }
    if (k < n) first[k] = 0;
    return count;
}

static bool skipped(const md_module *m, const char *path) {
    static const char *const types[] = { "RPNHead", "GARPNHead" };
    const char *leaf = strrchr(path, '.');
    if (!strcmp(leaf ? leaf + 1 : path, "rpn_head")) return true;
    for (size_t i = 0; i < sizeof types / sizeof *types; i++)
        if (m->cls && m->cls->name && !strcmp(m->cls->name, types[i])) return true;
    return false;
}

static int check(const md_module *m, const char *path, int n_classes, const char *names, md_error *err) {
    if (skipped(m, path)) return 0;
    if (m->cls && m->cls->num_classes) {
        int k = m->cls->num_classes(m);
        if (k >= 0 && k != n_classes)
            return md_failc(err, MD_ERR_CONFIG,
                            "%s (%s) has num_classes = %d but the dataset has %d classes (%s%s); set "
                            "num_classes in the model config", path[0] ? path : "model", m->cls->name, k, n_classes,
                            names, n_classes > 3 ? ", ..." : "");
    }
    for (int i = 0; i < m->n_children; i++) {
        char sub[512];
        snprintf(sub, sizeof sub, "%s%s%s", path, path[0] ? "." : "", m->children[i].name);
        if (check(m->children[i].m, sub, n_classes, names, err) != 0) return -1;
    }
    return 0;
}

static int before_epoch(md_hook *h, md_runner *r, md_error *err) {
    (void)h;
    const char *classes = md_runner_classes(r);
    if (!classes) return 0;   /* the dataset did not say: nothing to compare */
    char names[256] = "";
    int n = count_names(classes, names, sizeof names);
    return check(md_runner_model(r), "", n, names, err);
}

static const md_hook_iface iface = { .before_train_epoch = before_epoch, .before_val_epoch = before_epoch,
                                     .default_priority = MD_PRIORITY_NORMAL };

static void *build(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    (void)ctx;
    (void)cfg;
    md_hook *h = calloc(1, sizeof *h);
    if (!h) md_failc(err, MD_ERR_NOMEM, "out of memory");
    else h->iface = &iface;
    return h;
}

MD_PLUGIN("num_class_check", "1.0", "Apache-2.0");
static const md_class cls = { .name = "NumClassCheckHook", .build = build, MD_IFACE(&iface, MD_IFACE_HOOK),
                              .doc = "heads' num_classes must match the dataset's CLASSES" };
MD_REGISTER("hooks", cls)
