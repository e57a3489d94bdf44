/* mmdet's StandardRoIHead (mmdet/models/roi_heads/standard_roi_head.py)
 * on the library's RoI-head parts (roi_head.h), which hold the bbox and
 * mask branches: per image assign the proposals (gts added as proposals
 * by the sampler), sample, pool the sampled RoIs with bbox_roi_extractor,
 * run bbox_head and its losses, then, with a mask_head, pool the
 * positives with mask_roi_extractor (None: the bbox one) and run the mask
 * head's loss against the gt masks; at test time pool the proposals and
 * decode per image (or merge test-time variants), then paste the
 * detections' masks. This file is what StandardRoIHead adds: its name,
 * the mask keys, and the shared head it does not have yet (refused when
 * configured). Children: bbox_roi_extractor and mask_roi_extractor (no
 * parameters), bbox_head (roi_head.bbox_head.*), mask_head
 * (roi_head.mask_head.*).
 */
#include <mmdet/mmdet.h>
#include <mmdet/roi_head.h>

typedef struct standard_roi_head {
    md_roi_head_base base;
    const md_cfg *shared_head;
} standard_roi_head;

static const md_key keys[] = {
    MD_ROI_HEAD_KEYS,
    MD_ROI_HEAD_MASK_KEYS,
    { "shared_head", MD_KEY_ANY, "None", "only None", false, MD_AT(standard_roi_head, shared_head) },
    { 0 } };

static int init_layers(md_ctx *ctx, md_roi_head_base *b, md_error *err) {
    standard_roi_head *h = (standard_roi_head *)b;
    (void)ctx;
    if (h->shared_head) return md_failc(err, MD_ERR_CONFIG, "shared_head is not supported");
    return 0;
}

static const md_roi_head_base_class standard = {
    .head = MD_ROI_HEAD_BASE("StandardRoIHead"),
    .size = sizeof(standard_roi_head),
    .keys = keys,
    .init_layers = init_layers,
};

MD_PLUGIN("standard_roi_head", "1.0", "Apache-2.0");
MD_ROI_HEAD_REGISTER(standard, "StandardRoIHead", keys, "RoI head with a bbox and an optional mask branch (mmdet 2.x)")
