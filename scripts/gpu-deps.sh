# Sourced by scripts/gpu-check and scripts/gpu-build (not run): the bundle
# scripts/gpu-bundle makes travels packed as <folder>.tar.xz; this unpacks it
# where the folder is missing or older than the archive.
# usage: unpack_gpu_deps /absolute/path/.gpu-deps
unpack_gpu_deps() {
  if [ -f "$1.tar.xz" ] && { [ ! -f "$1/.unpacked" ] || [ "$1.tar.xz" -nt "$1/.unpacked" ]; }; then
    echo "unpacking $1.tar.xz"
    rm -rf "$1"
    mkdir -p "$1"
    # The archive holds one folder (.gpu-deps); its contents go to $1.
    tar -C "$1" --strip-components=1 -xJf "$1.tar.xz"
    touch "$1/.unpacked"
  fi
}
