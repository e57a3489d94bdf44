"""Reads a results pickle bin/mmdet-test --out wrote with Python's own
pickle (and with mmcv.load when mmcv imports, as mmdet's tools read it),
and checks it against the JSON --out of the same run: one entry per image;
for a mask model a tuple (bbox_results, segm_results); bbox_results a list
of float32 numpy arrays [k, 5] per class; segm_results per class a list of
{"size": [h, w], "counts": bytes} dicts (decoded with pycocotools when it
imports). Not part of `make test` (CI has no Python). Exits non-zero on
any mismatch.

    /usr/bin/python3 tests/golden/results_pkl_check.py RESULTS.pkl RESULTS.json
"""
import json
import pickle
import sys

import numpy as np


def main(pkl_path, json_path):
    with open(pkl_path, "rb") as f:
        res = pickle.load(f)
    try:
        import mmcv
        again = mmcv.load(pkl_path)
        assert len(again) == len(res), "mmcv.load disagrees with pickle.load"
        print("mmcv.load: %d images" % len(again))
    except ImportError:
        print("mmcv not importable: pickle.load only")
    with open(json_path) as f:
        ref = json.load(f)
    assert isinstance(res, list) and len(res) == len(ref), (type(res), len(res), len(ref))
    n_boxes = n_masks = 0
    for i, (r, j) in enumerate(zip(res, ref)):
        masks = isinstance(r, tuple)
        bbox, jb = (r[0], j[0]) if masks else (r, j)
        assert isinstance(bbox, list) and len(bbox) == len(jb)
        for c, (a, b) in enumerate(zip(bbox, jb)):
            assert isinstance(a, np.ndarray) and a.dtype == np.float32 and a.shape == (len(b), 5), (i, c, a)
            assert np.array_equal(a, np.array(b, np.float32).reshape(-1, 5)), (i, c)
            n_boxes += len(b)
        if not masks:
            continue
        assert len(r) == 2 and len(r[1]) == len(j[1])
        for c, (segs, js) in enumerate(zip(r[1], j[1])):
            assert len(segs) == len(js) == len(bbox[c]), (i, c)
            for s, t in zip(segs, js):
                assert isinstance(s["counts"], bytes) and s["counts"].decode() == t["counts"], (i, c)
                assert list(s["size"]) == t["size"], (i, c)
                try:
                    import pycocotools.mask as mask_util
                    m = mask_util.decode(s)
                    assert m.shape == tuple(t["size"]) and m.sum() == mask_util.area(s) > 0
                except ImportError:
                    pass
                n_masks += 1
    print("ok: %d images, %d boxes, %d masks" % (len(res), n_boxes, n_masks))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
