#!/usr/bin/env python3
"""Validate an INT8 YOLOX-nano against the FP32 model on persons-dev (issue 20, step 6).

Usage: validate.py [--fp32 FP32.onnx] [--int8 INT8.onnx] [--dev persons-dev DIR] [--size 384x288]
                   [--max-recall-drop 0.02] [--min-iou 0.9] [--verbose]

Each photo is shrunk into a 384x288 frame (centred, black bars, area filter: ffmpeg scale+pad), run through both
models at 384x288 batch 1 (BGR raw 0..255, top-left letterbox pad 114 -- a no-op at 384x288), decoded (person,
score = obj*cls >= 0.4, NMS 0.45) and mapped back to the photo's pixels.  Against the labels: greedy by score at
IoU >= 0.5; recall over people taller than 96 px (original pixels) and overall precision.  Between the models:
INT8 boxes matched greedily (by INT8 score) to FP32 boxes at IoU >= 0.5; mean IoU of the pairs, and how many boxes
of either model went unmatched.  Exits 1 when |recall(INT8) - recall(FP32)| > 0.02 or the mean IoU < 0.9.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import yolox_common as yc  # noqa: E402

TALL = 96.0


def evaluate(dets: dict, labels: list[dict]) -> dict:
    tall = tall_found = ndet = tp = 0
    empty_fp = 0
    for im in labels:
        boxes, scores = dets[im["file"]]
        gt = np.array(im["persons"], np.float64).reshape(-1, 4)
        pairs = yc.greedy_match(boxes, scores, gt)
        matched = {g for _, g, _ in pairs}
        heights = gt[:, 3] - gt[:, 1]
        tall += int((heights > TALL).sum())
        tall_found += sum(1 for g in matched if heights[g] > TALL)
        ndet += len(boxes)
        tp += len(pairs)
        if len(gt) == 0:
            empty_fp += len(boxes)
    return {"recall": tall_found / max(tall, 1), "precision": tp / max(ndet, 1), "tall": tall,
            "tall_found": tall_found, "dets": ndet, "tp": tp, "empty_fp": empty_fp}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fp32", default=yc.FP32_MODEL)
    ap.add_argument("--int8", default=os.path.join(yc.HERE, "yolox_nano.int8.onnx"))
    ap.add_argument("--dev", default=yc.PERSONS_DEV)
    ap.add_argument("--size", default="384x288")
    ap.add_argument("--max-recall-drop", type=float, default=0.02)
    ap.add_argument("--min-iou", type=float, default=0.9)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    fw, fh = (int(v) for v in args.size.split("x"))

    labels = yc.load_labels(args.dev)
    models = {"FP32": yc.session(args.fp32, threads=2), "INT8": yc.session(args.int8, threads=2)}
    dets = {k: {} for k in models}
    for im in labels:
        frame, s, px, py = yc.shrink_into(os.path.join(args.dev, "images", im["file"]), fw, fh)
        for k, sess in models.items():
            boxes, scores = yc.detect(sess, [frame])[0]
            boxes = boxes.copy()
            boxes[:, [0, 2]] = (boxes[:, [0, 2]] - px) / s
            boxes[:, [1, 3]] = (boxes[:, [1, 3]] - py) / s
            dets[k][im["file"]] = (boxes, scores)

    res = {k: evaluate(dets[k], labels) for k in models}
    for k, r in res.items():
        print(f"{k}: recall (>{TALL:.0f} px) {r['recall']:.3f} ({r['tall_found']}/{r['tall']}), precision "
              f"{r['precision']:.3f} ({r['tp']}/{r['dets']}), detections on no-person images {r['empty_fp']}")
    drop = res["INT8"]["recall"] - res["FP32"]["recall"]

    ious, only_f, only_q, n_f, n_q = [], 0, 0, 0, 0
    for im in labels:
        bq, sq = dets["INT8"][im["file"]]
        bf, _ = dets["FP32"][im["file"]]
        pairs = yc.greedy_match(bq, sq, bf)
        ious += [iou for _, _, iou in pairs]
        n_f += len(bf); n_q += len(bq)
        only_f += len(bf) - len(pairs); only_q += len(bq) - len(pairs)
        if args.verbose and (len(bf) != len(pairs) or len(bq) != len(pairs)):
            print(f"  {im['file']}: FP32 {len(bf)} boxes, INT8 {len(bq)}, matched {len(pairs)}")
    mean_iou = float(np.mean(ious)) if ious else 0.0
    print(f"recall difference (INT8 - FP32): {drop:+.3f} (limit +-{args.max_recall_drop})")
    print(f"INT8 vs FP32 boxes: {len(ious)} matched at IoU >= 0.5, mean IoU {mean_iou:.3f} (limit {args.min_iou}), "
          f"min {min(ious) if ious else 0:.3f}; FP32 boxes unmatched {only_f}/{n_f}, INT8 unmatched {only_q}/{n_q}")
    ok = abs(drop) <= args.max_recall_drop + 1e-9 and mean_iou >= args.min_iou
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
