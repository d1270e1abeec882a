#!/usr/bin/env python3
"""Make the batch dimension of a fixed-batch (batch 1) ONNX model dynamic.

Usage: make_batch_dynamic.py IN.onnx OUT.onnx [--dim-name batch]

Why more than renaming dim 0: exporters such as Ultralytics' bake the batch size
into the shape constants of `Reshape` nodes (e.g. [1,4,16,8400], [1,66,-1]).
With only the graph inputs/outputs renamed, a batch of 4 fails (or, worse, is
silently mixed) inside those reshapes. So, for every Reshape whose target shape
is a constant (an initializer or a Constant node):
  * a leading 1 becomes -1 ("infer this dimension"), or
  * 0 ("copy the input's dimension 0") when the shape already has a -1, since
    Reshape allows only one -1.
Intermediate shapes recorded in graph.value_info still say batch 1, so they are
dropped (onnxruntime infers them itself).

The result is validated with onnx.checker (full check, including strict shape
inference). Whether it computes the same thing is checked separately by
check_batch.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict

import numpy as np
import onnx
from onnx import helper, numpy_helper

# Ops whose constant "shape" input might also carry a baked batch size. This
# script rewrites only Reshape (the ones seen in YOLOv8 exports); the others are
# reported so a human can look if a different model ever needs it.
SUSPECT_SHAPE_OPS = {"Expand": 1, "Tile": 1, "ConstantOfShape": 0}


def save_atomic(model: onnx.ModelProto, dst: str) -> None:
    """Writes `model` to `dst` through a temporary file: never a half-written model."""
    tmp = f"{dst}.tmp-{os.getpid()}"
    try:
        onnx.save(model, tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"  wrote {dst}")


def constant_sources(graph: onnx.GraphProto):
    """Map tensor name -> ("init", TensorProto) or ("const", NodeProto)."""
    sources = {init.name: ("init", init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            sources[node.output[0]] = ("const", node)
    return sources


def read_constant(kind: str, obj) -> np.ndarray | None:
    if kind == "init":
        return numpy_helper.to_array(obj)
    for attr in obj.attribute:  # Constant node
        if attr.name == "value":
            return numpy_helper.to_array(attr.t)
        if attr.name == "value_ints":
            return np.array(list(attr.ints), dtype=np.int64)
    return None


def write_constant(kind: str, obj, name: str, value: np.ndarray) -> None:
    tensor = numpy_helper.from_array(value.astype(np.int64), name=name)
    if kind == "init":
        obj.CopyFrom(tensor)
        return
    del obj.attribute[:]  # Constant node: replace whatever form it had with `value`
    obj.attribute.append(helper.make_attribute("value", tensor))


def dynamic_shape(shape: np.ndarray) -> np.ndarray:
    new = shape.astype(np.int64).copy()
    new[0] = 0 if (-1 in shape.tolist()) else -1
    return new


def set_dim0_symbolic(values, dim_name: str, what: str) -> int:
    changed = 0
    for vi in values:
        dims = vi.type.tensor_type.shape.dim
        if not dims:
            continue
        d0 = dims[0]
        if d0.HasField("dim_value") and d0.dim_value != 1:
            sys.exit(f"error: {what} {vi.name!r} has dim 0 = {d0.dim_value}, expected a batch of 1")
        if d0.HasField("dim_param") and d0.dim_param:
            continue  # already symbolic
        d0.Clear()
        d0.dim_param = dim_name
        changed += 1
        print(f"  {what} {vi.name}: dim 0 -> '{dim_name}'")
    return changed


def convert(model: onnx.ModelProto, dim_name: str) -> None:
    graph = model.graph
    if any(node.op_type in ("Loop", "If", "Scan") for node in graph.node):
        sys.exit("error: models with subgraphs (Loop/If/Scan) are not supported")

    init_names = {init.name for init in graph.initializer}
    real_inputs = [vi for vi in graph.input if vi.name not in init_names]
    set_dim0_symbolic(real_inputs, dim_name, "input")
    set_dim0_symbolic(graph.output, dim_name, "output")

    sources = constant_sources(graph)
    consumers = defaultdict(list)  # tensor name -> [(node, input index)]
    for node in graph.node:
        for i, name in enumerate(node.input):
            consumers[name].append((node, i))
    graph_outputs = {o.name for o in graph.output}

    rewritten: dict[str, str] = {}  # old shape tensor name -> name now used by the Reshapes
    for node in graph.node:
        if node.op_type == "Reshape":
            if any(a.name == "allowzero" and a.i == 1 for a in node.attribute):
                sys.exit(f"error: Reshape {node.name!r} has allowzero=1; 0 would not mean 'copy'")
            name = node.input[1]
            if name in rewritten:
                node.input[1] = rewritten[name]
                print(f"  Reshape {node.name}: shares the shape constant above")
                continue
            if name not in sources:
                print(f"  Reshape {node.name}: shape is computed at run time, left as is")
                continue
            kind, obj = sources[name]
            shape = read_constant(kind, obj)
            if shape is None or shape.ndim != 1 or shape.size == 0 or shape[0] != 1:
                print(f"  Reshape {node.name}: shape {None if shape is None else shape.tolist()} "
                      "does not start with the batch 1, left as is")
                continue
            new = dynamic_shape(shape)
            only_reshapes = name not in graph_outputs and all(
                n.op_type == "Reshape" and i == 1 for n, i in consumers[name])
            if only_reshapes:
                write_constant(kind, obj, name, new)
                new_name = name
            else:
                # Shared with another op: leave it alone and give the Reshapes their own copy.
                new_name = f"{name}__dynamic_batch"
                graph.initializer.append(numpy_helper.from_array(new, name=new_name))
                node.input[1] = new_name
            rewritten[name] = new_name
            print(f"  Reshape {node.name}: shape {shape.tolist()} -> {new.tolist()}")
        elif node.op_type in SUSPECT_SHAPE_OPS:
            idx = SUSPECT_SHAPE_OPS[node.op_type]
            if idx < len(node.input) and node.input[idx] in sources:
                value = read_constant(*sources[node.input[idx]])
                if value is not None and value.ndim == 1 and value.size and value[0] == 1:
                    print(f"  note: {node.op_type} {node.name} has constant shape {value.tolist()} "
                          "starting with 1; not changed (check the batch output)")

    if not rewritten:
        print("  note: no Reshape shape constants needed changing")
    # Intermediate shapes were recorded for batch 1; let the runtime infer them.
    dropped = len(graph.value_info)
    del graph.value_info[:]
    print(f"  dropped {dropped} recorded intermediate shapes (value_info)")

    meta = {p.key: p for p in model.metadata_props}
    entry = meta.get("qianliyan_batch") or model.metadata_props.add()
    entry.key = "qianliyan_batch"
    entry.value = f"dynamic dim '{dim_name}' (scripts/model_tools/make_batch_dynamic.py)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--dim-name", default="batch")
    args = ap.parse_args()

    model = onnx.load(args.src)
    convert(model, args.dim_name)
    onnx.checker.check_model(model, full_check=True)

    save_atomic(model, args.dst)


if __name__ == "__main__":
    main()
