#!/usr/bin/env python3
"""FP32 vs INT8 YOLOX-nano speed on onnxruntime CPU, in one process.

Usage: bench.py [--fp32 FP32.onnx] [INT8.onnx ...] [--runs 25] [--batches 1,8]

intra_op_num_threads=1, inter_op_num_threads=1, sequential, ORT_ENABLE_ALL; the same 8 frames of the sample video at
384x288 (frames 0, 100, ..., 700); batch 1 runs each of the 8 frames in turn (one "run" = the 8 calls), batch 8 runs
them as one batch; a warm-up run first; the runs of the models are interleaved (model A run, model B run, ...) so
drift in machine load hits all alike.  Reports the median (and min) ms per frame over --runs runs, the ratio to
FP32, and the models' file sizes.  Inference only (preprocessing is the same for both and excluded).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import yolox_common as yc  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fp32", default=yc.FP32_MODEL)
    ap.add_argument("int8", nargs="*", default=[os.path.join(yc.HERE, "yolox_nano.int8.onnx")])
    ap.add_argument("--runs", type=int, default=25)
    ap.add_argument("--batches", default="1,8")
    args = ap.parse_args()

    frames = yc.video_frames(start=0, step=100, count=8)
    x8 = yc.preprocess(frames)
    models = {"FP32": args.fp32, **{os.path.basename(p): p for p in args.int8}}
    sess = {k: yc.session(p, threads=1) for k, p in models.items()}
    for k, p in models.items():
        print(f"{k}: {p} {os.path.getsize(p) / 1e6:.2f} MB")

    for b in (int(v) for v in args.batches.split(",")):
        chunks = [x8[i:i + b] for i in range(0, 8, b)]
        times = {k: [] for k in sess}
        for r in range(args.runs + 1):
            for k, s in sess.items():
                t = time.perf_counter()
                for c in chunks:
                    s.run(None, {"images": c})
                if r:  # run 0 is the warm-up
                    times[k].append((time.perf_counter() - t) * 1000 / 8)
        base = float(np.median(times["FP32"]))
        for k, ts in times.items():
            med = float(np.median(ts))
            print(f"batch {b}: {k:32s} {med:7.2f} ms/frame (min {min(ts):.2f}, {args.runs} runs)  "
                  f"FP32/this = {base / med:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
