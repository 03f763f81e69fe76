#!/bin/sh
# Packaging checks, run by ctest (tests/CMakeLists.txt):
#   check.sh install BUILD_DIR   cmake --install into a temporary prefix: the file list, the
#                                installed binary, the man page (rendered without a
#                                warning, and true to --help and the README), the systemd
#                                units (systemd-analyze verify and security)
#   check.sh deb [DEB]           scripts/package (or the given .deb), lintian, dpkg -x into
#                                a temporary root, the unpacked binary with --version and
#                                --check on the shipped config, and the packaged units
# Each failure prints what was seen; the exit status is that of the first failed check.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
src="$(cd "$here/../.." && pwd)"
tmp="$(mktemp -d /tmp/respfence-packaging.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT INT TERM

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
ok() { echo "ok: $*"; }

version="$(sed -n 's/^project(respfence VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")"
[ -n "$version" ] || fail "no project version in CMakeLists.txt"

# The README's configuration table and `respfence --help` name every key and option: the
# man page must name each of them too.
check_man_matches() { # rendered-man-text binary
  text="$1"
  for opt in $("$2" --help | grep -o -- '--[a-z-]*' | sort -u); do
    grep -q -- "$opt" "$text" || fail "the man page does not mention option $opt"
  done
  keys="$(sed -n 's/^| `\[[^`]*\] \([a-z_]*\)`.*/\1/p' "$src/README.md" | sort -u)"
  [ "$(echo "$keys" | wc -l)" -ge 20 ] || fail "could not read the README's configuration table"
  for key in $keys; do
    grep -qw -- "$key" "$text" || fail "the man page does not mention config key $key (README has it)"
  done
  for section in OPTIONS CONFIGURATION SIGNALS "ADMIN ENDPOINT" FILES; do
    grep -q "^$section" "$text" || fail "the man page has no $section section"
  done
  ok "the man page names every option of --help and every key of the README's table"
}

check_man_renders() { # man-page-file (or .gz)
  page="$1"
  case "$page" in *.gz) zcat "$page" >"$tmp/respfence.1" && page="$tmp/respfence.1" ;; esac
  out="$(groff -man -Tutf8 -ww -z "$page" 2>&1)" || fail "groff failed: $out"
  [ -z "$out" ] || fail "groff -ww warns on $1:
$out"
  warnings="$(MANWIDTH=80 man --warnings -l "$1" 2>&1 >"$tmp/man.txt")" || fail "man -l failed: $warnings"
  [ -z "$warnings" ] || fail "man --warnings -l warns on $1:
$warnings"
  [ "$(wc -l <"$tmp/man.txt")" -gt 100 ] || fail "the man page rendered to almost nothing"
  ok "man page renders without a warning (groff -ww, man --warnings at 80 columns)"
}

# systemd-analyze verify checks that ExecStart's binary exists and that the
# Documentation= man page resolves, both on this machine's root. The units name the binary
# by its final path (e.g. /usr/bin/respfence), which is not on this machine, and --root
# cannot be used instead (a temporary root has no systemd, so every unit's dependencies,
# e.g. sysinit.target, are missing there). So copies of the units are verified, with
# ExecStart pointing at the binary in the temporary tree and MANPATH at its man pages;
# nothing else in them changes.
check_units() { # unit-dir binary-path installed-binary man-dir
  dir="$1"
  for f in respfence.service respfence@.service; do
    [ -f "$dir/$f" ] || fail "$dir/$f is missing"
    for line in 'Type=exec' 'ExecReload=/bin/kill -HUP $MAINPID' 'DynamicUser=yes' \
                'ProtectSystem=strict' 'NoNewPrivileges=yes' 'ProtectHome=yes' 'PrivateTmp=yes'; do
      grep -qxF "$line" "$dir/$f" || fail "$f has no line $line"
    done
  done
  grep -qxF "ExecStart=$2 --config /etc/respfence/respfence.toml" "$dir/respfence.service" ||
    fail "respfence.service does not run $2 --config /etc/respfence/respfence.toml"
  grep -qxF "ExecStart=$2 --config /etc/respfence/%i.toml" "$dir/respfence@.service" ||
    fail "respfence@.service does not run $2 --config /etc/respfence/%i.toml"
  copies="$tmp/units.$$"
  rm -rf "$copies"
  mkdir -p "$copies"
  for f in respfence.service respfence@.service; do
    sed "s|^ExecStart=$2 |ExecStart=$3 |" "$dir/$f" >"$copies/$f"
  done
  out="$(cd "$copies" && MANPATH="$4" systemd-analyze verify ./respfence.service \
           ./respfence@.service ./respfence@check.service 2>&1)" ||
    fail "systemd-analyze verify failed:
$out"
  [ -z "$out" ] || fail "systemd-analyze verify is not clean:
$out"
  ok "systemd-analyze verify: respfence.service, respfence@.service, respfence@check.service clean"
  for u in respfence.service respfence@check.service; do
    out="$(cd "$copies" && systemd-analyze security --offline=yes --threshold=20 "./$u" 2>&1)" ||
      fail "systemd-analyze security: $u is exposed above 2.0:
$out"
    echo "ok: systemd-analyze security $(echo "$out" | grep 'Overall exposure' | sed 's/^→ //')"
  done
}

