#!/usr/bin/env bash
# Assemble the training photos of the bundled prior's model card (src/spgd/priors/weights/MODEL_CARD.md) into
# a folder that a GPU run carries (benchmarks/gpu_run.sh reads benchmarks/training_photos by default; the
# folder is git-ignored). Run it on a CPU machine with network access:
#
#   benchmarks/training_photos.sh [DEST]     # default DEST: benchmarks/training_photos
#
# Only the licensed sources the model card names, never the FFHQ demo faces:
#   - scikit-image 0.26 (BSD-3-Clause), its bundled skimage/data photos: fetched with `pip download` (the wheel
#     is only unpacked, nothing is installed), or taken from SKIMAGE_DATA if set;
#   - Debian's opencv-doc 4.6.0 (Apache-2.0), /usr/share/doc/opencv-doc/examples/data: fetched with
#     `apt-get download` and unpacked with dpkg-deb (nothing is installed), or taken from OPENCV_DATA if set
#     (e.g. /usr/share/doc/opencv-doc/examples/data where the package is installed).
# The 30 files are copied as skimage_NAME.EXT / opencv_NAME.EXT; a missing one is an error.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEST=${1:-$ROOT/benchmarks/training_photos}
PY=${PYTHON:-python3}
SKIMAGE=(brick camera chelsea coffee grass gravel hubble_deep_field ihc motorcycle_left rocket)
OPENCV=(HappyFish aero1 apple baboon basketball1 blox board building butterfly ela_original fruits graf1 home
        leuvenA messi5 orange rubberwhale1 smarties squirrel_cls stuff)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/spgd-photos.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

if [ -z "${SKIMAGE_DATA:-}" ]; then
  echo "training_photos: pip download scikit-image 0.26 (wheel only, not installed)"
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: --dest "$TMP/wheel" "scikit-image==0.26.*"
  "$PY" -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$TMP"/wheel/*.whl "$TMP/skimage"
  SKIMAGE_DATA="$TMP/skimage/skimage/data"
fi
if [ -z "${OPENCV_DATA:-}" ]; then
  echo "training_photos: apt-get download opencv-doc (unpacked here, not installed)"
  (cd "$TMP" && apt-get download opencv-doc >/dev/null)
  dpkg-deb -x "$TMP"/opencv-doc_*.deb "$TMP/opencv"
  version=$(dpkg-deb -f "$TMP"/opencv-doc_*.deb Version)
  echo "training_photos: opencv-doc $version"
  case "$version" in 4.6.0*) ;; *) echo "training_photos: warning: the model card used opencv-doc 4.6.0" >&2 ;; esac
  OPENCV_DATA="$TMP/opencv/usr/share/doc/opencv-doc/examples/data"
fi

mkdir -p "$DEST"
copy() {  # copy PREFIX DIR NAME: the image DIR/NAME.{png,jpg,...} (gzip-compressed docs files too) as PREFIX_NAME.EXT
  local prefix=$1 dir=$2 name=$3 f
  for f in "$dir/$name".png "$dir/$name".jpg "$dir/$name".jpeg "$dir/$name".tif "$dir/$name".bmp; do
    if [ -f "$f" ]; then cp "$f" "$DEST/${prefix}_$(basename "$f")"; return 0; fi
    if [ -f "$f.gz" ]; then gzip -dc "$f.gz" > "$DEST/${prefix}_$(basename "$f")"; return 0; fi
  done
  echo "training_photos: $name not found in $dir" >&2
  return 1
}
for n in "${SKIMAGE[@]}"; do copy skimage "$SKIMAGE_DATA" "$n"; done
for n in "${OPENCV[@]}"; do copy opencv "$OPENCV_DATA" "$n"; done
count=$(ls "$DEST" | wc -l)
echo "training_photos: $count files in $DEST"
[ "$count" -eq 30 ] || { echo "training_photos: expected 30 files" >&2; exit 1; }
