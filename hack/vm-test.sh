#!/usr/bin/env bash
# `make vm-test`: the privileged integration tests on a pure cgroup v2 host. Boots Debian's
# kernel under qemu with software emulation (this machine's /dev/kvm runs only special guest
# kernels, see ENVIRONMENT.md) and `cgroup_no_v1=all`, shares the checkout with the guest over 9p
# at the same path (so the test binaries find hydra and the rootfs where they were built), runs the
# selected suites as root inside, and passes their exit status back through the serial console.
# A panic, a hang (bounded by TIMEOUT) or a missing result line is a failure, never a pass.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
cache=$repo/hack/.cache/vm
timeout=${TIMEOUT:-900}
# The suites that exercise cgroups, namespaces and isolation, and the kernel example (`make
# demo`) end to end; rootless needs useradd, which the busybox guest lacks (so ipc_plumbing,
# which has a rootless case, stays on the host). The IPC bulk test sends 100,000 messages rather
# than a million: emulation is some thirty times slower.
suites=${SUITES:-"info run_limits run_namespaces run_exit run_privileges run_filesystem run_init up stats net ipc kernel_example"}
mkdir -p "$cache"

# --- kernel: Debian's generic flavour (it has the 9p modules) ------------------------------------
kver=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/.*Depends: linux-image-\(.*-amd64\)$/\1/p' | head -1)
[[ -n $kver ]] || { apt-get update -qq; kver=$(apt-cache depends linux-image-amd64 | sed -n 's/.*Depends: linux-image-\(.*-amd64\)$/\1/p' | head -1); }
kdir=$cache/kernel-$kver
if [[ ! -f $kdir/boot/vmlinuz-$kver ]]; then
  rm -rf "$kdir" && mkdir -p "$kdir"
  (cd "$cache" && apt-get download "linux-image-$kver" >/dev/null 2>&1)
  dpkg-deb -x "$cache"/linux-image-"$kver"_*.deb "$kdir"
  rm -f "$cache"/linux-image-"$kver"_*.deb
fi

# --- the test binaries, built on the host ---------------------------------------------------------
cargo test --locked --no-run >"$cache/build.log" 2>&1 || { cat "$cache/build.log"; exit 1; }
tests=()
for s in $suites; do
  bin=$(ls -t target/x86_64-unknown-linux-gnu/debug/deps/"$s"-* 2>/dev/null | grep -v '\.d$' | head -1)
  [[ -x $bin ]] || { echo "vm-test: no test binary for $s" >&2; exit 1; }
  tests+=("$bin")
done

# --- initramfs: static busybox, nft, the modules 9p, overlayfs, veth and nftables need, an init --
# (and virtio_rng: without an entropy source the emulated guest's random pool never fills, and
# `hydra keygen`'s getrandom() waits for it, as it should)
initrd=$cache/initrd
rm -rf "$initrd" && mkdir -p "$initrd"/{bin,proc,sys,dev,run,tmp,lib/modules}
cp rootfs/busybox/bin/busybox "$initrd/bin/busybox"
# The nft binary the tests read hydra's rules back with, with its shared libraries at their paths.
for f in /usr/sbin/nft $(ldd /usr/sbin/nft | grep -o '/[^ ]*'); do
  mkdir -p "$initrd$(dirname "$f")" && cp -L "$f" "$initrd$f"
done
# bash and the GNU tools the kernel example's build.sh needs beyond busybox (`cp
# --no-preserve`, `realpath -m`, `rm --one-file-system`), in /gnu, first on the tests' PATH;
# /usr/bin/env for its #! line.
mkdir -p "$initrd/gnu" "$initrd/usr/bin"
for f in /usr/bin/bash /usr/bin/cp /usr/bin/realpath /usr/bin/rm /usr/bin/env; do
  cp -L "$f" "$initrd/gnu/"
  for lib in $(ldd "$f" | grep -o '/[^ ]*'); do
    mkdir -p "$initrd$(dirname "$lib")" && cp -L "$lib" "$initrd$lib"
  done
done
ln -s /gnu/env "$initrd/usr/bin/env"
# The modules in load order (dependencies first), as modprobe resolves them.
[[ -f $kdir/lib/modules/$kver/modules.dep ]] || depmod -b "$kdir" "$kver"
mods=()
for m in virtio_pci virtio_rng 9pnet_virtio 9p overlay veth bridge nf_tables nft_chain_nat nft_nat nft_masq nft_ct \
  nft_fib_inet nft_numgen nft_socket nf_conntrack_netlink; do
  while read -r _ path; do
    name=$(basename "$path")
    [[ " ${mods[*]} " == *" $name "* ]] && continue
    cp "$path" "$initrd/lib/modules/"
    mods+=("$name")
  done < <(modprobe -d "$kdir" -S "$kver" --show-depends "$m" | grep '^insmod')
