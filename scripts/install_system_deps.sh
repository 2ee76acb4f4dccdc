#!/usr/bin/env bash
# Installs the system packages the browser tests need: Debian's chromium and chromium-driver (driven by
# Python's playwright through executable_path=/usr/bin/chromium) and bubblewrap (the grading sandbox).
# Idempotent: installs only what is missing, with apt-get, as root or through non-interactive sudo.
# Exits 0 with a message when it cannot install (no apt-get, no root, no sudo): the browser tests then skip.
set -uo pipefail

say() { printf '[install_system_deps] %s\n' "$*" >&2; }

PACKAGES=(chromium chromium-driver bubblewrap)

is_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    say "no dpkg/apt-get here (not Debian/Ubuntu): install chromium yourself; the browser tests skip without it"
    exit 0
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    is_installed "$pkg" || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
    say "${PACKAGES[*]}: already installed, nothing to do"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n env DEBIAN_FRONTEND=noninteractive)
else
    say "missing: ${missing[*]}; cannot install them (not root, and no password-less sudo)."
    say "ask an administrator to run: apt-get update && apt-get install -y ${missing[*]}"
    say "the browser tests skip until then"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
say "installing: ${missing[*]} (apt-get update, then apt-get install)"
if ! "${SUDO[@]}" apt-get update -qq >&2; then
    say "apt-get update failed (offline?); not installing. The browser tests skip without chromium."
    exit 0
fi
if ! "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
    say "apt-get install ${missing[*]} failed; the browser tests skip without chromium."
    exit 0
fi
for pkg in "${missing[@]}"; do
    if is_installed "$pkg"; then say "$pkg: installed"; else say "$pkg: still missing"; fi
done
exit 0
