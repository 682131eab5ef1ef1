# shellcheck shell=bash
# Sourced by scripts/setup and scripts/install: which Debian packages are missing, and what a
# 32-bit ARM system needs from Debian that other machines get from PyPI. One copy, so that the two
# scripts cannot disagree about what "installed" means.

deb_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# deb_missing PKG...: print each PKG that is not installed, one per line.
deb_missing() {
  local p
  for p in "$@"; do
    deb_installed "$p" || printf '%s\n' "$p"
  done
}

# 32-bit ARM (armhf: Raspberry Pi OS 32-bit on any Pi, the only choice on a Pi Zero / Zero W / 1).
# PyPI has no armv7 wheels for numpy, soxr, Pillow or cffi, and pip would build them from source
# for the best part of an hour on such a board, to fail at the end more often than not. Debian
# packages all four for armhf (python3-soxr from trixie on), so there the venv sees the system's
# site packages and pip is forbidden to build them.
is_arm32() {
  case "$(dpkg --print-architecture 2>/dev/null)" in
    armhf | armel) return 0 ;;
  esac
  return 1
}

# shellcheck disable=SC2034 # used by the scripts that source this file
ARM32_BINARY_ONLY=numpy,soxr,pillow,cffi

debian_codename() {
  # shellcheck disable=SC1091
  (. /etc/os-release && echo "${VERSION_CODENAME:-}")
}

# The Debian packages a 32-bit ARM venv takes its compiled dependencies from.
arm32_packages() {
  printf '%s\n' python3-numpy python3-pil python3-cffi
  if [ "$(debian_codename)" != bookworm ]; then printf '%s\n' python3-soxr; fi
}

# Empty when soxr can be had without building it; otherwise why not and what to do instead.
# bookworm has no python3-soxr, but Raspberry Pi OS's /etc/pip.conf points pip at piwheels, which
# builds soxr for the Pi's Python.
arm32_soxr_problem() {
  [ "$(debian_codename)" = bookworm ] || return 0
  if grep -qs piwheels /etc/pip.conf /etc/pip/pip.conf "${PIP_CONFIG_FILE:-/dev/null}" \
    || [[ "${PIP_EXTRA_INDEX_URL:-}${PIP_INDEX_URL:-}" == *piwheels* ]]; then
    return 0
  fi
  cat <<'EOF'
on 32-bit ARM with Debian 12 (bookworm), soxr has neither a wheel on PyPI nor a Debian package,
and pip is not set up to use piwheels (Raspberry Pi OS does this in /etc/pip.conf). Either:
  - add piwheels: in /etc/pip.conf, under [global] (create the section if the file has none),
    the line  extra-index-url=https://www.piwheels.org/simple  (as Raspberry Pi OS ships it)
  - or use a trixie-based system (Raspberry Pi OS 13), which packages python3-soxr.
EOF
}

# What to say when pip failed on 32-bit ARM (it was told not to build the compiled packages).
arm32_pip_hint() {
  cat <<EOF
on 32-bit ARM, numpy, soxr, Pillow and cffi come from Debian ($(arm32_packages | paste -sd ' '))
or piwheels, never from a source build; pip found no usable copy of one of them (its error is above).
EOF
}

# The wake extra (wake-word mode's detector, pymicro-wakeword) installs from wheels only: its
# sdist ships an x86-64 library and would install anywhere, failing only when a model loads, and
# pymicro-features, which it needs, has no armv7 wheel (its sdist is a C++ build). Both have
# wheels for 64-bit x86 and ARM; wake mode is 64-bit only (docs/wake-word.md).
# shellcheck disable=SC2034 # used by the scripts that source this file
WAKE_BINARY_ONLY=pymicro-wakeword,pymicro-features

# Empty when the wake extra can be installed here; otherwise one line saying why not.
wake_unsupported() {
  local arch
  arch=$(dpkg --print-architecture 2>/dev/null || true)
  case "$arch" in
    amd64 | arm64) return 0 ;;
    armhf | armel)
      echo "wake mode (session.mode = \"wake\") needs a 64-bit OS: its detector" \
        "(pymicro-wakeword) has no 32-bit ARM build, so it is not installed"
      ;;
    *)
      echo "wake mode (session.mode = \"wake\") is not available: its detector" \
        "(pymicro-wakeword) has no build for ${arch:-this machine}, so it is not installed"
      ;;
  esac
}
