#!/usr/bin/python3
"""Yardstick: scikit-learn (Debian python3-sklearn) on the benchmark's exact data.

    node bench/bench.mjs --dump /tmp/diad-bench          # 1725 maps, 452 MB + 113 MB
    /usr/bin/python3 bench/sklearn_yardstick.py /tmp/diad-bench

Per class: image AUROC / AP / F1-max (score = max of map), pixel AUROC (roc_auc_score), AP
(average_precision_score), F1-max (precision_recall_curve) and the MVTec AD AU-PRO (scipy
8-connected labels, argsort, cumsum, trapezoid to 0.3 with interpolation), i.e. `standard` mode.
Prints the wall time and peak RSS, and the means to compare with the bench's."""
import json
import resource
import sys
import time

import numpy as np
from scipy.ndimage import label
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

d = sys.argv[1]
meta = json.load(open(f"{d}/meta.json"))
H, W = meta["height"], meta["width"]
cls = np.array(meta["classes"])
maps = np.memmap(f"{d}/maps.f32", np.float32, "r").reshape(-1, H, W)
masks = np.memmap(f"{d}/masks.u8", np.uint8, "r").reshape(-1, H, W)


def f1max(y, s):
    p, r, _ = precision_recall_curve(y, s)
    f = 2 * p * r / (p + r)
    return np.max(f[np.isfinite(f)])


def au_pro(amaps, gts, limit=0.3):
    fp_ch = np.zeros(amaps.shape, np.float64)
    pro_ch = np.zeros(amaps.shape, np.float64)
    num_ok = nreg = 0
    for i in range(len(amaps)):
        lab, n = label(gts[i], structure=np.ones((3, 3), int))
        ok = lab == 0
        nreg += n; num_ok += ok.sum(); fp_ch[i][ok] = 1
        if n:
            areas = np.bincount(lab.ravel())
            pro_ch[i][~ok] = 1.0 / areas[lab[~ok]]
    fp_ch /= num_ok; pro_ch /= nreg
    s = amaps.ravel(); idx = np.argsort(s)[::-1]; s = s[idx]
    fprs = np.cumsum(fp_ch.ravel()[idx]); pros = np.cumsum(pro_ch.ravel()[idx])
    keep = np.append(np.where(s[:-1] != s[1:])[0], len(s) - 1)
    x = np.clip(np.concatenate([[0], fprs[keep]]), 0, 1); y = np.clip(np.concatenate([[0], pros[keep]]), 0, 1)
    corr = 0.0
    if limit not in x:
        ins = np.searchsorted(x, limit)
        yi = y[ins - 1] + (y[ins] - y[ins - 1]) * (limit - x[ins - 1]) / (x[ins] - x[ins - 1])
        corr = 0.5 * (yi + y[ins - 1]) * (limit - x[ins - 1])
    m = x <= limit
    x, y = x[m], y[m]
    return (np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + corr) / limit


t0 = time.time()
rows = []
timing = {"image": 0.0, "pixel auroc/ap/f1": 0.0, "au-pro": 0.0}
for c in dict.fromkeys(cls):
    sel = np.where(cls == c)[0]
    am = np.asarray(maps[sel]); gt = np.asarray(masks[sel]) > 0
    lab = gt.reshape(len(sel), -1).any(1).astype(int)
    t = time.time()
    sc = am.reshape(len(sel), -1).max(1)
    r = [roc_auc_score(lab, sc), average_precision_score(lab, sc), f1max(lab, sc)]
    timing["image"] += time.time() - t; t = time.time()
    y, s = gt.ravel(), am.ravel()
    r += [roc_auc_score(y, s), average_precision_score(y, s), f1max(y, s)]
    timing["pixel auroc/ap/f1"] += time.time() - t; t = time.time()
    r.append(au_pro(am, gt))
    timing["au-pro"] += time.time() - t
    rows.append(r)
wall = time.time() - t0
names = ["aurocImage", "apImage", "f1MaxImage", "aurocPixel", "apPixel", "f1MaxPixel", "auPro"]
print(json.dumps({"wallSeconds": wall, "breakdown": timing,
                  "peakRssMiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "mean": dict(zip(names, np.mean(rows, 0).tolist()))}))
