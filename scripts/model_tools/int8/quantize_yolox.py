#!/usr/bin/env python3
"""Static QDQ INT8 quantization of the YOLOX-nano person detector (issue 20, step 6 "Variants").

Usage:
  quantize_yolox.py [--model FP32.onnx] [--video vtest_sub.mp4] [--out yolox_nano.int8.onnx]
                    [--frames 100] [--activation u8|s8] [--calib minmax|entropy|percentile]
                    [--exclude-head none|tail|preds] [--no-per-channel] [--keep-tmp]

Steps:
  1. the FP32 model (symbolic batch/height/width, opset 11) is converted to opset 13, which per-channel
     QuantizeLinear/DequantizeLinear (the `axis` attribute) needs;
  2. onnxruntime.quantization.shape_inference.quant_pre_process (ONNX shape inference + ORT basic
     optimizations; skip_symbolic_shape=True since the pinned venv has no sympy) -- the symbolic
     batch/height/width survive it, so no fixed-shape copy is needed;
  3. quantize_static, QuantFormat.QDQ, per-channel S8 symmetric weights, activations U8 asymmetric (S8 ran 2x
     slower than FP32 here), Percentile calibration at 99.99 (MinMax/Entropy clip nothing and waste the 8 bits on
     the heavy tails of the pre-SiLU conv outputs), on --frames frames spread evenly over the sample video at its
     own 384x288, batch 1, preprocessed exactly as the service does (BGR raw 0..255, top-left letterbox, pad 114).
     The video's people are small, so the frames are taken in turn as they are and as random crops zoomed
     1.5/2/3/4x (--zooms): without that, the deep layers' ranges come out 2-3x too narrow for close-up people;
     the first 30 nodes (Focus stem and the first dark2 stage, --fp32-first) stay FP32: the stem's conv outputs
     span ~+-100 at std ~5 and per-tensor 8 bits there cost ~0.06-0.08 of recall.
     Peak memory of the calibration: ~8.7 GB at 100 frames (the calibrator keeps every tensor of every frame);
  4. the decoding tail is left in FP32 (--exclude-head tail, the default): the final Sigmoid/Concat/Reshape/
     Transpose mix box regressions (log-space w/h, offsets of several cells) with 0..1 scores in one tensor, and one
     8-bit scale for both would wreck either the scores or the boxes.  `preds` also keeps the nine 1x1 prediction
     convolutions in FP32; `none` quantizes everything;
  5. checks: the output model's input keeps symbolic batch/height/width; it runs at 384x288 batch 1 and 4 and at
     640x480 batch 1 with the expected row counts, batch 4 equal (row for row) to batch 1; prints the max abs
     difference of scores against FP32 on video frames.  Exits non-zero if a check fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import version_converter
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import yolox_common as yc  # noqa: E402


class FrameReader(CalibrationDataReader):
    def __init__(self, name: str, frames: list[np.ndarray]):
        self.name = name
        self.frames = frames
        self.i = 0

    def get_next(self):
        if self.i >= len(self.frames):
            return None
        x = yc.preprocess([self.frames[self.i]])
        self.i += 1
        return {self.name: x}

    def rewind(self):
        self.i = 0


def head_tail_nodes(model: onnx.ModelProto, include_pred_convs: bool) -> list[str]:
    """Nodes from the graph output back to (not through) the prediction convolutions.

    Walks producers of `output` through every op that is not a Conv; the Conv producers reached are the 1x1
    reg/obj/cls prediction convolutions, added when include_pred_convs."""
    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {i.name for i in model.graph.initializer}
    names, seen, stack = [], set(), [o.name for o in model.graph.output]
    while stack:
        t = stack.pop()
        n = producer.get(t)
        if n is None or n.name in seen or t in inits:
            continue
        seen.add(n.name)
        if n.op_type == "Conv":
            if include_pred_convs:
                names.append(n.name)
            continue
        names.append(n.name)
        stack.extend(i for i in n.input if i)
    return names


def symbolic_dims(model_path: str) -> list:
    m = onnx.load(model_path, load_external_data=False)
    return [d.dim_param or d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=yc.FP32_MODEL)
    ap.add_argument("--video", default=yc.VIDEO)
    ap.add_argument("--out", default=os.path.join(yc.HERE, "yolox_nano.int8.onnx"))
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--activation", choices=["u8", "s8"], default="u8")
    ap.add_argument("--calib", choices=["minmax", "entropy", "percentile"], default="percentile")
    ap.add_argument("--exclude-head", choices=["none", "tail", "preds"], default="tail")
    ap.add_argument("--zooms", default="1,1.5,2,3,4",
                    help="cycle of zoom factors for the calibration frames: 1 = the frame as it is, z > 1 = a random "
                         "1/z crop scaled back to 384x288, so people appear as large as in close-up photos "
                         "(the video's people are small; without zooms the deep layers' ranges are clipped)")
    ap.add_argument("--seed", type=int, default=20)
    ap.add_argument("--percentile", type=float, default=99.99)
    ap.add_argument("--fp32-first", type=int, default=30,
                    help="also keep the first N nodes of the graph (the high-resolution stem) in FP32")
    ap.add_argument("--no-per-channel", action="store_true")
    ap.add_argument("--reduce-range", action="store_true")
    ap.add_argument("--keep-tmp", action="store_true")
    args = ap.parse_args()

    t0 = time.time()
    tmp = tempfile.mkdtemp(prefix="yolox_int8.")
    try:
        # 1. opset 13 (per-channel Q/DQ needs the axis attribute).
        m = onnx.load(args.model)
        src_opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
        if src_opset < 13:
            m = version_converter.convert_version(m, 13)
        op13 = os.path.join(tmp, "op13.onnx")
        onnx.save(m, op13)

        # 2. pre-processing (shape inference + optimization).
        pre = os.path.join(tmp, "pre.onnx")
        # the pinned venv has no sympy: ONNX shape inference + ORT optimization only (enough for this CNN).
        quant_pre_process(op13, pre, skip_optimization=False, skip_symbolic_shape=True)
        print(f"pre-processed: opset {src_opset} -> 13, input dims {symbolic_dims(pre)}")

        # 3. calibration frames: evenly spread over the video.
        allf = yc.video_frames(args.video)
        step = max(1, len(allf) // args.frames)
        frames = allf[::step][: args.frames]
        del allf
        zooms = [float(z) for z in args.zooms.split(",")]
        rng = np.random.default_rng(args.seed)
        frames = [yc.zoomed(f, zooms[i % len(zooms)], rng) for i, f in enumerate(frames)]
        pm = onnx.load(pre)
        name = pm.graph.input[0].name
        exclude = [] if args.exclude_head == "none" else head_tail_nodes(pm, args.exclude_head == "preds")
        exclude += [n.name for n in pm.graph.node[: args.fp32_first] if n.name not in exclude]
        print(f"calibration: {len(frames)} frames (every {step}th), {frames[0].shape[1]}x{frames[0].shape[0]} "
              f"batch 1, zooms {zooms} in turn; excluded nodes ({args.exclude_head}): {len(exclude)} {exclude}")
        del pm

        act = QuantType.QUInt8 if args.activation == "u8" else QuantType.QInt8
        calib = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                 "percentile": CalibrationMethod.Percentile}[args.calib]
        extra = {
            # symmetric activations for S8 (zero point 0), as ORT recommends for S8S8; U8 asymmetric.
            "ActivationSymmetric": args.activation == "s8",
            "WeightSymmetric": True,
        }
        if args.calib == "percentile":
            extra["CalibPercentile"] = args.percentile
        quantize_static(
            pre, args.out, FrameReader(name, frames),
            quant_format=QuantFormat.QDQ,
            per_channel=not args.no_per_channel,
            reduce_range=args.reduce_range,
            activation_type=act,
            weight_type=QuantType.QInt8,
            calibrate_method=calib,
            nodes_to_exclude=exclude,
            extra_options=extra,
        )
        print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes; FP32 {os.path.getsize(args.model)} bytes) "
              f"in {time.time() - t0:.1f}s; settings: QDQ, per_channel={not args.no_per_channel}, "
              f"weights QInt8 symmetric, activations {act.name}{' symmetric' if args.activation == 's8' else ''}, "
              f"calib {args.calib}, zooms {args.zooms}, frames {len(frames)}, reduce_range={args.reduce_range}, exclude_head={args.exclude_head}")
    finally:
        if args.keep_tmp:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    # 5. checks.
    failures = []
    dims = symbolic_dims(args.out)
    print(f"output model input dims: {dims}")
    if any(isinstance(dims[i], int) for i in (0, 2, 3)):
        failures.append("input dims not symbolic")
    q, f = yc.session(args.out, threads=2), yc.session(args.model, threads=2)
    vf = yc.video_frames(args.video, start=7, step=97, count=4)
    # 640x480: the same frames upscaled by nearest neighbour (only the shapes matter here).
    big = [np.repeat(np.repeat(x, 2, 0), 2, 1)[:480, :640] for x in vf]
    for label, fr in (("384x288 b1", vf[:1]), ("384x288 b4", vf), ("640x480 b1", big[:1]), ("640x480 b4", big)):
        x = yc.preprocess(fr)
        try:
            oq = q.run(None, {"images": x})[0]
        except Exception as exc:  # noqa: BLE001
            failures.append(label)
            print(f"  {label}: onnxruntime failed: {exc} FAIL")
            continue
        of = f.run(None, {"images": x})[0]
        rows = sum((x.shape[2] // s) * (x.shape[3] // s) for s in yc.STRIDES)
        ok = oq.shape == (len(fr), rows, 85)
        msg = f"  {label}: output {list(oq.shape)}{'' if ok else f' expected {[len(fr), rows, 85]} FAIL'}"
        if ok:
            sq, sf = oq[..., 4] * oq[..., 5], of[..., 4] * of[..., 5]
            msg += f"; person score max |INT8-FP32| {np.max(np.abs(sq - sf)):.3f}, mean {np.mean(np.abs(sq - sf)):.4f}"
            if len(fr) == 4:
                singles = np.concatenate([q.run(None, {"images": x[i:i + 1]})[0] for i in range(4)])
                d = float(np.max(np.abs(singles - oq)))
                msg += f"; batch 4 vs batch 1 max abs diff {d:.3g}"
                if d > 1e-4:
                    ok = False
                    msg += " FAIL"
        else:
            failures.append(label)
        if not ok and label not in failures:
            failures.append(label)
        print(msg)
    if failures:
        print(f"FAIL: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
