#!/bin/sh
# The one list of Debian packages gridgate needs, by purpose, and the one place that installs them.
# usage: tools/deps.sh [check|ensure] [build|test|bench|all]
#   check  - print the missing packages, exit 1 if any
#   ensure - as root, apt-get install the missing ones; otherwise behave like check
set -eu

build_pkgs="gcc make clang llvm pkg-config libh2o-evloop-dev libwslay-dev libssl-dev zlib1g-dev libjansson-dev
            libbpf-dev libelf-dev bpftool linux-libc-dev libclang-rt-14-dev"
test_pkgs="curl iproute2 nftables procps jq chromium valgrind"
bench_pkgs="nginx-light wrk haproxy"

mode=${1:-check}
what=${2:-build}
case "$what" in
build) pkgs="$build_pkgs" ;;
test) pkgs="$build_pkgs $test_pkgs" ;;
bench) pkgs="$build_pkgs $test_pkgs $bench_pkgs" ;;
all) pkgs="$build_pkgs $test_pkgs $bench_pkgs" ;;
*) echo "deps.sh: unknown set '$what' (build|test|bench|all)" >&2; exit 2 ;;
esac

missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# Node.js and npm run the client-conformance and integration tests; any source of them will do.
if [ "$what" != build ]; then
    command -v node >/dev/null 2>&1 || missing="$missing nodejs"
    command -v npm >/dev/null 2>&1 || missing="$missing npm"
fi

[ -z "$missing" ] && exit 0
if [ "$mode" = ensure ] && [ "$(id -u)" = 0 ]; then
    echo "deps.sh: installing:$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || true
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >&2
    exit 0
fi
echo "deps.sh: missing Debian packages:$missing" >&2
echo "deps.sh: run as root: apt-get install$missing" >&2
exit 1
