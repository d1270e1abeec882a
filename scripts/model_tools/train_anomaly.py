#!/usr/bin/env python3
"""Fit a frame-level scene-anomaly model (PCA reconstruction error) on a camera's normal footage.

Usage: train_anomaly.py MANIFEST.toml VIDEO OUT.onnx [--components 8] [--holdout 0.2]
                        [--seed 20240601] [--report REPORT.json]

The manifest (models/scene_anomaly.toml) is the contract: its [input] (size, RGB, NCHW, stretch, /255)
is what the graph expects, and its [anomaly] threshold is what the validation checks against.

Frames are decoded with GStreamer (gst-launch-1.0 … decodebin ! videoconvert ! BGR ! fdsink) at the
video's own size, exactly as the Rust side decodes them, then resized here the way the Rust preprocessor
does (OpenCV INTER_LINEAR, pixel-centre aligned, two taps, rounded to bytes) and normalised to RGB / 255
NCHW. So the model is fitted on the very tensors the service will feed it.

The ONNX graph (opset 17, standard ops only, dynamic batch):

    images [B,3,H,W] -> Mul(grey weights) -> ReduceSum(channels) -> Reshape [B, H*W]
      -> Sub(mean) = c -> Gemm(c, P^T) = coefficients [B,k] -> MatMul(P) = reconstruction
      -> Sub(c, reconstruction) = r -> r * r * s -> Reshape -> anomaly_map [B,1,H,W]
      -> ReduceMean -> pred_score [B]

P holds the top-k principal components of the grey training frames; s puts the 99.5th percentile of the
training frames' mean squared residual at 0.5, so pred_score is the mean of anomaly_map.

Validation (all through onnxruntime on the written file): the first (1 - holdout) of the video trains,
the rest is held out. Reported: score distributions of training frames, held-out frames and synthetic
abnormal frames made from held-out frames: black (camsim's black fault), covered (camsim's cover fault:
flat grey Y=70 over x 5..95 %, y 10..95 % of the picture), uniform noise, inverted, a dark or light board
over a quarter of the view, and, for information, the view shifted by 10 % and mid-tone boards. Exits
non-zero (after writing nothing) when a held-out normal frame reaches the threshold or an asserted
abnormal frame scores 1.0 or less, or when a batch of 4 differs from 4 singles.

Deterministic: no randomness in the fit; the synthetic noise uses --seed. PCA signs are fixed (largest
entry positive) so that LAPACK's arbitrary signs do not change the file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
import tomllib

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

# BT.601 luma, as OpenCV's RGB2GRAY.
GREY_WEIGHTS = (0.299, 0.587, 0.114)
OPSET = 17
IR_VERSION = 8  # the lowest that opset 17 allows; any onnxruntime from 1.13 on loads it
CALIBRATION_PERCENTILE = 99.5
CALIBRATED_SCORE = 0.5
ABNORMAL_MIN = 1.0
# Luma 70 (camsim's cover board, I420 limited range) after videoconvert to RGB: 1.164 × (70 − 16).
COVER_GREY = 63


def die(msg: str) -> None:
    sys.exit(f"train_anomaly: error: {msg}")


# ---------------------------------------------------------------------------------------------------------
# Manifest
# ---------------------------------------------------------------------------------------------------------


def read_manifest(path: str) -> dict:
    with open(path, "rb") as f:
        m = tomllib.load(f)
    inp = m.get("input", {})
    an = m.get("anomaly", {})
    if m.get("kind") != "anomaly":
        die(f"{path}: kind must be \"anomaly\"")
    # Only the preprocessing this script implements; anything else would silently mismatch.
    want = {
        "layout": "nchw",
        "colour": "rgb",
        "resize": "stretch",
        "mean": [0.0, 0.0, 0.0],
        "std": [1.0, 1.0, 1.0],
    }
    for key, value in want.items():
        got = inp.get(key, value)
        if (got.lower() if isinstance(got, str) else got) != value:
            die(f"{path}: input.{key} = {got!r}; this script makes models for {value!r}")
    if abs(inp.get("scale", 1 / 255) - 1 / 255) > 1e-9:
        die(f"{path}: input.scale must be 1/255")
    size = inp.get("size")
    if not (isinstance(size, list) and len(size) == 2 and all(16 <= v <= 1024 for v in size)):
        die(f"{path}: input.size must be [width, height]")
    return {
        "input": inp.get("name", "images"),
        "width": int(size[0]),
        "height": int(size[1]),
        "score": an.get("score_output", "pred_score"),
        "map": an.get("map_output") or "anomaly_map",
        "threshold": float(an.get("threshold", 0.5)),
        "max_batch": int(m.get("max_batch", 8)),
    }


# ---------------------------------------------------------------------------------------------------------
# Frames
# ---------------------------------------------------------------------------------------------------------


def probe_size(video: str) -> tuple[int, int]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
         "-of", "csv=p=0", video],
        capture_output=True, text=True, check=False,
    )
    try:
        w, h = (int(v) for v in out.stdout.strip().split(",")[:2])
    except ValueError:
        die(f"ffprobe could not read the size of {video}: {out.stderr.strip() or out.stdout.strip()}")
    return w, h


def decode_bgr(video: str, width: int, height: int):
    """Yields every frame as a [height, width, 3] uint8 BGR array (GStreamer, as the Rust side decodes)."""
    stride = (width * 3 + 3) & ~3  # GStreamer rows of packed RGB formats are 4-byte aligned
    frame_bytes = stride * height
    cmd = ["gst-launch-1.0", "-q", "filesrc", f'location="{video}"', "!", "decodebin", "!",
           "videoconvert", "!", "video/x-raw,format=BGR", "!", "fdsink", "fd=1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        while True:
            buf = proc.stdout.read(frame_bytes)
            if not buf:
                break
            if len(buf) != frame_bytes:
                die(f"decoding {video}: a partial frame ({len(buf)} of {frame_bytes} bytes)")
            rows = np.frombuffer(buf, np.uint8).reshape(height, stride)
            yield rows[:, : width * 3].reshape(height, width, 3)
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace")
        if proc.wait() != 0:
            die(f"gst-launch-1.0 failed decoding {video}:\n{err}")


def _taps(src: int, dst: int):
    """OpenCV INTER_LINEAR source indices and weights along one axis (pixel centres aligned)."""
    f = (np.arange(dst) + 0.5) * (src / dst) - 0.5
    i0 = np.floor(f).astype(np.int64)
    a = f - i0
    low = i0 < 0
    a[low], i0[low] = 0.0, 0
    high = i0 >= src - 1
    a[high], i0[high] = 0.0, src - 1
    i1 = np.minimum(i0 + 1, src - 1)
    return i0, i1, a.astype(np.float32)


class Resizer:
    """cv::resize(INTER_LINEAR) to a fixed size in numpy. OpenCV computes in 11-bit fixed point; this
    computes in float and rounds half up, which is the same for integer down-scales (the weights are
    then exact halves) and within one grey level otherwise."""

    def __init__(self, src_w: int, src_h: int, dst_w: int, dst_h: int):
        self.x = _taps(src_w, dst_w)
        self.y = _taps(src_h, dst_h)

    def __call__(self, img: np.ndarray) -> np.ndarray:
        x0, x1, ax = self.x
        y0, y1, ay = self.y
        f = img.astype(np.float32)
        rows = f[y0] * (1 - ay)[:, None, None] + f[y1] * ay[:, None, None]
        out = rows[:, x0] * (1 - ax)[None, :, None] + rows[:, x1] * ax[None, :, None]
        return np.floor(out + 0.5).clip(0, 255).astype(np.uint8)


def to_input(small_bgr: np.ndarray) -> np.ndarray:
    """[N, H, W, 3] BGR bytes -> [N, 3, H, W] float32 RGB / 255, as the Rust preprocessor writes it."""
    rgb = small_bgr[..., ::-1]
    return np.ascontiguousarray(rgb.transpose(0, 3, 1, 2)).astype(np.float32) * np.float32(1 / 255)


# ---------------------------------------------------------------------------------------------------------
# Synthetic abnormal frames (made from held-out frames at the video's own size, then resized)
# ---------------------------------------------------------------------------------------------------------


def covered(f: np.ndarray) -> np.ndarray:
    """camsim's cover fault: a flat grey board over x 5..95 %, y 10..95 % of the picture."""
    h, w = f.shape[:2]
    out = f.copy()
    out[h // 10 : h - h // 20, w // 20 : w - w // 20] = COVER_GREY
    return out


def board(f: np.ndarray, fy: float, fx: float, frac: float, bgr) -> np.ndarray:
    h, w = f.shape[:2]
    out = f.copy()
    y0, x0 = int(h * fy), int(w * fx)
    out[y0 : y0 + int(h * frac), x0 : x0 + int(w * frac)] = bgr
    return out


BOARD_PLACES = [(0.05, 0.05), (0.05, 0.45), (0.45, 0.05), (0.45, 0.45), (0.25, 0.25)]


def synthetic(held: list[np.ndarray], seed: int):
    """(name, asserted, frames): asserted sets must all score > ABNORMAL_MIN."""
    rng = np.random.default_rng(seed)
    h, w = held[0].shape[:2]
    sets = [
        ("black", True, [np.zeros_like(held[0])]),
        ("covered", True, [covered(f) for f in held]),
        ("noise", True, [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for _ in held]),
        ("inverted", True, [255 - f for f in held]),
        # A dark (parked vehicle, tarpaulin) or light (board, sheet) object over a quarter of the view.
        ("object", True, [board(f, fy, fx, 0.5, c) for i, f in enumerate(held)
                          for (fy, fx), c in [(BOARD_PLACES[i % 5], (40, 40, 40)),
                                              (BOARD_PLACES[(i + 2) % 5], (220, 220, 220))]]),
        # For information: what a grey-level model cannot always tell.
        ("shifted_10pct", False, [np.roll(f, w // 10, axis=1) for f in held]),
        ("object_midtone", False, [board(f, *BOARD_PLACES[i % 5], 0.5, c) for i, f in enumerate(held)
                                   for c in [(30, 30, 200), (40, 140, 40)]]),
        ("object_16pct", False, [board(f, *BOARD_PLACES[i % 5], 0.4, (40, 40, 40)) for i, f in enumerate(held)]),
    ]
    return sets


# ---------------------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------------------


def grey(x: np.ndarray) -> np.ndarray:
    """[N,3,H,W] -> [N, H*W] float64, the graph's grey conversion."""
    g = sum(np.float64(wt) * x[:, c].astype(np.float64) for c, wt in enumerate(GREY_WEIGHTS))
    return g.reshape(len(x), -1)


def fit_pca(train: np.ndarray, k: int):
    """Top-k principal components of the rows of `train` ([N, D], N < D), from the eigenvectors of the
    N×N Gram matrix (a full SVD of N×D takes seconds, this a fraction of one)."""
    mean = train.mean(axis=0)
    a = train - mean
    evals, evecs = np.linalg.eigh(a @ a.T)  # ascending
    order = np.argsort(evals)[::-1][:k]
    comps = (a.T @ evecs[:, order]).T / np.sqrt(evals[order])[:, None]
    # Eigenvector signs are arbitrary: make each component's largest entry positive.
    for row in comps:
        if row[np.argmax(np.abs(row))] < 0:
            row *= -1
    explained = float(evals[order].sum() / np.clip(evals, 0, None).sum())
    return mean, comps, explained


def mean_sq_residual(g: np.ndarray, mean: np.ndarray, comps: np.ndarray) -> np.ndarray:
    c = g - mean
    r = c - (c @ comps.T) @ comps
    return (r * r).mean(axis=1)


def build_model(spec: dict, mean, comps, scale: float, meta: dict) -> onnx.ModelProto:
    w, h = spec["width"], spec["height"]
    k = comps.shape[0]
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    inits = [
        numpy_helper.from_array(f32(GREY_WEIGHTS).reshape(1, 3, 1, 1), "grey_weights"),
        numpy_helper.from_array(np.array([1], np.int64), "channel_axis"),
        numpy_helper.from_array(np.array([0, -1], np.int64), "flat_shape"),
        numpy_helper.from_array(f32(mean), "mean_image"),
        numpy_helper.from_array(f32(comps), "components"),
        numpy_helper.from_array(f32(scale), "score_scale"),
        numpy_helper.from_array(np.array([0, 1, h, w], np.int64), "map_shape"),
    ]
    nodes = [
        helper.make_node("Mul", [spec["input"], "grey_weights"], ["weighted"]),
        helper.make_node("ReduceSum", ["weighted", "channel_axis"], ["grey"], keepdims=1),
        helper.make_node("Reshape", ["grey", "flat_shape"], ["flat"]),
        helper.make_node("Sub", ["flat", "mean_image"], ["centred"]),
        helper.make_node("Gemm", ["centred", "components"], ["coefficients"], transB=1),
        helper.make_node("MatMul", ["coefficients", "components"], ["reconstruction"]),
        helper.make_node("Sub", ["centred", "reconstruction"], ["residual"]),
        helper.make_node("Mul", ["residual", "residual"], ["squared"]),
        helper.make_node("Mul", ["squared", "score_scale"], ["scaled"]),
        helper.make_node("Reshape", ["scaled", "map_shape"], [spec["map"]]),
        helper.make_node("ReduceMean", [spec["map"]], [spec["score"]], axes=[1, 2, 3], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "scene_anomaly_pca",
        [helper.make_tensor_value_info(spec["input"], TensorProto.FLOAT, ["batch", 3, h, w])],
        [
            helper.make_tensor_value_info(spec["score"], TensorProto.FLOAT, ["batch"]),
            helper.make_tensor_value_info(spec["map"], TensorProto.FLOAT, ["batch", 1, h, w]),
        ],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="qianliyan scripts/model_tools/train_anomaly.py",
        doc_string=(
            f"Scene anomaly: grey {w}x{h} frames, residual after projecting onto {k} principal components "
            f"of the camera's normal footage; anomaly_map = residual^2 * s, pred_score = mean(anomaly_map), "
            f"s puts the training frames' {CALIBRATION_PERCENTILE}th percentile at {CALIBRATED_SCORE}."
        ),
    )
    model.ir_version = IR_VERSION
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=str(value))
    onnx.checker.check_model(model, full_check=True)
    return model


def session(model_bytes: bytes) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.log_severity_level = 3
    return ort.InferenceSession(model_bytes, sess_options=opts, providers=["CPUExecutionProvider"])


def scores(sess, spec, x: np.ndarray, batch: int = 64) -> np.ndarray:
    out = [sess.run([spec["score"]], {spec["input"]: x[i : i + batch]})[0] for i in range(0, len(x), batch)]
    return np.concatenate(out).astype(np.float64)


def dist(s: np.ndarray) -> dict:
    return {
        "n": int(len(s)),
        "min": round(float(s.min()), 3),
        "p50": round(float(np.median(s)), 3),
        "p99": round(float(np.percentile(s, 99)), 3),
        "max": round(float(s.max()), 3),
    }


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("manifest")
    ap.add_argument("video")
    ap.add_argument("out")
    ap.add_argument("--components", type=int, default=8)
    ap.add_argument("--holdout", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--report", help="also write the validation as JSON here")
    args = ap.parse_args()
    started = time.perf_counter()

    spec = read_manifest(args.manifest)
    w, h = spec["width"], spec["height"]
    src_w, src_h = probe_size(args.video)
    resize = Resizer(src_w, src_h, w, h)

    # Decode once; keep the model-size frames, and every 8th frame at full size: the held-out ones
    # among them become the synthetic anomalies (the split is known only once the frames are counted).
    small, full = [], []
    for i, frame in enumerate(decode_bgr(args.video, src_w, src_h)):
        small.append(resize(frame))
        if i % 8 == 0:
            full.append((i, frame.copy()))
    n = len(small)
    n_train = int(round(n * (1 - args.holdout)))
    if n_train < 4 * args.components or n - n_train < 10:
        die(f"{args.video}: {n} frames are too few for {args.components} components and a holdout")
    held_full = [f for i, f in full if i >= n_train]
    decoded_s = time.perf_counter() - started

    x = to_input(np.stack(small))
    g = grey(x)
    mean, comps, explained = fit_pca(g[:n_train], args.components)
    raw = mean_sq_residual(g[:n_train], mean, comps)
    p_raw = float(np.percentile(raw, CALIBRATION_PERCENTILE))
    scale = CALIBRATED_SCORE / p_raw

    meta = {
        "qianliyan.kind": "scene_anomaly_pca",
        "qianliyan.video": os.path.basename(args.video),
        "qianliyan.video_sha256": sha256_file(args.video),
        "qianliyan.frames": f"{n} ({n_train} fitted, {n - n_train} held out)",
        "qianliyan.components": args.components,
        "qianliyan.explained_variance": f"{explained:.4f}",
        "qianliyan.calibration": f"p{CALIBRATION_PERCENTILE} of training mean squared residual "
                                 f"{p_raw:.6g} -> {CALIBRATED_SCORE}",
        "qianliyan.resize": "OpenCV INTER_LINEAR (stretch) from the decoded frame; RGB / 255; NCHW",
    }
    model = build_model(spec, mean, comps, scale, meta)
    data = model.SerializeToString()
    sess = session(data)
    fitted_s = time.perf_counter() - started

    # Validation, through onnxruntime on the very bytes that get written.
    s_train = scores(sess, spec, x[:n_train])
    s_held = scores(sess, spec, x[n_train:])
    report = {
        "model": {
            "input": f"{spec['input']} [batch, 3, {h}, {w}]",
            "components": args.components,
            "explained_variance": round(explained, 4),
            "bytes": len(data),
            "score_scale": scale,
        },
        "threshold": spec["threshold"],
        "frames": {"total": n, "train": n_train, "held_out": n - n_train},
        "normal": {"train": dist(s_train), "held_out": dist(s_held)},
        "abnormal": {},
    }
    failures = []
    p_check = float(np.percentile(s_train, CALIBRATION_PERCENTILE))
    if abs(p_check - CALIBRATED_SCORE) > 0.01:
        failures.append(f"training p{CALIBRATION_PERCENTILE} is {p_check:.4f} through onnxruntime, "
                        f"expected {CALIBRATED_SCORE} (the graph and the fit disagree)")
    if s_held.max() >= spec["threshold"]:
        failures.append(f"a held-out normal frame scores {s_held.max():.3f} >= threshold {spec['threshold']}")
    for name, asserted, frames in synthetic(held_full, args.seed):
        s = scores(sess, spec, to_input(np.stack([resize(f) for f in frames])))
        report["abnormal"][name] = dict(dist(s), asserted=asserted)
        if asserted and s.min() <= ABNORMAL_MIN:
            failures.append(f"{name}: a frame scores {s.min():.3f} <= {ABNORMAL_MIN}")

    # A batch of 4 must give what 4 single runs give (the batch dimension really is dynamic).
    four = x[n_train : n_train + 4]
    batched = sess.run(None, {spec["input"]: four})
    singles = [sess.run(None, {spec["input"]: four[i : i + 1]}) for i in range(4)]
    diff = max(float(np.abs(batched[o][i] - singles[i][o][0]).max()) for i in range(4) for o in range(2))
    report["batch4_vs_single_max_abs_diff"] = diff
    if diff > 1e-5:
        failures.append(f"a batch of 4 differs from 4 singles by {diff:g}")
    report["seconds"] = {"decode": round(decoded_s, 2), "fit": round(fitted_s - decoded_s, 2),
                         "total": round(time.perf_counter() - started, 2)}

    # Human-readable summary.
    print(f"  {n} frames of {os.path.basename(args.video)} ({src_w}x{src_h}) -> {w}x{h} grey; "
          f"fitted on {n_train}, held out {n - n_train}; {args.components} components "
          f"explain {explained:.1%} of the variance")
    print(f"  {'scores':<22} {'n':>4} {'min':>7} {'p50':>7} {'p99':>7} {'max':>7}")
    rows = [("train", report["normal"]["train"]), ("held-out", report["normal"]["held_out"])]
    rows += [(k + ("" if v["asserted"] else " (info)"), v) for k, v in report["abnormal"].items()]
    for label, d in rows:
        print(f"  {label:<22} {d['n']:>4} {d['min']:>7.2f} {d['p50']:>7.2f} {d['p99']:>7.2f} {d['max']:>7.2f}")
    print(f"  threshold {spec['threshold']}; batch 4 vs singles max abs diff {diff:.1e}; "
          f"{len(data) / 1e3:.0f} kB; {report['seconds']['total']:.1f} s")

    ab = report["abnormal"]
    print(f"  result: held-out normal max {s_held.max():.2f} (threshold {spec['threshold']}); abnormal min "
          + ", ".join(f"{k} {v['min']:.2f}" for k, v in ab.items() if v["asserted"]))

    if failures:
        for f in failures:
            print(f"train_anomaly: validation failed: {f}", file=sys.stderr)
        return 1
    tmp = f"{args.out}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, args.out)
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
