#!/usr/bin/env python3
"""Check the native-size, dynamic-batch YOLOX model against the original export.

Usage: check_yolox.py ORIGINAL.onnx DYNAMIC.onnx [--tol 1e-4] [--seed 20240601]

On deterministic pseudo-random images in the model's range (raw 0-255, BGR):
  * at the original's size (416x416), batch 1: the dynamic model must give
    what the original gives;
  * at that size, a batch of 4 (the image of interest not in position 0) must
    give, row for row, what the original gives for each image alone;
  * at 288x384 (a 384x288 sub-stream) and 384x640 the dynamic model must run,
    give H/8*W/8 + H/16*W/16 + H/32*W/32 rows of the original's width, and give
    in a batch of 4 what it gives for each image at batch 1.
Prints one line per check with the max abs diff; exits non-zero if any fails.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import onnxruntime as ort


def session(path: str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 4  # fatal only: run errors are caught and reported below
    return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


def rows_for(h: int, w: int) -> int:
    return sum((h // s) * (w // s) for s in (8, 16, 32))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("original")
    ap.add_argument("dynamic")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=20240601)
    args = ap.parse_args()

    orig, dyn = session(args.original), session(args.dynamic)
    name = orig.get_inputs()[0].name
    shape = orig.get_inputs()[0].shape
    if shape[:2] != [1, 3] or not all(isinstance(d, int) for d in shape):
        sys.exit(f"error: {args.original}: expected a fixed [1, 3, H, W] input, got {shape}")
    dshape = dyn.get_inputs()[0].shape
    if any(isinstance(dshape[i], int) for i in (0, 2, 3)):
        sys.exit(f"error: {args.dynamic}: input {dshape}: batch, height and width should be symbolic")
    h0, w0 = shape[2], shape[3]
    rng = np.random.default_rng(args.seed)
    failures: list[str] = []

    def run(sess, batch):
        return sess.run(None, {name: batch})[0].astype(np.float64)

    def check(label, got, want):
        if got.shape != want.shape:
            print(f"  {label}: output {list(got.shape)}, expected {list(want.shape)} FAIL")
            failures.append(label)
            return
        diff = float(np.max(np.abs(got - want)))
        ok = diff < args.tol
        print(f"  {label}: max abs diff {diff:.3g}{'' if ok else f' >= {args.tol:g} FAIL'}")
        if not ok:
            failures.append(label)

    def images(h, w, n=4):
        return rng.uniform(0, 255, (n, 3, h, w)).astype(np.float32)

    # At the original's size, against the original.
    imgs = images(h0, w0)
    refs = np.concatenate([run(orig, imgs[i:i + 1]) for i in range(4)])
    if np.array_equal(refs[0], refs[1]):
        sys.exit("error: the model gives identical outputs for different images; the check would prove nothing")
    check(f"{h0}x{w0} batch 1 vs original, {refs.shape[1]} rows", run(dyn, imgs[:1]), refs[:1])
    order = [1, 0, 2, 3]
    try:
        batch = run(dyn, imgs[order])
    except Exception as exc:  # e.g. a Reshape that still has the batch baked in
        failures.append(f"{h0}x{w0} batch 4")
        print(f"  {h0}x{w0} batch 4: onnxruntime failed: {exc} FAIL")
    else:
        check(f"{h0}x{w0} batch 4 vs original batch 1", batch, refs[order])

    # Other sizes: the row count, and batch 4 against batch 1 of the same model.
    for h, w in ((288, 384), (384, 640)):
        label = f"{h}x{w}"
        imgs = images(h, w)
        try:
            singles = np.concatenate([run(dyn, imgs[i:i + 1]) for i in range(4)])
            batch = run(dyn, imgs[order])
        except Exception as exc:
            failures.append(label)
            print(f"  {label}: onnxruntime failed: {exc} FAIL")
            continue
        want = (4, rows_for(h, w), refs.shape[2])
        if singles.shape != want:
            failures.append(label)
            print(f"  {label}: output {list(singles.shape)}, expected {list(want)} FAIL")
            continue
        check(f"{label} batch 4 vs batch 1, {want[1]} rows", batch, singles[order])

    if failures:
        print(f"  FAIL: {len(failures)} check(s): {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
