"""Shared helpers for the YOLOX-nano INT8 scripts: frames, preprocessing, decoding, NMS, matching.

Pure numpy + ffmpeg (no OpenCV/PIL).  Conventions follow the service (issue 20):
  * input `images` f32 [B,3,H,W], BGR, raw 0..255, no scaling;
  * frames run at their own size rounded up to multiples of 32, letterboxed top-left with pad 114;
  * output [B,N,85]: per row at grid cell (gx,gy) of stride s: cx=(p0+gx)*s, cy=(p1+gy)*s,
    w=exp(p2)*s, h=exp(p3)*s; score = p4*p5 (person = class 0); threshold 0.4; NMS IoU 0.45.
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.environ.get(
    "QIANLIYAN_REPO", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
)
FP32_MODEL = os.path.join(REPO, "assets/models/yolox_nano.onnx")
VIDEO = os.path.join(REPO, "assets/video/vtest_sub.mp4")
PERSONS_DEV = os.path.join(REPO, "assets/persons-dev")

SCORE_THR = 0.4
NMS_IOU = 0.45
STRIDES = (8, 16, 32)


# ---------------------------------------------------------------- frames
def video_frames(path: str = VIDEO, w: int = 384, h: int = 288, start: int = 0, count: int | None = None,
                 step: int = 1) -> list[np.ndarray]:
    """Decode frames [start, start+step, ...] as HxWx3 uint8 BGR (the video is 384x288)."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-f", "rawvideo", "-pix_fmt", "bgr24", "-"],
                         check=True, stdout=subprocess.PIPE).stdout
    n = len(raw) // (w * h * 3)
    allf = np.frombuffer(raw[: n * w * h * 3], np.uint8).reshape(n, h, w, 3)
    idx = list(range(start, n, step))
    if count is not None:
        idx = idx[:count]
    return [allf[i].copy() for i in idx]


def resize_bilinear(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """HxWx3 uint8 -> h x w x 3 uint8, bilinear (pixel centres aligned, like cv2.INTER_LINEAR)."""
    H, W = img.shape[:2]
    ys = np.clip((np.arange(h) + 0.5) * H / h - 0.5, 0, H - 1)
    xs = np.clip((np.arange(w) + 0.5) * W / w - 0.5, 0, W - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, H - 1), np.minimum(x0 + 1, W - 1)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    f = img.astype(np.float32)
    top = f[y0][:, x0] * (1 - fx) + f[y0][:, x1] * fx
    bot = f[y1][:, x0] * (1 - fx) + f[y1][:, x1] * fx
    return np.clip(top * (1 - fy) + bot * fy + 0.5, 0, 255).astype(np.uint8)


def zoomed(frame: np.ndarray, zoom: float, rng: np.random.Generator) -> np.ndarray:
    """A random crop of 1/zoom of the frame, scaled back up to the frame's size (people appear zoom x larger)."""
    if zoom <= 1:
        return frame
    H, W = frame.shape[:2]
    ch, cw = int(round(H / zoom)), int(round(W / zoom))
    y, x = int(rng.integers(0, H - ch + 1)), int(rng.integers(0, W - cw + 1))
    return resize_bilinear(frame[y:y + ch, x:x + cw], W, H)


def image_size(path: str) -> tuple[int, int]:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "stream=width,height", "-of", "csv=p=0", path],
                         check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
    w, h = out.split(",")[:2]
    return int(w), int(h)


def shrink_into(path: str, fw: int = 384, fh: int = 288) -> tuple[np.ndarray, float, int, int]:
    """Shrink a photo into an fw x fh frame (centred, black bars, area filter), like a camera sub-stream.

    Returns (frame HxWx3 uint8 BGR, scale, pad_x, pad_y): original = (frame - pad) / scale.
    The scaled size is computed here (not left to force_original_aspect_ratio) so the mapping back is exact.
    """
    w, h = image_size(path)
    s = min(fw / w, fh / h)
    sw, sh = max(1, round(w * s)), max(1, round(h * s))
    px, py = (fw - sw) // 2, (fh - sh) // 2
    vf = f"scale={sw}:{sh}:flags=area,pad={fw}:{fh}:{px}:{py}:black"
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-vf", vf, "-frames:v", "1",
                          "-f", "rawvideo", "-pix_fmt", "bgr24", "-"], check=True, stdout=subprocess.PIPE).stdout
    frame = np.frombuffer(raw, np.uint8).reshape(fh, fw, 3)
    return frame, sw / w, px, py