done
# pivot_root cannot leave the initramfs (rootfs), so /init first moves everything onto a tmpfs
# and switches root to it; /stage2 then runs the tests.
cat >"$initrd/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mkdir -p /newroot
/bin/busybox mount -t tmpfs -o mode=755 root /newroot
/bin/busybox cp -a /bin /gnu /lib /lib64 /usr /stage2 /newroot/
/bin/busybox mkdir -p /newroot/proc /newroot/sys /newroot/dev /newroot/run /newroot/tmp /newroot/etc
exec /bin/busybox switch_root /newroot /stage2
INIT
chmod +x "$initrd/init"
{
  echo '#!/bin/busybox sh'
  echo '/bin/busybox --install -s /bin'
  echo 'export PATH=/gnu:/bin:/usr/sbin'
  echo 'mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev'
  echo 'mount -t tmpfs tmpfs /run; mount -t tmpfs tmpfs /tmp; mkdir -p /dev/pts; mount -t devpts devpts /dev/pts'
  # What udev would add: /dev/fd and /dev/std{in,out,err}.
  echo 'ln -s /proc/self/fd /dev/fd; for i in 0 1 2; do ln -s /proc/self/fd/$i /dev/$(echo stdin stdout stderr | cut -d" " -f$((i+1))); done'
  echo "for m in ${mods[*]}; do insmod /lib/modules/\$m; done"
  echo 'mount -t cgroup2 none /sys/fs/cgroup'
  echo "mkdir -p $repo && mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=loose share $repo"
  # The guest's "host" network: lo plus a veth pair, so --net none has interfaces to show.
  echo 'ip link set lo up; hostname vm; ip link add vm0 type veth peer name vm1; ip link set vm0 up'
  echo 'echo "root:x:0:0:root:/root:/bin/sh" > /etc/passwd; echo "root:x:0:" > /etc/group'
  echo 'echo "VM cgroup: $(grep -c " /sys/fs/cgroup cgroup2 " /proc/mounts) cgroup2 mounts, $(grep -c " cgroup " /proc/mounts) v1 mounts; controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"'
  echo "cd $repo"
  echo "$repo/target/x86_64-unknown-linux-gnu/debug/hydra info"
  echo 'cp -a rootfs/busybox /tmp/rootfs'
  echo 'rc=0'
  for t in "${tests[@]}"; do
    echo "echo \"== $(basename "$t")\"; HYDRA_ROOTFS=/tmp/rootfs HYDRA_TEST_IPC_MESSAGES=100000 CI=true $repo/$t --test-threads=2 || rc=1"
  done
  echo 'echo "VMTEST-RESULT rc=$rc"'
  echo 'sync; poweroff -f'
} >"$initrd/stage2"
chmod +x "$initrd/stage2"
(cd "$initrd" && find . | cpio -o -H newc 2>/dev/null | gzip -1) >"$cache/initrd.gz"

# --- boot --------------------------------------------------------------------------------------
log=$cache/vm.log
echo "vm-test: booting $kver (cgroup v2 only) with ${#tests[@]} suites; log in $log"
set +e
timeout --kill-after=10 "$timeout" qemu-system-x86_64 -accel tcg -m 2048 -smp 2 -nographic -no-reboot \
  -kernel "$kdir/boot/vmlinuz-$kver" -initrd "$cache/initrd.gz" \
  -append "console=ttyS0 quiet systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all panic=-1 rdinit=/init" \
  -virtfs "local,path=$repo,mount_tag=share,security_model=none,id=share" \
  -device virtio-rng-pci \
  </dev/null >"$log" 2>&1
qemu_rc=$?
set -e
grep -E '^(VM cgroup|cgroups:|== |test result|VMTEST-RESULT)|panicked|FAILED' "$log" || true
result=$(sed -n 's/.*VMTEST-RESULT rc=\([0-9]*\).*/\1/p' "$log" | tail -1)
if [[ -z $result ]]; then
  echo "vm-test: no result from the VM (qemu exit $qemu_rc: hang, panic or timeout); see $log" >&2
  exit 1
fi
grep -q 'VM cgroup: 1 cgroup2 mounts, 0 v1 mounts' "$log" || { echo "vm-test: the VM did not run on pure cgroup v2" >&2; exit 1; }
grep -Eq '^cgroups: +v2' "$log" || { echo "vm-test: hydra info does not say v2" >&2; exit 1; }
exit "$result"
