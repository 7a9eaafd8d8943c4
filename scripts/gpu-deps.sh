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
    if command -v xz >/dev/null 2>&1; then
      tar -C "$1" --strip-components=1 -xJf "$1.tar.xz"
    else
      # tar needs the xz program for -J; Python's tarfile reads xz itself.
      ${PYTHON:-python3} - "$1.tar.xz" "$1" <<'PY'
import os, sys, tarfile
# The bundle is made here by scripts/gpu-bundle and holds links Debian's
# packages have; Python 3.14's default filter would refuse some.
trusted = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
with tarfile.open(sys.argv[1]) as archive:
    for member in archive.getmembers():
        parts = member.name.split("/", 1)
        if len(parts) < 2 or not parts[1]:
            continue
        member.name = parts[1]
        if member.islnk():
            member.linkname = member.linkname.split("/", 1)[-1]
        archive.extract(member, sys.argv[2], set_attrs=True, **trusted)
PY
    fi
    touch "$1/.unpacked"
  fi
}
