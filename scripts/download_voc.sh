#!/usr/bin/env bash
# Download PASCAL VOC 2007 (trainval + test) and 2012 (trainval) and unpack them as
# DEST/VOCdevkit/VOC2007 and DEST/VOCdevkit/VOC2012, the layout data/voc.yaml expects.
#
#   scripts/download_voc.sh [DEST]        # DEST defaults to data/ (next to data/voc.yaml)
#
# About 2.8 GB of downloads (3.6 GB unpacked). Tarballs are kept in DEST/downloads so an
# interrupted run resumes; delete them afterwards if space matters. Set VOC_MIRROR to use a
# mirror that has the same file names (default: the official Oxford server).
set -euo pipefail

dest="${1:-data}"
mirror="${VOC_MIRROR:-http://host.robots.ox.ac.uk/pascal/VOC}"
files=(
  "voc2007/VOCtrainval_06-Nov-2007.tar"
  "voc2007/VOCtest_06-Nov-2007.tar"
  "voc2012/VOCtrainval_11-May-2012.tar"
)

fetch() {
  local url="$1" out="$2"
  if command -v curl >/dev/null 2>&1; then
    curl -fL --retry 3 -C - -o "$out" "$url"
  elif command -v wget >/dev/null 2>&1; then
    wget -c -O "$out" "$url"
  else
    echo "error: neither curl nor wget is installed" >&2
    exit 2
  fi
}

mkdir -p "$dest/downloads"
for f in "${files[@]}"; do
  tarball="$dest/downloads/$(basename "$f")"
  if [ ! -s "$tarball.done" ]; then
    echo "downloading $mirror/$f"
    fetch "$mirror/$f" "$tarball"
    date > "$tarball.done"
  fi
  echo "unpacking $(basename "$f")"
  tar -xf "$tarball" -C "$dest"          # every tarball unpacks into VOCdevkit/VOC20xx
done

for d in VOC2007 VOC2012; do
  if [ ! -d "$dest/VOCdevkit/$d/JPEGImages" ]; then
    echo "error: $dest/VOCdevkit/$d/JPEGImages is missing after unpacking" >&2
    exit 1
  fi
done
echo "done: $dest/VOCdevkit (use --data data/voc.yaml if DEST is data/)"
