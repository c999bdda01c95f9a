#!/bin/sh
# Run one OCI container to completion: oci-run.sh runc|crun BUNDLE
# hyperfine repeats one fixed command line, but every `run` needs a fresh container id: this
# wrapper picks one from its own pid. `run` without -d deletes the container when it exits.
# (POSIX sh, not bash: the wrapper's own start-up, ~0.5 ms, is counted in these rows.)
set -eu
runtime=$1 bundle=$2 id=hbench-$$

# Debian's crun 1.8.1 refuses hybrid cgroups: hide the cgroup2 mount in a private mount namespace
# (unshare -m makes propagation private, the host never sees the tmpfs). $1/$2 are the inner sh's.
# shellcheck disable=SC2016
hide_cgroup2='mount -t tmpfs tmpfs /sys/fs/cgroup/unified && exec crun run --bundle "$1" "$2"'

case $runtime in
  runc) exec runc run --bundle "$bundle" "$id" ;;
  crun) exec unshare -m sh -c "$hide_cgroup2" sh "$bundle" "$id" ;;
  *) echo "usage: $0 runc|crun BUNDLE" >&2; exit 2 ;;
esac
