#!/usr/bin/env python3
"""mmdet 2.28's visualization helpers, for tests/unit/test_draw.c:

    /usr/bin/python3 tests/golden/draw_golden.py    (needs mmdet, matplotlib)

Writes tests/fixtures/draw.safetensors:

  palette_random  u8 [100, 3]   get_palette(None, 100) (numpy seed 42)
  palette_coco    u8 [80, 3]    get_palette('coco', 80)
  palette_voc     u8 [20, 3]    get_palette('voc', 20)
  palette_citys   u8 [8, 3]     get_palette('citys', 8)
  palette_red     u8 [4, 3]     get_palette('red', 4)
  scale_areas     f32 [n]       box areas; scale_values f32 [n] their
                                _get_adaptive_scales
  mask_img        u8 [h, w, 3]  an RGB image; mask_masks u8 [2, h, w] two
                                masks; mask_colors u8 [2, 3] their colours
  mask_out        u8 [h, w, 3]  draw_masks(ax, img, masks, colors)'s image
"""
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from mmdet.core.visualization.image import _get_adaptive_scales, draw_masks  # noqa: E402
from mmdet.core.visualization.palette import get_palette  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import save  # noqa: E402


def pal(p, n):
    return np.array(get_palette(p, n), dtype=np.uint8).reshape(n, 3)


def main():
    t = {
        "palette_random": pal(None, 100),
        "palette_coco": pal("coco", 80),
        "palette_voc": pal("voc", 20),
        "palette_citys": pal("citys", 8),
        "palette_red": pal("red", 4),
    }
    areas = np.array([0, 100, 800, 801, 5000, 15400, 29999, 30000, 90000], np.float32)
    t["scale_areas"] = areas
    t["scale_values"] = _get_adaptive_scales(areas).astype(np.float32)

    rng = np.random.default_rng(3)
    h, w = 12, 16
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    masks = np.zeros((2, h, w), np.uint8)
    masks[0, 2:8, 3:10] = 1
    masks[1, 5:11, 8:15] = 1
    colors = np.array([[220, 20, 60], [0, 0, 230]], np.uint8)
    t["mask_img"] = img.copy()
    t["mask_masks"] = masks
    t["mask_colors"] = colors
    fig = plt.figure()
    ax = plt.gca()
    _, out = draw_masks(ax, img.copy(), masks, colors, with_edge=False)
    plt.close(fig)
    t["mask_out"] = out
    save("draw", t)


if __name__ == "__main__":
    main()
