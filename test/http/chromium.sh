# test/http/chromium.sh: sourced by test/http/page.sh and page_xss.sh.
#   ensure_chromium             install Debian's chromium (and a font) if missing, the
#                               way scripts/common.sh installs packages; its log lines
#                               are printed as TAP comments
#   chromium_run DIR ARGS...    headless chromium with a fresh profile and HOME under
#                               DIR, bounded by CHROMIUM_TIMEOUT seconds (default 60);
#                               stderr (with console messages) goes to DIR/chromium.err
#   chromium_exec DIR ARGS...   the same in place of the calling shell (exec): its pid
#                               is timeout's, which passes a TERM on to the browser's
#                               processes (test/clients/browser.js starts it this way)
#   dom_flat FILE               FILE on one line (chromium's DOM dump, for grep)
#   png_info FILE               "WIDTH HEIGHT BYTES" of a PNG, nothing if not a PNG
# Chromium runs with --no-sandbox, which is what lets it run as root (verified on
# Debian 12, chromium 156, as root and as an unprivileged user).
# shellcheck shell=bash
CHROMIUM=${CHROMIUM:-chromium}
CHROMIUM_SH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

ensure_chromium() {
    if ! command -v "$CHROMIUM" >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -q .; then
        (
            # shellcheck source=scripts/common.sh
            source "$CHROMIUM_SH_DIR/../../scripts/common.sh"
            PACKAGES=(chromium fonts-dejavu-core)
            ensure_packages
        ) 2>&1 | sed 's/^/# /'
    fi
    command -v "$CHROMIUM" >/dev/null 2>&1
}

chromium_run() { (chromium_exec "$@"); }

chromium_exec() {
    local dir=$1
    shift
    mkdir -p "$dir/home"
    rm -rf "$dir/profile"
    HOME=$dir/home XDG_CONFIG_HOME=$dir/home/.config XDG_CACHE_HOME=$dir/home/.cache \
        DBUS_SESSION_BUS_ADDRESS=disabled: \
        exec timeout -k 5 "${CHROMIUM_TIMEOUT:-60}" "$CHROMIUM" --headless --no-sandbox --disable-gpu \
        --disable-dev-shm-usage --no-first-run --no-default-browser-check --disable-extensions \
        --disable-background-networking --disable-component-update --disable-sync --mute-audio \
        --hide-scrollbars --enable-logging=stderr --v=0 --user-data-dir="$dir/profile" "$@" \
        2>"$dir/chromium.err"
}

dom_flat() { tr '\n\r' '  ' <"$1"; }

png_info() {
    local sig
    [[ -s $1 ]] || return 0
    sig=$(od -An -tx1 -N8 "$1" | tr -d ' \n')
    [[ $sig == 89504e470d0a1a0a ]] || return 0
    # IHDR: width and height, big-endian, at bytes 16..23
    od -An -tu1 -j16 -N8 "$1" | awk -v size="$(stat -c %s "$1")" \
        '{ print $1*16777216 + $2*65536 + $3*256 + $4, $5*16777216 + $6*65536 + $7*256 + $8, size }'
}
