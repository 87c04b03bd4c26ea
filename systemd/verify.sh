#!/usr/bin/env bash
# Checks systemd/alertd.service with `systemd-analyze verify`, offline and reproducibly.
#
# verify looks up the ExecStart=/ExecReload= binaries and the units the file refers to. On a
# build machine /opt/alertd does not exist, so the unit is verified, unchanged, inside a
# temporary root (--root) holding: a stand-in executable at the ExecStart= path, a copy of
# the ExecReload= binary, and a copy of this host's systemd unit directory (the targets).
# verify exits 0 even after warnings such as "Unknown key", so any output counts as a
# failure; a self-test shows that a broken copy of the unit is caught that way.
# verify does not check that User= exists (it is resolved when the service starts).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
unit="$here/alertd.service"
name=$(basename "$unit")
command -v systemd-analyze >/dev/null || { echo "verify.sh: systemd-analyze not found" >&2; exit 2; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

# The first word of a setting's value, e.g. the binary of ExecStart=.
binary_of() { sed -n "s/^$1=[-@:+!]*\([^ ]*\).*/\1/p" "$unit" | head -n 1; }

start_bin=$(binary_of ExecStart)
reload_bin=$(binary_of ExecReload)
host_units=$(readlink -f /usr/lib/systemd/system 2>/dev/null || readlink -f /lib/systemd/system)

mkdir -p "$root/etc/systemd/system" "$root/usr/lib/systemd" "$root$(dirname "$start_bin")" \
         "$root$(dirname "$reload_bin")"
cp "$unit" "$root/etc/systemd/system/$name"
printf '#!/bin/sh\nexit 0\n' > "$root$start_bin"
chmod 0755 "$root$start_bin"
cp "$(readlink -f "$reload_bin")" "$root$reload_bin"
cp -a "$host_units" "$root/usr/lib/systemd/system"

echo "systemd: $(systemd-analyze --version | head -n 1)"
echo "unit: $unit (copied unchanged to <root>/etc/systemd/system/$name)"
echo "root: $root"
echo "  stand-in for ExecStart: $start_bin"
echo "  copy of ExecReload:     $reload_bin (from $(readlink -f "$reload_bin"))"
echo "  host units:             $host_units -> <root>/usr/lib/systemd/system"

# Runs verify on a unit name inside the root; prints its output; fails on status or output.
verify() {
  local output status=0
  output=$(systemd-analyze verify --man=no --root="$root" "$1" 2>&1) || status=$?
  [ -n "$output" ] && printf '%s\n' "$output"
  [ "$status" -eq 0 ] && [ -z "$output" ]
}

echo "\$ systemd-analyze verify --man=no --root=<root> $name"
if ! verify "$name"; then
  echo "FAIL: $name has errors or warnings (above)" >&2
  exit 1
fi
echo "OK: no errors, no warnings"

# Self-test: a copy with an unknown key must be reported, or the check above proves nothing.
broken="alertd-verify-selftest.service"
sed 's/^Type=notify$/Type=notify\nNoSuchSetting=yes/' "$unit" > "$root/etc/systemd/system/$broken"
echo "self-test: a copy with an unknown key must fail:"
if verify "$broken" | sed 's/^/  /'; then
  echo "FAIL: self-test: the broken copy passed; this check cannot see warnings" >&2
  exit 1
fi
echo "OK: self-test caught it"

echo "\$ systemd-analyze security --offline=yes --root=<root> $name (for information)"
systemd-analyze security --offline=yes --root="$root" "$name" 2>&1 | grep -F 'Overall exposure' \
  || echo "(security review not available in this systemd)"
