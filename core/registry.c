/* Registries: placeholder until the registry lands (see issue: core). */
#include "internal.h"

int md__registry_init(md_ctx *ctx, md_error *err) { (void)ctx; (void)err; return 0; }
void md__registry_free(md_ctx *ctx) { (void)ctx; }
