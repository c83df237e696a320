#!/usr/bin/env bash
# hack/install-prometheus.sh [DEST]
#
# Unpacks the real Prometheus server the metrics tests run against, from Debian's package
# (the only source of a prebuilt Prometheus these machines can reach), without installing it
# system-wide: `apt-get install prometheus` would also create a user and start a service.
#
#   DEST/prometheus, DEST/promtool
#
# DEST defaults to a versioned folder in the user's cache next to install-testbins.sh's, so
# fresh clones reuse it. A stamp (DEST/.stamps/prometheus) records the Debian package version
# unpacked; when it is there and the binary runs, nothing is downloaded, so a warm run takes
# well under a second. The last line printed on stdout is the binary's path, for callers:
# MESHPLANE_PROMETHEUS=$(hack/install-prometheus.sh).
set -euo pipefail

# Debian bookworm ships 2.42.0; the Debian revision (+ds-5+b6, ...) may move with point
# releases, so only the upstream version is pinned.
PROMETHEUS_VERSION=${PROMETHEUS_VERSION:-2.42.0}

CACHE_ROOT=${MESHPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/meshplane}
DEST=${1:-$CACHE_ROOT/testbin/prometheus-$PROMETHEUS_VERSION}
mkdir -p "$DEST"
DEST=$(cd "$DEST" && pwd)
STAMPS=$DEST/.stamps
mkdir -p "$STAMPS"
BIN=$DEST/prometheus

log() { printf '[testbin] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# runs: the binary starts on this machine (its shared libraries are present) and reports
# the pinned version.
runs() {
  local out
  out=$("$BIN" --version 2>&1) || return 1
  [[ $out == "prometheus, version $PROMETHEUS_VERSION"* ]]
}

if [[ -x $BIN && -f $STAMPS/prometheus && "$(cat "$STAMPS/prometheus")" == "$PROMETHEUS_VERSION"* ]] && runs; then
  echo "$BIN"
  exit 0
fi

t0=$SECONDS
command -v apt-get >/dev/null && command -v apt-cache >/dev/null && command -v dpkg-deb >/dev/null ||
  die "apt-get, apt-cache and dpkg-deb are needed to fetch Prometheus from Debian's packages (this machine has no apt?)"

# candidate: the version `apt-get download prometheus` would fetch ("" when apt knows none).
candidate() { apt-cache policy prometheus 2>/dev/null | sed -n 's/^[[:space:]]*Candidate:[[:space:]]*//p' | grep -v '(none)' || true; }

version=$(candidate)
if [[ -z $version ]]; then
  # A fresh machine may have empty package lists.
  if [[ $(id -u) -ne 0 ]]; then
    die "apt knows no 'prometheus' package; run 'sudo apt-get update' once, then retry"
  fi
  log "apt knows no 'prometheus' package yet: running apt-get update"
  apt-get update -qq >&2 || die "apt-get update failed (is Debian's package mirror reachable?)"
  version=$(candidate)
  [[ -n $version ]] || die "apt-get update ran but apt still offers no 'prometheus' package (is this Debian bookworm?)"
fi
upstream=${version#*:}; upstream=${upstream%%+*}; upstream=${upstream%%-*}
[[ $upstream == "$PROMETHEUS_VERSION" ]] ||
  die "apt offers prometheus $version, but the tests expect $PROMETHEUS_VERSION; set PROMETHEUS_VERSION=$upstream to try it"

work=$(mktemp -d "${TMPDIR:-/tmp}/meshplane-prometheus.XXXXXX")
trap 'rm -rf -- "$work"' EXIT
# As root, apt downloads as the _apt user: let that user (only) write here, or it warns.
if [[ $(id -u) -eq 0 ]] && id _apt >/dev/null 2>&1; then chown _apt "$work"; fi
log "downloading Debian's prometheus $version (about 20 MB, first time only)"
(cd "$work" && apt-get download -q "prometheus=$version" >&2) || die "apt-get download prometheus=$version failed"
deb=$(ls "$work"/prometheus_*.deb 2>/dev/null | head -n1)
[[ -n $deb ]] || die "apt-get download left no prometheus_*.deb in $work"

log "unpacking ${deb##*/}"
dpkg-deb -x "$deb" "$work/root" || die "dpkg-deb could not unpack $deb"
for f in prometheus promtool; do
  [[ -x $work/root/usr/bin/$f ]] || die "$deb holds no usr/bin/$f"
done

# Debian links its Go binaries against the C library; say which library is missing rather
# than leave the tests to fail on exec.
missing=$(ldd "$work/root/usr/bin/prometheus" 2>&1 | grep 'not found' || true)
[[ -z $missing ]] || die "prometheus needs shared libraries this machine lacks:"$'\n'"$missing"

# Renamed into place, so a concurrent run (the cache is shared by every clone) or a running
# test never sees a half-written binary.
for f in promtool prometheus; do
  install -m 0755 "$work/root/usr/bin/$f" "$DEST/.$f.$$"
  mv -f "$DEST/.$f.$$" "$DEST/$f"
done
runs || die "$BIN does not run or is not version $PROMETHEUS_VERSION: $("$BIN" --version 2>&1 | head -n1)"
printf '%s' "$version" >"$STAMPS/prometheus"
log "prometheus $version ready in $DEST ($((SECONDS - t0))s)"
echo "$BIN"
