# Sourced by the experiments' build scripts (build_rhvoice.sh, build_mbrola.sh, install_openjtalk_voices.sh).
# repo <owner+name>: a git directory holding that GitHub repository: the local mirror under $MIRRORS/<owner>+<name>/
# (bare at repo/, or a checkout's repo/.git), else a shallow bare clone under $WORK/clones. Needs MIRRORS and WORK set.
repo() {
  local dir
  for dir in "$MIRRORS/$1/repo" "$MIRRORS/$1/repo/.git"; do
    if [ -f "$dir/HEAD" ]; then echo "$dir"; return; fi
  done
  dir="$WORK/clones/$1"
  [ -d "$dir" ] || git clone -q --depth 1 --bare "https://github.com/${1/+//}.git" "$dir"
  echo "$dir"
}
