"""The published models a weights argument may name: darknet's own files (downloaded once,
verified) and the FastDSC conversions of them (built once by a recipe).

Each darknet file has its network (a zoo spec, or a darknet cfg shipped in
``darknet_files/``), its URL, its float count (the cfg's: what the file must hold after its
header) and, where a public source states them, its exact size and a hash. Sources are cited
beside each entry; where none states a hash, the size and the float count are what is
verified (docs: weights/README.md).

This module is data and small lookups only: downloading is :mod:`detector.io.download`,
resolving a weights argument is :mod:`detector.engine.model_file`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

FILES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "darknet_files")
# Real photos and video frames shipped with the package (sources and licenses: its README)
FOOTAGE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "footage")
PJREDDIE = "https://pjreddie.com/media/files/"


@dataclass(frozen=True)
class DarknetFile:
    """One published darknet ``.weights`` file.

    ``cfg``: the network, a zoo spec name (``yolov2-voc``) or a cfg file in ``darknet_files``
    (``yolov2.cfg``); ``names``: a class names file there (default: the spec's names).
    ``floats``: float32 values after the header (16 or 20 bytes, as the header's version
    says). ``layers``: a backbone file holds only the first ``layers`` layers of ``cfg``'s
    network (darknet's ``.conv.N`` files), for training."""
    name: str
    filename: str
    urls: Tuple[str, ...]
    cfg: str
    floats: int
    size: Optional[int] = None
    sha256: Optional[str] = None
    sha512: Optional[str] = None
    names: Optional[str] = None
    layers: Optional[int] = None
    about: str = ""

    @property
    def cfg_path(self) -> Optional[str]:
        """The darknet cfg file of the network, or None where it is a zoo spec."""
        return os.path.join(FILES_DIR, self.cfg) if self.cfg.endswith(".cfg") else None

    @property
    def names_path(self) -> Optional[str]:
        return os.path.join(FILES_DIR, self.names) if self.names else None

    @property
    def backbone(self) -> bool:
        return self.layers is not None


@dataclass(frozen=True)
class Recipe:
    """How a published FastDSC model is made from its regular original: the conversion's
    settings, as :class:`detector.convert.ConvertOptions` fields. ``calib`` None means the
    footage shipped with the package (``detector/footage``)."""
    options: Dict[str, Union[str, int, float, bool, None]] = field(default_factory=dict)
    calib: Optional[str] = None

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.options.items())


@dataclass(frozen=True)
class FastDSCModel:
    """A published FastDSC model: the regular published ``base`` converted by ``recipe``."""
    name: str
    base: str
    recipe: Recipe
    about: str = ""


def _darknet(name: str, cfg: str, floats: int, about: str, **kw) -> DarknetFile:
    filename = kw.pop("filename", name + ".weights")
    return DarknetFile(name, filename, (PJREDDIE + filename,), cfg, floats, about=about, **kw)


DARKNET_FILES: Dict[str, DarknetFile] = {f.name: f for f in [
    # No public source states a size or hash for this file; its float count is the cfg's
    # (darknet's cfg/yolov2-voc.cfg, our zoo spec), verified with either header version.
    _darknet("yolov2-voc", "yolov2-voc", 50676061,
             "YOLOv2 416, PASCAL VOC 2007+2012 (darknet's yolov2-voc)"),
    # Size: darkflow's load log "Successfully identified 63471556 bytes" for this file
    # (e.g. the darkflow README quoted in public notebooks): a 16-byte header + the floats.
    _darknet("yolov2-tiny-voc", "yolov2-tiny-voc", 15867885,
             "Tiny YOLOv2 416, PASCAL VOC 2007+2012", size=63471556),
    # Size: "Length: 203934260" in public wget transcripts of this URL, and darkflow's
    # "found 203934260" reports. SHA-512: vcpkg's darknet port (microsoft/vcpkg
    # ports/darknet/portfile.cmake, its "weights" feature: vcpkg_download_distfile).
    _darknet("yolov2", "yolov2.cfg", 50983561, "YOLOv2 608, COCO (80 classes)",
             names="coco.names", size=203934260,
             sha512="5271da2dd2da915172ddd034c8e894877e7066051f105ae82e25e185a2b4e415"
                    "7d2b9514653c23780e87346f2b20df6363018b7e688aba422e2dacf1d2fbf6ab"),
    # Size: darkflow's "AssertionError: expect 44948596 bytes, found 44948600" reports for
    # this file (a 20-byte header). SHA-512: vcpkg's darknet port, as above.
    _darknet("yolov2-tiny", "yolov2-tiny.cfg", 11237145, "Tiny YOLOv2 416, COCO (80 classes)",
             names="coco.names", size=44948600,
             sha512="f0857a7a02cf4322354d288c9afa0b87321b23082b719bc84ea64e2f3556cc1f"
                    "afeb836ee5bf9fb6dcf448839061b93623a067dfde7afa1338636865ea88989a"),
    # YOLO9000 (544 px): the WordTree head over 9418 classes (darknet's 9k.tree, with
    # 9k.names and coco9k.map beside the cfg in darknet_files, as darknet's data/ has them).
    # No public source states an exact size or hash; "186 MB" (AlexeyAB/darknet README) fits
    # the cfg's float count, which is what is verified.
    _darknet("yolo9000", "yolo9000.cfg", 48807501,
             "YOLO9000 544, 9418 WordTree classes (COCO + ImageNet)", names="9k.names"),
    # The first 23 layers of Darknet-19 at 448 px (ImageNet), the backbone darknet trains
    # yolov2-voc from. Size: public training scripts check os.path.getsize(...) == 79327120.
    # SHA-512: vcpkg's darknet port ("weights-train" feature).
    _darknet("darknet19_448.conv.23", "yolov2-voc", 19831776,
             "Darknet-19 backbone (ImageNet, 448 px), first 23 layers, for training",
             filename="darknet19_448.conv.23", layers=23, size=79327120,
             sha512="8016f5b7ddc15c5d7dad231592f5351eea65f608ebdb204f545034dde904e119"
                    "62f693080dfeb5a4510e7b71bdda151a9121ba0f8a243018d680f01b1efdbd31"),
]}

# The default recipe: ND then DD on the shipped footage, the terms of each layer chosen by
# singular-value energy (0.9). On a real VOC-trained tiny YOLOv2 this kept detections in
# agreement 0.979 with the original at a 1.44x network FLOP cut (weights/README.md).
DEFAULT_RECIPE = Recipe({"method": "dd", "energy": 0.9, "calib_images": 64})

FASTDSC_MODELS: Dict[str, FastDSCModel] = {m.name: m for m in [
    FastDSCModel("yolov2-voc-fastdsc", "yolov2-voc", DEFAULT_RECIPE,
                 "yolov2-voc converted to FastDSC blocks by the default recipe"),
    FastDSCModel("yolov2-tiny-voc-fastdsc", "yolov2-tiny-voc", DEFAULT_RECIPE,
                 "yolov2-tiny-voc converted to FastDSC blocks by the default recipe"),
]}


def published_names() -> List[str]:
    """Every name a weights argument may give for a published model."""
    return sorted(DARKNET_FILES) + sorted(FASTDSC_MODELS)


def is_published(name: str) -> bool:
    return isinstance(name, str) and (name in DARKNET_FILES or name in FASTDSC_MODELS)
