#!/usr/bin/env python3
"""Make persons-dev/labels.json from the YOLO label files and the images' sizes.

Usage: convert_persons_dev.py DIR [--pins persons_dev.sha256] [--compare OTHER.json]

DIR holds images/<name>.jpg and labels/<name>.txt (upstream YOLO labels, one
object a line: class cx cy w h, normalised; class 0 = person). Writes
DIR/labels.json: per image (those in --pins when given) its file, sha256, width,
height and persons: [[x1, y1, x2, y2], ...] in pixels of the image
(x1 = (cx - w/2)*W, ...; rounded to 0.1 px), class 0 only. --compare checks the
result against another such file (same images, sizes and boxes within 0.1 px)
and exits non-zero if they differ.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

# Start-of-frame markers: C0-CF but DHT (C4), JPG (C8) and DAC (CC).
SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_size(path: str) -> tuple[int, int]:
    """(width, height) from a JPEG's start-of-frame segment."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] != b"\xff\xd8":
        raise ValueError(f"{path}: not a JPEG (no SOI marker)")
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ValueError(f"{path}: bad JPEG marker at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # standalone markers
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if marker in SOF:
            height = int.from_bytes(data[i + 5:i + 7], "big")
            width = int.from_bytes(data[i + 7:i + 9], "big")
            return width, height
        i += 2 + length
    raise ValueError(f"{path}: no start-of-frame segment")


def persons(label_path: str, width: int, height: int) -> list[list[float]]:
    boxes = []
    with open(label_path) as f:
        for n, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 5:
                raise ValueError(f"{label_path}:{n}: expected 'class cx cy w h', got {line.strip()!r}")
            if int(fields[0]) != 0:
                continue
            cx, cy, w, h = map(float, fields[1:])
            boxes.append([round(v, 1) for v in ((cx - w / 2) * width, (cy - h / 2) * height,
                                                (cx + w / 2) * width, (cy + h / 2) * height)])
    return boxes


def compare(mine: dict, other: dict) -> list[str]:
    theirs = {e["file"]: e for e in other["images"]}
    problems = []
    if set(theirs) != {e["file"] for e in mine["images"]}:
        problems.append(f"image lists differ: {sorted(set(theirs) ^ {e['file'] for e in mine['images']})}")
    for e in mine["images"]:
        t = theirs.get(e["file"])
        if t is None:
            continue
        for key in ("width", "height") + (("sha256",) if "sha256" in e and "sha256" in t else ()):
            if e[key] != t[key]:
                problems.append(f"{e['file']}: {key} {e[key]} vs {t[key]}")
        a, b = sorted(e["persons"]), sorted(t["persons"])
        if len(a) != len(b) or any(abs(x - y) > 0.1 + 1e-9 for p, q in zip(a, b) for x, y in zip(p, q)):
            problems.append(f"{e['file']}: persons {a} vs {b}")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("--pins", help="sha256sum-style list of images/<file>: the images to list, with their sha256")
    ap.add_argument("--compare", help="another labels.json to check the result against")
    args = ap.parse_args()

    shas = {}
    if args.pins:
        with open(args.pins) as f:
            for line in f:
                if line.strip() and not line.startswith("#"):
                    sha, path = line.split(maxsplit=1)
                    shas[path.strip()] = sha
    if shas:  # the pinned images, not whatever else lies in the folder
        names = sorted(p[len("images/"):] for p in shas if p.startswith("images/"))
    else:
        names = sorted(n for n in os.listdir(os.path.join(args.dir, "images"))
                       if n.lower().endswith((".jpg", ".jpeg")))
    images = []
    for name in names:
        width, height = jpeg_size(os.path.join(args.dir, "images", name))
        label = os.path.join(args.dir, "labels", os.path.splitext(name)[0] + ".txt")
        if not os.path.exists(label):
            sys.exit(f"error: no label file for images/{name}: {label}")
        entry = {"file": name, "width": width, "height": height, "persons": persons(label, width, height)}
        if f"images/{name}" in shas:
            entry["sha256"] = shas[f"images/{name}"]
        images.append(entry)
    if not images:
        sys.exit(f"error: no images in {args.dir}/images")
    out = {
        "about": "made by scripts/model_tools/convert_persons_dev.py from the YOLO label files (class 0) "
                 "and the images' sizes; boxes [x1, y1, x2, y2] in pixels of the original image",
        "images": images,
    }
    dst = os.path.join(args.dir, "labels.json")
    tmp = f"{dst}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    os.replace(tmp, dst)
    people = sum(len(e["persons"]) for e in images)
    empty = sum(not e["persons"] for e in images)
    print(f"  {len(images)} images, {people} persons, {empty} images with nobody")

    if args.compare:
        with open(args.compare) as f:
            problems = compare(out, json.load(f))
        for p in problems[:20]:
            print(f"  differs from {args.compare}: {p}", file=sys.stderr)
        if problems:
            return 1
        print(f"  agrees with {args.compare}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
