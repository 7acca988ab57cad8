"""The three layouts ``detector synth`` writes the same images and boxes in (``--format``).

::

    voc:  OUT/VOCsynth/JPEGImages/000000.jpg, Annotations/000000.xml,
          ImageSets/Main/{train,val}.txt and <class>_{train,val}.txt
    yolo: OUT/images/{train,val}/000000.jpg, OUT/labels/{train,val}/000000.txt
    coco: OUT/images/{train,val}/000000.jpg, OUT/annotations/instances_{train,val}.json

and ``OUT/data.yaml`` in the matching form. Boxes are the visible-pixel boxes of the objects:
VOC coordinates in the XML, ``class cx cy w h`` normalised in the YOLO labels (10 significant
digits), ``[x, y, w, h]`` pixels in the COCO file (category ids 1..6, image ids the image
numbers). Each reader turns them back into the same annotations (:mod:`detector.data.split`).
Difficult objects: ``<difficult>1`` in VOC, ``iscrowd: 1`` in COCO (both ignored by
evaluation); YOLO labels cannot mark them, so they are left out (as ultralytics' VOC
conversion does), which is also what training does with them in every layout.
"""
from __future__ import annotations

import json
import os
from typing import List, Sequence, Tuple

FORMATS = ("voc", "yolo", "coco")
DIRNAME = "VOCsynth"
TOP_DIRS = (DIRNAME, "images", "labels", "annotations")   # every layout's, for regenerating
# (image id, width, height, objects) of one image; objects have label, box, difficult
Row = Tuple[str, int, int, list]


def prepare_dirs(out: str, fmt: str) -> None:
    if fmt == "voc":
        base = os.path.join(out, DIRNAME)
        for d in ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main")):
            os.makedirs(os.path.join(base, d), exist_ok=True)
        return
    for split in ("train", "val"):
        os.makedirs(os.path.join(out, "images", split), exist_ok=True)
        if fmt == "yolo":
            os.makedirs(os.path.join(out, "labels", split), exist_ok=True)
    if fmt == "coco":
        os.makedirs(os.path.join(out, "annotations"), exist_ok=True)


def image_path(out: str, fmt: str, split: str, image_id: str) -> str:
    if fmt == "voc":
        return os.path.join(out, DIRNAME, "JPEGImages", image_id + ".jpg")
    return os.path.join(out, "images", split, image_id + ".jpg")


def voc_xml(image_id: str, width: int, height: int, objects, folder: str = DIRNAME) -> str:
    """The VOC annotation XML text of one image (objects with name, box, truncated,
    difficult)."""
    lines = ["<annotation>", f"\t<folder>{folder}</folder>",
             f"\t<filename>{image_id}.jpg</filename>",
             "\t<source><database>detector synth</database></source>",
             f"\t<size><width>{width}</width><height>{height}</height><depth>3</depth></size>",
             "\t<segmented>0</segmented>"]
    for o in objects:
        lines += ["\t<object>", f"\t\t<name>{o.name}</name>", "\t\t<pose>Unspecified</pose>",
                  f"\t\t<truncated>{int(o.truncated)}</truncated>",
                  f"\t\t<difficult>{int(o.difficult)}</difficult>",
                  "\t\t<bndbox><xmin>%d</xmin><ymin>%d</ymin><xmax>%d</xmax><ymax>%d</ymax>"
                  "</bndbox>" % o.box, "\t</object>"]
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"


def yolo_labels(width: int, height: int, objects) -> str:
    """``class cx cy w h`` lines (normalised) of the objects that are not difficult."""
    lines = []
    for o in objects:
        if o.difficult:
            continue
        x1, y1, x2, y2 = o.box[0] - 1, o.box[1] - 1, o.box[2], o.box[3]   # VOC -> pixels
        v = ((x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width,
             (y2 - y1) / height)
        lines.append(f"{o.label} " + " ".join(f"{x:.10g}" for x in v) + "\n")
    return "".join(lines)


def write_image_labels(out: str, fmt: str, split: str, image_id: str, width: int, height: int,
                       objects) -> None:
    """The label file of one image (VOC XML, YOLO txt; COCO has one file per split)."""
    if fmt == "voc":
        write_text(os.path.join(out, DIRNAME, "Annotations", image_id + ".xml"),
                   voc_xml(image_id, width, height, objects))
    elif fmt == "yolo":
        write_text(os.path.join(out, "labels", split, image_id + ".txt"),
                   yolo_labels(width, height, objects))


def write_split_index(out: str, fmt: str, split: str, rows: List[Row],
                      names: Sequence[str]) -> None:
    """What a split needs beyond the images' own files: VOC's ImageSets lists, COCO's JSON."""
    if fmt == "voc":
        _voc_lists(os.path.join(out, DIRNAME, "ImageSets", "Main"), split, rows, names)
    elif fmt == "coco":
        path = os.path.join(out, "annotations", f"instances_{split}.json")
        write_text(path, json.dumps(coco_json(rows, names), separators=(",", ":")) + "\n")


def _voc_lists(main_dir: str, split: str, rows: List[Row], names: Sequence[str]) -> None:
    write_text(os.path.join(main_dir, split + ".txt"), "".join(f"{r[0]}\n" for r in rows))
    for c, name in enumerate(names):
        lines = []
        for image_id, _, _, objs in rows:
            mine = [o.difficult for o in objs if o.label == c]
            flag = 1 if any(not d for d in mine) else (0 if mine else -1)
            lines.append(f"{image_id} {flag:2d}\n")
        write_text(os.path.join(main_dir, f"{name}_{split}.txt"), "".join(lines))


def coco_json(rows: List[Row], names: Sequence[str]) -> dict:
    """The COCO annotation object of one split: category ids 1..N, image ids the image
    numbers, difficult objects as crowd regions."""
    images, anns = [], []
    for image_id, w, h, objs in rows:
        images.append({"id": int(image_id), "file_name": image_id + ".jpg", "width": w,
                       "height": h})
        for o in objs:
            x, y = o.box[0] - 1, o.box[1] - 1
            bw, bh = o.box[2] - x, o.box[3] - y
            anns.append({"id": len(anns) + 1, "image_id": int(image_id),
                         "category_id": o.label + 1, "bbox": [x, y, bw, bh], "area": bw * bh,
                         "iscrowd": int(o.difficult), "segmentation": []})
    cats = [{"id": c + 1, "name": n, "supercategory": "shape"} for c, n in enumerate(names)]
    return {"info": {"description": "detector synth"}, "images": images, "annotations": anns,
            "categories": cats}


def yaml_body(fmt: str, names: Sequence[str]) -> str:
    """``data.yaml`` after its comment lines."""
    if fmt == "voc":
        return (f"root: .\ntrain: [{DIRNAME}/train]\nval: [{DIRNAME}/val]\n"
                f"names: [{', '.join(names)}]\n")
    if fmt == "yolo":
        return ("path: .\ntrain: images/train\nval: images/val\nnames:\n" +
                "".join(f"  {i}: {n}\n" for i, n in enumerate(names)))
    return ("path: .\n"
            "train: {images: images/train, annotations: annotations/instances_train.json}\n"
            "val: {images: images/val, annotations: annotations/instances_val.json}\n"
            f"names: [{', '.join(names)}]\n")


def write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
