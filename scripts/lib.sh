# Shared helpers for the scripts in this folder (sourced, not executed).
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Tools we install ourselves (wasm-bindgen-cli) live outside the clone so CI runs and later
# checkouts reuse them; override with ANIMATEDIFF_TOOLS.
TOOLS=${ANIMATEDIFF_TOOLS:-$HOME/.cache/animatediff-wgpu/tools}
export PATH="$TOOLS/bin:$HOME/.cargo/bin:$PATH"
# lavapipe prints a warning on every Vulkan instance without it.
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root for: $*"; fi
}

# The wasm-bindgen version pinned in Cargo.lock (the CLI must match it exactly).
locked_wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock"
}

# Which toolchain builds wasm32 here: "rustup" (target installed), "debian" (rustc-web +
# -Zbuild-std) or "none". ANIMATEDIFF_WASM_TOOLCHAIN=rustup|debian forces one route.
wasm_toolchain() {
  local rustup_ok=0 debian_ok=0
  rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown && rustup_ok=1
  [ -x /usr/bin/rustc ] && [ -d /usr/lib/rustlib/src/rust/library ] && debian_ok=1
  case "${ANIMATEDIFF_WASM_TOOLCHAIN:-}" in
    rustup) [ $rustup_ok = 1 ] && echo rustup || echo none ;;
    debian) [ $debian_ok = 1 ] && echo debian || echo none ;;
    *) if [ $rustup_ok = 1 ]; then echo rustup; elif [ $debian_ok = 1 ]; then echo debian; else echo none; fi ;;
  esac
}

chromium_path() {
  for p in "${CHROMIUM:-}" /usr/lib/chromium/chromium /usr/bin/chromium /usr/bin/chromium-browser; do
    [ -n "$p" ] && [ -x "$p" ] && { echo "$p"; return 0; }
  done
  return 1
}
