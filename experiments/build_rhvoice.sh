#!/bin/bash
# Build RHVoice (CMake) with its English language data and the voices alan, bdl, clb, ksp, slt, install into $PREFIX
# (about a minute on 2 cores): the fourth unheard engine of experiments/jam_rhvoice.md.
# Sources: bare git mirrors under $MIRRORS/<owner>+<name>/repo where present, else shallow clones from GitHub.
# Usage: bash experiments/build_rhvoice.sh    (env overrides: MIRRORS, WORK, PREFIX, JOBS, ENABLE_SONIC)
set -euo pipefail

MIRRORS=${MIRRORS:-/work/.mirror}
WORK=${WORK:-/tmp/rhvoice_build}
PREFIX=${PREFIX:-/opt/rhvoice}
JOBS=${JOBS:-$(nproc)}
ENABLE_SONIC=${ENABLE_SONIC:-ON}   # sonic (external/libs/sonic) used for time-stretching at fast rates
SRC=$WORK/src
BLD=$WORK/build

# 1. Debian build deps (only libboost-dev headers are needed beyond a C/C++ toolchain + cmake + pkg-config;
#    core/voice.cpp uses boost/algorithm/string.hpp)
if ! dpkg -s libboost-dev >/dev/null 2>&1 || ! command -v cmake >/dev/null || ! command -v g++ >/dev/null; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    build-essential cmake pkg-config git libboost-dev
fi

# 2. Sources
rm -rf "$SRC" "$BLD"
mkdir -p "$SRC"
source "$(dirname "$0")/mirror_repo.sh"  # repo <owner+name>: the mirror or a shallow clone
put() { # put <owner+name> <path in the source tree>
  [ "$2" = . ] || rm -rf "${SRC:?}/$2"; mkdir -p "$SRC/$2"
  git --git-dir="$(repo "$1")" archive HEAD | tar -x -C "$SRC/$2"
}
put RHVoice+RHVoice .
VERSION_FROM_GIT=$(git --git-dir="$(repo RHVoice+RHVoice)" describe --long --tags 2>/dev/null || echo 1.18.4)
put RHVoice+English      data/languages/English
for v in alan bdl clb ksp slt; do put "RHVoice+$v-eng" "data/voices/$v"; done
put waywardgeek+sonic    external/libs/sonic

# 3. Drop all empty (unpopulated) submodule dirs so only English + 5 voices are installed
for d in "$SRC"/data/languages/* "$SRC"/data/voices/*; do
  [ -d "$d" ] && [ -z "$(ls -A "$d")" ] && rmdir "$d"
done

# 4. Stubs for the missing CMake helper submodules (Ccache.cmake, sanitizers-cmake)
mkdir -p "$SRC/cmake/thirdParty/CCache" "$SRC/cmake/thirdParty/sanitizers/cmake"
echo '# stub: Ccache.cmake submodule not available' > "$SRC/cmake/thirdParty/CCache/CMakeLists.txt"
cat > "$SRC/cmake/thirdParty/sanitizers/cmake/FindSanitizers.cmake" <<'EOF'
# stub: sanitizers-cmake submodule not available
set(Sanitizers_FOUND TRUE)
function(add_sanitizers)
endfunction()
EOF

# 4b. Bundled tclap 1.2.x uses 'ValueArg<T>(const ValueArg<T>&)' ctor declarations,
#     which GCC 12 rejects in C++20 mode (the project forces C++20): drop the template-id.
sed -i -E 's/\b(ValueArg|MultiArg)<T>\(const /\1(const /' \
  "$SRC/src/third-party/tclap/tclap/ValueArg.h" "$SRC/src/third-party/tclap/tclap/MultiArg.h"

# 5. Configure / build / install
cmake -S "$SRC" -B "$BLD" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$PREFIX" \
  -DCMAKE_INSTALL_RPATH="$PREFIX/lib" -DCMAKE_INSTALL_LIBDIR=lib \
  -DCMAKE_INSTALL_SYSCONFDIR="$PREFIX/etc" \
  -DRHVOICE_VERSION_FROM_GIT="$VERSION_FROM_GIT" \
  -DENABLE_SONIC="$ENABLE_SONIC" -DSonic_FORCE_COMPILATION=ON \
  -DWITH_PULSE=OFF -DWITH_LIBAO=OFF -DWITH_PORTAUDIO=OFF \
  -DBUILD_CLIENT=OFF -DBUILD_SERVICE=OFF -DBUILD_SPEECHDISPATCHER_MODULE=OFF \
  -DBUILD_UTILS=OFF -DBUILD_TESTS=ON
cmake --build "$BLD" -j"$JOBS"
cmake --install "$BLD"

# 6. Smoke test
echo "hello world" | "$PREFIX/bin/RHVoice-test" -p slt -o "$WORK/smoke.wav"
ls -l "$WORK/smoke.wav"
echo "OK: $PREFIX/bin/RHVoice-test"
