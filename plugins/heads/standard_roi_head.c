/* mmdet's StandardRoIHead, bbox branch (mmdet/models/roi_heads/
 * standard_roi_head.py), on the library's RoI-head parts (roi_head.h),
 * which hold the whole bbox branch: per image assign the proposals (gts
 * added as proposals by the sampler), sample, pool the sampled RoIs with
 * bbox_roi_extractor, run bbox_head and its losses; at test time pool the
 * proposals and decode per image, or merge test-time variants. This file
 * is what StandardRoIHead adds: its name and the branches it does not have
 * yet (mask, shared head), refused when configured. Children:
 * bbox_roi_extractor (no parameters) and bbox_head (roi_head.bbox_head.*).
 */
#include <mmdet/mmdet.h>
#include <mmdet/roi_head.h>

typedef struct standard_roi_head {
    md_roi_head_base base;
    const md_cfg *mask_roi_extractor, *mask_head, *shared_head;
} standard_roi_head;

static const md_key keys[] = {
    MD_ROI_HEAD_KEYS,
    { "mask_roi_extractor", MD_KEY_ANY, "None", "only None", false, MD_AT(standard_roi_head, mask_roi_extractor) },
    { "mask_head", MD_KEY_ANY, "None", "only None", false, MD_AT(standard_roi_head, mask_head) },
    { "shared_head", MD_KEY_ANY, "None", "only None", false, MD_AT(standard_roi_head, shared_head) },
    { 0 } };

static int init_layers(md_ctx *ctx, md_roi_head_base *b, md_error *err) {
    standard_roi_head *h = (standard_roi_head *)b;
    (void)ctx;
    if (h->mask_roi_extractor || h->mask_head || h->shared_head)
        return md_failc(err, MD_ERR_CONFIG, "%s is not supported (bbox branch only)",
                        h->mask_head ? "mask_head" : h->mask_roi_extractor ? "mask_roi_extractor" : "shared_head");
    return 0;
}

static const md_roi_head_base_class standard = {
    .head = MD_ROI_HEAD_BASE("StandardRoIHead"),
    .size = sizeof(standard_roi_head),
    .keys = keys,
    .init_layers = init_layers,
};

MD_PLUGIN("standard_roi_head", "1.0", "Apache-2.0");
MD_ROI_HEAD_REGISTER(standard, "StandardRoIHead", keys, "RoI head with a bbox branch (mmdet 2.x)")