case "${1:-}" in
  install)
    build="${2:?usage: check.sh install BUILD_DIR}"
    prefix="$tmp/prefix"
    cmake --install "$build" --prefix "$prefix" >/dev/null || fail "cmake --install failed"
    (cd "$prefix" && find . -type f | sed 's|^\./||' | sort) >"$tmp/files"
    echo "cmake --install --prefix <tmp>:"
    sed 's/^/  /' "$tmp/files"
    cat >"$tmp/expected" <<'EOF'
bin/respfence
lib/systemd/system/respfence.service
lib/systemd/system/respfence@.service
share/doc/respfence/README.md
share/doc/respfence/examples/cluster.toml
share/doc/respfence/examples/sharded.toml
share/doc/respfence/examples/sidecar.toml
share/doc/respfence/examples/strict-reject.toml
share/man/man1/respfence.1
EOF
    diff -u "$tmp/expected" "$tmp/files" || fail "the installed files are not the expected ones"
    ok "installed files are the expected ones"

    bin="$prefix/bin/respfence"
    [ "$("$bin" --version)" = "respfence $version" ] || fail "installed --version: $("$bin" --version)"
    for f in "$prefix"/share/doc/respfence/examples/*.toml; do
      "$bin" --check --config "$f" >/dev/null || fail "--check refuses the installed example $f"
    done
    ok "installed binary: --version is $version, --check accepts every installed example"

    check_man_renders "$prefix/share/man/man1/respfence.1"
    check_man_matches "$tmp/man.txt" "$bin"
    configured="$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")"
    check_units "$prefix/lib/systemd/system" "$configured/bin/respfence" "$bin" "$prefix/share/man"
    ;;
  deb)
    if [ -n "${2:-}" ]; then
      deb="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
    else
      deb="$(cd "$src" && scripts/package)" || fail "scripts/package failed"
      deb="$src/$deb"
    fi
    case "$deb" in */respfence_"$version"_*.deb) ;; *) fail "unexpected package name $deb" ;; esac
    ok "package: $(basename "$deb")"

    # Errors and warnings fail the check; informational and pedantic tags are printed.
    if ! lintian --fail-on error,warning --display-info --pedantic "$deb" >"$tmp/lintian" 2>&1; then
      cat "$tmp/lintian" >&2
      fail "lintian reports errors or warnings"
    fi
    grep -v 'running with root privileges' "$tmp/lintian" | sed 's/^/  lintian: /' || true
    ok "lintian: no errors, no warnings"

    dpkg-deb -f "$deb" Version | grep -qx "$version" || fail "the package's version is not $version"
    dpkg-deb -I "$deb" conffiles 2>/dev/null | grep -qx /etc/respfence/respfence.toml ||
      fail "/etc/respfence/respfence.toml is not a conffile"
    ok "/etc/respfence/respfence.toml is a conffile"

    root="$tmp/root"
    dpkg -x "$deb" "$root"
    for f in usr/bin/respfence etc/respfence/respfence.toml usr/share/man/man1/respfence.1.gz \
             lib/systemd/system/respfence.service lib/systemd/system/respfence@.service \
             usr/share/doc/respfence/copyright usr/share/doc/respfence/examples/sidecar.toml; do
      [ -f "$root/$f" ] || fail "the package has no /$f"
    done
    bin="$root/usr/bin/respfence"
    out="$("$bin" --version)" || fail "the unpacked binary does not run: $out"
    [ "$out" = "respfence $version" ] || fail "unpacked --version says: $out"
    ok "dpkg -x; unpacked respfence --version: $out"
    out="$("$bin" --check --config "$root/etc/respfence/respfence.toml" 2>&1)" ||
      fail "--check refuses the shipped config:
$out"
    echo "$out" | head -n 1 | grep -q 'configuration OK' || fail "--check said: $out"
    echo "  $(echo "$out" | head -n 1)"
    ok "unpacked respfence --check --config <root>/etc/respfence/respfence.toml"

    check_man_renders "$root/usr/share/man/man1/respfence.1.gz"
    check_units "$root/lib/systemd/system" /usr/bin/respfence "$bin" "$root/usr/share/man"
    ;;
  *)
    echo "usage: check.sh install BUILD_DIR | check.sh deb [DEB]" >&2
    exit 2
    ;;
esac
echo "all packaging checks passed ($1)"
