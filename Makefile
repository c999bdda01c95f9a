# hydra: build, test, demo and benchmark entry points. `make test` and `make demo` work as root on
# a fresh Debian 12 machine that has only rust, gcc, make and git: they install what else they need.

CARGO ?= cargo
# Build exactly the committed dependency versions once there is a lock file.
LOCKED := $(if $(wildcard Cargo.lock),--locked,)
SNAPSHOT := hack/.cache/host-before-test.txt

.PHONY: all deps deps-bench deps-vm rootfs build lint test vm-test demo tour bench-start bench-up bench-net bench-ipc bench-image bench clean-host

all: build

deps:
	hack/install-deps.sh test

deps-bench:
	hack/install-deps.sh bench

deps-vm:
	hack/install-deps.sh vm

rootfs: deps
	rootfs/build.sh

build:
	$(CARGO) build $(LOCKED)

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy $(LOCKED) --all-targets -- -D warnings

# The integration tests run the real binary as root against rootfs/busybox; afterwards the host
# must look as it did before (no netns, links, nft tables, cgroups, mounts, processes, state).
# The comparison runs even when the tests fail, so that a failing test's leftovers are shown too.
test: deps rootfs build lint
	hack/check-clean.sh snapshot $(SNAPSHOT)
	HYDRA_ROOTFS=$(CURDIR)/rootfs/busybox $(CARGO) test $(LOCKED) || \
		{ hack/check-clean.sh compare $(SNAPSHOT); exit 1; }
	hack/test-image-pass.sh || { hack/check-clean.sh compare $(SNAPSHOT); exit 1; }
	hack/check-clean.sh compare $(SNAPSHOT)

# The privileged suites again, inside a pure cgroup v2 VM (qemu, software emulation).
vm-test: deps-vm rootfs build
	hack/vm-test.sh

# The kernel example (examples/kernel-example) end to end, narrated; tests/kernel_example.rs runs
# the same flow with assertions.
demo: deps rootfs build
	hack/demo.sh

# A shorter tour of what `hydra run` isolates, and of `hydra up` with a shared volume.
tour: deps rootfs build
	hack/tour.sh

bench-start: deps-bench rootfs
	hack/bench-start.sh

bench-up: deps-bench rootfs
	hack/bench-up.sh

bench-net: deps-bench rootfs
	hack/bench-net.sh

bench-ipc: deps-bench
	hack/bench-ipc.sh

bench-image: deps-bench rootfs
	hack/bench-image.sh

bench: deps-bench rootfs
	hack/bench.sh

# Removes leftover hydra cgroups (below the `hydra` cgroup dirs) and /run/hydra state, nothing else.
clean-host:
	hack/check-clean.sh clean
