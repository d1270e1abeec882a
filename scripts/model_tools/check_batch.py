#!/usr/bin/env python3
"""Check that a dynamic-batch model computes, per image, what the batch-1 original does.

Usage: check_batch.py MODEL_B1.onnx MODEL_DYN.onnx [--batch 4] [--tol 1e-4] [--seed 20240601]

Runs onnxruntime (CPU) on deterministic pseudo-random images:
  * the original model, one image at a time (batch 1), as the reference;
  * the dynamic model on a batch of the *same* image repeated, and
  * the dynamic model on a batch that holds that image among different ones
    (not in position 0, so a model that only gets row 0 right is caught).
Every row must equal the reference for its image (max abs diff < tol). Exits
non-zero, with the diff, if not.
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("b1")
    ap.add_argument("dyn")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=20240601)
    args = ap.parse_args()
    if args.batch < 2:
        sys.exit("--batch must be at least 2")

    ref_sess, dyn_sess = session(args.b1), session(args.dyn)
    inp = ref_sess.get_inputs()[0]
    shape = list(inp.shape)
    if shape[0] != 1 or not all(isinstance(d, int) for d in shape[1:]):
        sys.exit(f"error: {args.b1}: expected a [1, C, H, W] input, got {shape}")
    dyn_dim0 = dyn_sess.get_inputs()[0].shape[0]
    if isinstance(dyn_dim0, int):
        sys.exit(f"error: {args.dyn}: input dim 0 is fixed ({dyn_dim0}), not dynamic")

    # Deterministic inputs in the model's range (RGB / 255): image 0 is the one
    # repeated, images 1.. are the "different ones".
    rng = np.random.default_rng(args.seed)
    images = rng.random((args.batch, *shape[1:]), dtype=np.float32)

    def run(sess, batch):
        return sess.run(None, {inp.name: batch})[0]

    refs = [run(ref_sess, images[i:i + 1])[0] for i in range(args.batch)]
    if np.array_equal(refs[0], refs[1]):
        sys.exit("error: the model gives identical outputs for different images; the check would prove nothing")

    failures, worst, compared = [], 0.0, 0

    def compare(label, out, which):
        nonlocal worst, compared
        expected_shape = (args.batch, *refs[0].shape)
        if out.shape != expected_shape:
            failures.append(f"{label}: output shape {out.shape}, expected {expected_shape}")
            return
        for row, img in enumerate(which):
            diff = float(np.max(np.abs(out[row].astype(np.float64) - refs[img])))
            worst, compared = max(worst, diff), compared + 1
            if not diff < args.tol:
                failures.append(f"{label}: row {row} (image {img}) max abs diff {diff:.3g} >= {args.tol:g}")

    same = [0] * args.batch
    mixed = [1, 0] + list(range(2, args.batch))  # image 0 in position 1, the others around it
    for label, which in ((f"same image x{args.batch}", same), ("mixed batch", mixed)):
        try:
            out = run(dyn_sess, images[which])
        except Exception as exc:  # e.g. a Reshape that still has the batch baked in
            failures.append(f"{label}: onnxruntime failed on a batch of {args.batch}: {exc}")
            continue
        compare(label, out, which)

    out_shape = [args.batch, *refs[0].shape]
    if compared:
        print(f"  batch {args.batch} vs batch 1: output {out_shape}, {compared} rows compared, "
              f"max abs diff {worst:.3g} (tolerance {args.tol:g})")
    if failures:
        for f in failures:
            print(f"  FAIL {f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
