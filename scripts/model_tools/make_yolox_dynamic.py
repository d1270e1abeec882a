#!/usr/bin/env python3
"""Make a YOLOX ONNX export run at any input size and batch.

Usage: make_yolox_dynamic.py IN.onnx OUT.onnx

The export (e.g. yolox_nano_416x416.onnx) fixes its input at [1,3,416,416] and
its output at [1,3549,85]. Its graph has no shape constant tied to 416 (the
Focus slices and the 2x Resizes work on any size that is a multiple of 32), so:
  * the batch is made dynamic as for the first model (make_batch_dynamic.py:
    input/output dim 0 symbolic, the Reshape constants [1,85,-1] -> [0,85,-1]);
  * the input's H and W become the symbolic dims 'height' and 'width', and the
    output's row count (H/8*W/8 + H/16*W/16 + H/32*W/32) the symbolic 'rows'.
Whether the result computes the same thing is checked by check_yolox.py.
"""

from __future__ import annotations

import argparse
import sys

import onnx

from make_batch_dynamic import convert as make_batch_dynamic, save_atomic


def set_dims(vi: onnx.ValueInfoProto, names: dict[int, str]) -> None:
    dims = vi.type.tensor_type.shape.dim
    for index, name in names.items():
        d = dims[index]
        was = d.dim_param if d.HasField("dim_param") else d.dim_value
        d.Clear()
        d.dim_param = name
        print(f"  {vi.name}: dim {index} {was} -> '{name}'")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    args = ap.parse_args()

    model = onnx.load(args.src)
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    inputs = [vi for vi in graph.input if vi.name not in inits]
    if len(inputs) != 1 or len(graph.output) != 1:
        sys.exit(f"error: {args.src}: expected one input and one output (a YOLOX export)")
    shape_in = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    shape_out = [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim]
    if len(shape_in) != 4 or shape_in[:2] != [1, 3] or len(shape_out) != 3 or shape_out[0] != 1:
        sys.exit(f"error: {args.src}: input {shape_in}, output {shape_out}; "
                 "expected [1,3,H,W] -> [1,rows,5+classes]")
    h, w = shape_in[2:]
    rows = sum((h // s) * (w // s) for s in (8, 16, 32))
    if h % 32 or w % 32 or shape_out[1] != rows:
        sys.exit(f"error: {args.src}: {h}x{w} input gives {shape_out[1]} rows, expected {rows} "
                 "(strides 8, 16, 32): not the YOLOX layout this tool knows")

    make_batch_dynamic(model, "batch")
    set_dims(inputs[0], {2: "height", 3: "width"})
    set_dims(graph.output[0], {1: "rows"})
    entry = model.metadata_props.add()
    entry.key = "qianliyan_size"
    entry.value = "symbolic height, width (multiples of 32) and rows (scripts/model_tools/make_yolox_dynamic.py)"
    onnx.checker.check_model(model, full_check=True)

    save_atomic(model, args.dst)


if __name__ == "__main__":
    main()
