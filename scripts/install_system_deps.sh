#!/usr/bin/env bash
# Installs the system packages the tests need: Debian's chromium and chromium-driver (driven by Python's
# playwright through executable_path=/usr/bin/chromium), bubblewrap (the grading sandbox) and, where initdb and
# pg_ctl are not there already, postgresql (tests/support/postgres.py starts a throwaway server from
# /usr/lib/postgresql/<version>/bin; the package's own cluster is not used).
# Idempotent: installs only what is missing, with apt-get, as root or through non-interactive sudo.
# Exits 0 with a message when it cannot install (no apt-get, no root, no sudo): those tests then skip.
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

# PostgreSQL's server programs, from any installation (on PATH, or any Debian version under /usr/lib/postgresql)
has_postgres_server() {
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        return 0
    fi
    local bin
    for bin in /usr/lib/postgresql/*/bin; do
        [ -x "$bin/initdb" ] && [ -x "$bin/pg_ctl" ] && return 0
    done
    return 1
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    is_installed "$pkg" || missing+=("$pkg")
done
has_postgres_server || missing+=(postgresql)

if [ ${#missing[@]} -eq 0 ]; then
    say "${PACKAGES[*]} and postgresql: already installed, nothing to do"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n env DEBIAN_FRONTEND=noninteractive)
else
    say "missing: ${missing[*]}; cannot install them (not root, and no password-less sudo)."
    say "ask an administrator to run: apt-get update && apt-get install -y ${missing[*]}"
    say "the tests that need them skip until then"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
say "installing: ${missing[*]} (apt-get update, then apt-get install)"
if ! "${SUDO[@]}" apt-get update -qq >&2; then
    say "apt-get update failed (offline?); not installing. The tests that need ${missing[*]} skip without them."
    exit 0
fi
if ! "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
    say "apt-get install ${missing[*]} failed; the tests that need them skip without them."
    exit 0
fi
for pkg in "${missing[@]}"; do
    if is_installed "$pkg"; then say "$pkg: installed"; else say "$pkg: still missing"; fi
done
exit 0