def load_labels(root: str = PERSONS_DEV) -> list[dict]:
    with open(os.path.join(root, "labels.json")) as f:
        return json.load(f)["images"]


# ---------------------------------------------------------------- model I/O
def preprocess(frames: list[np.ndarray]) -> np.ndarray:
    """Batch of same-size HxWx3 BGR frames -> [B,3,H32,W32] f32, top-left letterbox, pad 114."""
    h, w = frames[0].shape[:2]
    H, W = -(-h // 32) * 32, -(-w // 32) * 32
    out = np.full((len(frames), 3, H, W), 114.0, np.float32)
    for i, f in enumerate(frames):
        out[i, :, :h, :w] = f.transpose(2, 0, 1)
    return out


_GRID_CACHE: dict = {}


def _grids(H: int, W: int):
    key = (H, W)
    if key not in _GRID_CACHE:
        gs, ss = [], []
        for s in STRIDES:
            gy, gx = np.mgrid[0: H // s, 0: W // s]
            gs.append(np.stack([gx.ravel(), gy.ravel()], 1))
            ss.append(np.full(gx.size, s))
        _GRID_CACHE[key] = (np.concatenate(gs).astype(np.float32), np.concatenate(ss).astype(np.float32))
    return _GRID_CACHE[key]


def nms(boxes: np.ndarray, scores: np.ndarray, iou_thr: float = NMS_IOU) -> list[int]:
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        if order.size == 1:
            break
        ious = iou_one(boxes[i], boxes[order[1:]])
        order = order[1:][ious <= iou_thr]
    return keep


def decode(out: np.ndarray, H: int, W: int, thr: float = SCORE_THR) -> tuple[np.ndarray, np.ndarray]:
    """One image's [N,85] output -> (boxes [K,4] x1y1x2y2 in input pixels, scores [K]) for class 0 (person)."""
    grid, stride = _grids(H, W)
    assert out.shape[0] == grid.shape[0], (out.shape, grid.shape)
    score = out[:, 4] * out[:, 5]
    m = score >= thr
    if not m.any():
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
    p, g, s = out[m].astype(np.float64), grid[m], stride[m]
    cx, cy = (p[:, 0] + g[:, 0]) * s, (p[:, 1] + g[:, 1]) * s
    bw, bh = np.exp(p[:, 2]) * s, np.exp(p[:, 3]) * s
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
    sc = score[m].astype(np.float64)
    keep = nms(boxes, sc)
    return boxes[keep], sc[keep]


def session(path: str, threads: int = 1) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])


def detect(sess: ort.InferenceSession, frames: list[np.ndarray], thr: float = SCORE_THR):
    x = preprocess(frames)
    out = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    return [decode(out[i], x.shape[2], x.shape[3], thr) for i in range(len(frames))]


# ---------------------------------------------------------------- matching
def iou_one(b: np.ndarray, bs: np.ndarray) -> np.ndarray:
    x1 = np.maximum(b[0], bs[:, 0]); y1 = np.maximum(b[1], bs[:, 1])
    x2 = np.minimum(b[2], bs[:, 2]); y2 = np.minimum(b[3], bs[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    a = (b[2] - b[0]) * (b[3] - b[1])
    a2 = (bs[:, 2] - bs[:, 0]) * (bs[:, 3] - bs[:, 1])
    return inter / np.maximum(a + a2 - inter, 1e-9)


def greedy_match(det: np.ndarray, scores: np.ndarray, gt: np.ndarray, iou_thr: float = 0.5):
    """Greedy by score: each detection (highest score first) takes the free GT of highest IoU >= iou_thr.

    Returns a list of (det_index, gt_index, iou)."""
    pairs = []
    if len(det) == 0 or len(gt) == 0:
        return pairs
    free = np.ones(len(gt), bool)
    for d in np.argsort(-scores, kind="stable"):
        ious = iou_one(det[d], gt)
        ious[~free] = -1
        g = int(np.argmax(ious))
        if ious[g] >= iou_thr:
            free[g] = False
            pairs.append((int(d), g, float(ious[g])))
    return pairs
