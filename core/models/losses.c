/* The "losses" registry's base: building a loss object from its schema. */
#include <stdlib.h>
#include "internal.h"
#include <mmdet/losses.h>

MD_API md_loss *md_loss_new(size_t size, const md_loss_iface *iface, const char *type, const md_cfg *cfg,
                            const md_key *keys, md_error *err) {
    if (size < sizeof(md_loss)) {
        md_failc(err, MD_ERR_REGISTRY, "%s: the loss struct is smaller than md_loss", type);
        return NULL;
    }
    md_loss *l = md_object_new(size, iface, type, cfg, keys, err);
    /* a schema without MD_LOSS_KEYS still weighs 1 (reduction 0 is mean) */
    if (l && !md_key_find(keys, "loss_weight")) l->loss_weight = 1.0;
    return l;
}

MD_API md_loss *md_build_loss(md_ctx *ctx, const md_cfg *cfg, md_error *err) {
    return md_build_from_cfg(ctx, "losses", cfg, NULL, err);
}

MD_API void md_loss_free(md_loss *l) {
    if (!l) return;
    if (l->iface->destroy) l->iface->destroy(l);
    free(l);
}
