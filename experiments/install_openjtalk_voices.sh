#!/bin/bash
# Install Open JTalk (Debian packages) and the HTS voices of make_wakeword_clips.py's OPENJTALK_VOICES, the sixth
# unheard engine of experiments/jam_openjtalk.md, under $VOICES_DIR (/opt/htsvoice) with their licences:
#   mei (5 styles) and takumi (4), MMDAgent project, Nagoya Institute of Technology, CC BY 3.0;
#   nitech_jp_atr503_m001, Nagoya Institute of Technology, CC BY 3.0;
#   tohoku-f01 (4 styles), Tohoku University, CC BY 4.0.
# Sources: bare git mirrors under $MIRRORS/<owner>+<name>/repo where present, else shallow clones from GitHub
# (github.com/rosmarinus/jtalkdll vendors mei, takumi and m001; github.com/icn-lab/htsvoice-tohoku-f01).
# Usage: bash experiments/install_openjtalk_voices.sh    (env overrides: MIRRORS, WORK, VOICES_DIR)
set -euo pipefail

MIRRORS=${MIRRORS:-/work/.mirror}
WORK=${WORK:-/tmp/openjtalk_build}
VOICES_DIR=${VOICES_DIR:-/opt/htsvoice}

source "$(dirname "$0")/mirror_repo.sh"  # repo <owner+name>: the mirror or a shallow clone

command -v open_jtalk >/dev/null || apt-get install -y -qq open-jtalk open-jtalk-mecab-naist-jdic
mkdir -p "$VOICES_DIR"
jtalkdll=$(repo rosmarinus+jtalkdll)
tohoku=$(repo icn-lab+htsvoice-tohoku-f01)
for s in angry bashful happy normal sad; do git --git-dir="$jtalkdll" show "HEAD:voice/mei/mei_$s.htsvoice" > "$VOICES_DIR/mei_$s.htsvoice"; done
for s in angry happy normal sad; do git --git-dir="$jtalkdll" show "HEAD:voice/takumi/takumi_$s.htsvoice" > "$VOICES_DIR/takumi_$s.htsvoice"; done
git --git-dir="$jtalkdll" show HEAD:voice/hts_voice_nitech_jp_atr503_m001-1.05/nitech_jp_atr503_m001.htsvoice > "$VOICES_DIR/nitech_jp_atr503_m001.htsvoice"
git --git-dir="$jtalkdll" show HEAD:voice/mei/COPYRIGHT.txt > "$VOICES_DIR/COPYRIGHT_mei.txt"
git --git-dir="$jtalkdll" show HEAD:voice/takumi/COPYRIGHT.txt > "$VOICES_DIR/COPYRIGHT_takumi.txt"
git --git-dir="$jtalkdll" show HEAD:voice/hts_voice_nitech_jp_atr503_m001-1.05/COPYING > "$VOICES_DIR/COPYING_m001.txt"
for s in angry happy neutral sad; do git --git-dir="$tohoku" show "HEAD:tohoku-f01-$s.htsvoice" > "$VOICES_DIR/tohoku-f01-$s.htsvoice"; done
git --git-dir="$tohoku" show HEAD:COPYRIGHT.txt > "$VOICES_DIR/COPYRIGHT_tohoku-f01.txt"

# Check: one voice says the word
echo "アレクサ" > "$WORK.txt"
open_jtalk -x /var/lib/mecab/dic/open-jtalk/naist-jdic -m "$VOICES_DIR/mei_normal.htsvoice" -ow "$WORK.wav" "$WORK.txt" \
  && echo "Open JTalk ready: voices in $VOICES_DIR"
