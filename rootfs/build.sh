#!/usr/bin/env bash
# Build the test/example root filesystem rootfs/busybox/ (generated, git-ignored) from Debian's
# busybox-static package plus the static test helper hydra-probe. Called by `make rootfs`.
#
# The build goes into a temporary directory and is renamed into place at the end, so a failed or
# interrupted build never leaves a half-made rootfs. It is skipped when the stamp (the .deb used,
# the probe source and this script) matches the existing rootfs.
set -euo pipefail
umask 022

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
out=$here/busybox
cache=$here/.cache
probe_src=$repo/tests/probe/hydra-probe.c
stamp=$cache/busybox.stamp

[[ $(id -u) -eq 0 ]] || { echo "rootfs: run as root (the tree must be owned by root)" >&2; exit 1; }
mkdir -p "$cache"
# Two builds at once (e.g. parallel make) would race on the rename: serialise them.
exec 9>"$cache/lock"
flock 9

# --- the busybox-static .deb, downloaded once into the cache -----------------------------------
find_deb() { find "$cache" -maxdepth 1 -name 'busybox-static_*.deb' | sort -V | tail -n 1; }
deb=$(find_deb)
if [[ -z $deb ]]; then
  # Sandbox::User=root: apt's _apt user cannot write into a root-owned cache dir (harmless warning).
  download() { (cd "$cache" && apt-get download -q -o APT::Sandbox::User=root busybox-static); }
  if ! download >/dev/null; then
    echo "rootfs: apt-get download failed, updating package lists and retrying"
    apt-get update -qq
    download >/dev/null
  fi
  deb=$(find_deb)
  [[ -n $deb ]] || { echo "rootfs: no busybox-static .deb in $cache" >&2; exit 1; }
fi

want="$(basename "$deb") $(sha256sum <"$probe_src" | cut -d' ' -f1) $(sha256sum <"$0" | cut -d' ' -f1)"
if [[ -x $out/bin/busybox && -f $stamp && $(cat "$stamp") == "$want" ]]; then
  exit 0  # up to date
fi
echo "rootfs: building $out from $(basename "$deb")"

tmp=$(mktemp -d "$cache/build.XXXXXX")
# --one-file-system: never delete through a mount someone made inside an old tree.
trap 'rm -rf --one-file-system "$tmp"' EXIT
root=$tmp/root

# --- layout ------------------------------------------------------------------------------------
mkdir -p "$root"
(cd "$root" && mkdir -p bin sbin usr/bin usr/sbin usr/local/bin dev proc sys tmp etc root \
  home/app run var/tmp mnt)
chmod 0755 "$root"
chmod 1777 "$root/tmp" "$root/var/tmp"
chmod 0700 "$root/root"

# --- busybox and one symlink per applet ---------------------------------------------------------
dpkg-deb -x "$deb" "$tmp/deb"
install -m 0755 "$tmp/deb/bin/busybox" "$root/bin/busybox"
# --list-full prints paths like usr/bin/awk; link each to /bin/busybox with a relative path so the
# links resolve both inside the container and when the tree is inspected from the host.
while read -r applet; do
  [[ $applet == */busybox || $applet == busybox ]] && continue
  slashes=${applet//[^\/]/} up=
  for ((i = 0; i < ${#slashes}; i++)); do up+=../; done
  ln -sfn "${up}bin/busybox" "$root/$applet"
done < <("$root/bin/busybox" --list-full)

# --- users, groups, name resolution ------------------------------------------------------------
cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$root/etc/group" <<'GROUP'
root:x:0:
tty:x:5:
app:x:1000:
nogroup:x:65534:
GROUP
cat >"$root/etc/hosts" <<'HOSTS'
127.0.0.1	localhost
::1		localhost ip6-localhost ip6-loopback
HOSTS
: >"$root/etc/resolv.conf"  # no DNS: containers only reach loopback

# --- the in-container test helper (static: the rootfs has no libc) ------------------------------
gcc -static -O2 -Wall -Wextra -Werror -o "$root/usr/local/bin/hydra-probe" "$probe_src"

chown -R 0:0 "$root"
chown 1000:1000 "$root/home/app"

# --- swap into place ---------------------------------------------------------------------------
if [[ -e $out ]]; then mv "$out" "$tmp/old"; fi
mv "$root" "$out"
echo "$want" >"$stamp"
echo "rootfs: done ($(find "$out" -type l | wc -l) applet links)"
