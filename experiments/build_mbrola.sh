#!/bin/bash
# Build MBROLA (make, a few seconds) and install the diphone voices of make_wakeword_clips.py's MBROLA_VOICES, the fifth
# unheard engine of experiments/jam_mbrola.md: `mbrola` into $BIN (on the PATH), each voice's diphone file at
# /usr/share/mbrola/<voice>/<voice>, where espeak-ng (apt-get install espeak-ng) looks for its mb-* voices.
# Sources: bare git mirrors under $MIRRORS/<owner>+<name>/repo where present, else shallow clones from GitHub.
# Usage: bash experiments/build_mbrola.sh    (env overrides: MIRRORS, WORK, BIN, VOICES_DIR)
set -euo pipefail

MIRRORS=${MIRRORS:-/work/.mirror}
WORK=${WORK:-/tmp/mbrola_build}
BIN=${BIN:-/usr/local/bin}
VOICES_DIR=${VOICES_DIR:-/usr/share/mbrola}
VOICES="cr1 cz1 es1 es3 es4 gr1 in1 jp1 jp3 ma1 mx1 nz1 ro1 vz1"

source "$(dirname "$0")/mirror_repo.sh"  # repo <owner+name>: the mirror or a shallow clone

# 1. The synthesiser
rm -rf "$WORK/src"; mkdir -p "$WORK/src"
git --git-dir="$(repo numediart+MBROLA)" archive HEAD | tar -x -C "$WORK/src"
make -C "$WORK/src" -j"$(nproc)" >/dev/null
install -m 755 "$WORK/src/Bin/mbrola" "$BIN/mbrola"

# 2. The voices (a mirror may list a large file without holding it: such a voice is named and skipped)
voices=$(repo numediart+MBROLA-voices)
for v in $VOICES; do
  mkdir -p "$VOICES_DIR/$v"
  if git --git-dir="$voices" cat-file -e "HEAD:data/$v/$v" 2>/dev/null; then
    git --git-dir="$voices" cat-file -p "HEAD:data/$v/$v" > "$VOICES_DIR/$v/$v"
  else
    echo "voice $v: its diphone file is not in $voices; skipped" >&2
  fi
done

# 3. Check: one voice says the word
espeak-ng -v mb-ro1-en "alexa" -w "$WORK/check.wav" && echo "MBROLA ready: $BIN/mbrola, voices in $VOICES_DIR"
