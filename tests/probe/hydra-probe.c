/*
 * hydra-probe: a static helper the integration tests run INSIDE a container (busybox has no
 * ptrace, unshare(2), clone3 or rlimit probes). Each subcommand prints one line on stdout and
 * exits 0 when the operation succeeded, 1 when it failed ("<op>: <error>"), 2 on bad usage.
 * clone3, open-max and fds are measurements: they always exit 0 and print what they found.
 *
 *   hydra-probe ptrace PID | unshare user|net|mount|pid|ipc|uts|cgroup | clone3 | mount
 *               open-max | fsize PATH BYTES | alloc MB [hold] | fds | caps
 *               syscall keyctl|setns|perf_event_open|io_uring_setup
 *               connect IP PORT [FROM_PORT] | udp-echo PORT | now
 *
 * `connect IP PORT` opens a TCP connection with a 2 s timeout (a measurement of reachability:
 * "connect: ok" or the errno name, exit 0 or 1), from local port FROM_PORT if given.
 * `udp-echo PORT` answers every datagram on PORT with itself until killed; it prints
 * "udp-echo: ready" once bound. `now` prints CLOCK_REALTIME in microseconds (benchmarks take it
 * as the moment the process started).
 *
 * `alloc MB hold` keeps the memory after printing and waits until it is killed (a steady load for
 * `hydra stats`).
 *
 * `syscall NAME` makes a call that, unfiltered, fails with a harmless errno (EBADF, EFAULT) or
 * succeeds; a seccomp denial shows as EPERM. It is a measurement: it always exits 0.
 *
 * Built by rootfs/build.sh with gcc -static into rootfs/busybox/usr/local/bin/hydra-probe.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#define MIB (1024 * 1024)

/* Tests match on errno names where the message would be ambiguous or locale-dependent. */
static const char *errname(int e)
{
	static const struct { int e; const char *n; } t[] = {
		{EPERM, "EPERM"}, {ENOENT, "ENOENT"}, {ESRCH, "ESRCH"}, {EINTR, "EINTR"},
		{EBADF, "EBADF"}, {ENOMEM, "ENOMEM"}, {EACCES, "EACCES"}, {EFAULT, "EFAULT"},
		{EBUSY, "EBUSY"}, {EEXIST, "EEXIST"}, {EINVAL, "EINVAL"}, {ENFILE, "ENFILE"},
		{EMFILE, "EMFILE"}, {EFBIG, "EFBIG"}, {ENOSPC, "ENOSPC"}, {EROFS, "EROFS"},
		{ENOSYS, "ENOSYS"}, {E2BIG, "E2BIG"}, {EDQUOT, "EDQUOT"},
		{ECONNREFUSED, "ECONNREFUSED"}, {ETIMEDOUT, "ETIMEDOUT"},
		{ENETUNREACH, "ENETUNREACH"}, {EHOSTUNREACH, "EHOSTUNREACH"},
	};
	static char buf[16];
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (t[i].e == e)
			return t[i].n;
	snprintf(buf, sizeof(buf), "E%d", e);
	return buf;
}

/* Print "<op>: ok" or "<op>: <strerror>" and return the exit code. */
static int report(const char *op, int ok)
{
	if (ok)
		printf("%s: ok\n", op);
	else
		printf("%s: %s\n", op, strerror(errno));
	return ok ? 0 : 1;
}

static int do_ptrace(pid_t pid)
{
	int st;
	if (ptrace(PTRACE_ATTACH, pid, 0, 0) != 0)
		return report("ptrace", 0);
	waitpid(pid, &st, __WALL); /* the tracee must be stopped before it can be detached */
	ptrace(PTRACE_DETACH, pid, 0, 0);
	return report("ptrace", 1);
}

static int do_unshare(const char *ns)
{
	static const struct { const char *n; int f; } t[] = {
		{"user", CLONE_NEWUSER}, {"net", CLONE_NEWNET}, {"mount", CLONE_NEWNS},
		{"pid", CLONE_NEWPID}, {"ipc", CLONE_NEWIPC}, {"uts", CLONE_NEWUTS},
		{"cgroup", CLONE_NEWCGROUP},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (strcmp(ns, t[i].n) == 0)
			return report("unshare", unshare(t[i].f) == 0);
	fprintf(stderr, "hydra-probe: unknown namespace %s\n", ns);
	return 2;
}

/* clone3 with a NULL/0 argument is always rejected: EINVAL from the kernel itself, ENOSYS or
 * EPERM when a seccomp filter stops it first. The errno says which. */
static int do_clone3(void)
{
	long r = syscall(SYS_clone3, NULL, 0);
	if (r == 0)
		_exit(0); /* cannot happen with a NULL argument; never let a child run on */
	printf("clone3: %s\n", r > 0 ? "ok" : errname(errno));
	return 0;
}

static int do_open_max(void)
{
	long n = 0;
	while (open("/dev/null", O_RDONLY) >= 0)
		n++;
	printf("open-max: %ld %s\n", n, errname(errno));
	return 0;
}

static int do_fsize(const char *path, unsigned long long bytes)
{
	static char buf[MIB];
	signal(SIGXFSZ, SIG_IGN); /* get EFBIG instead of being killed */
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		goto fail;
	while (bytes > 0) {
		size_t chunk = bytes < sizeof(buf) ? bytes : sizeof(buf);
		ssize_t w = write(fd, buf, chunk);
		if (w < 0)
			goto fail;
		bytes -= (unsigned long long)w; /* a short write is retried: the next one gives EFBIG */
	}
	if (close(fd) != 0)
		goto fail;
	printf("fsize: ok\n");
	return 0;
fail:
	printf("fsize: %s\n", errname(errno));
	return 1;
}

/* Touch every page so the memory is really charged to the cgroup (and the OOM killer acts). */
static void *volatile keep; /* chains the blocks: the compiler cannot drop the allocations */
static int do_alloc(long mb, int hold)
{
	for (long i = 0; i < mb; i++) {
		void **p = malloc(MIB);
		if (!p) {
			printf("alloc: %s\n", errname(ENOMEM));
			return 1;
		}
		memset(p, 0xa5, MIB);
		*p = keep;
		keep = p;
	}
	printf("alloc: ok\n");
	if (hold) {
		fflush(stdout);
		for (;;)
			pause();
	}
	return 0;
}

static int do_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return report("fds", 0);
	struct dirent *e;
	printf("fds:");
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.' && atoi(e->d_name) != dirfd(d))
			printf(" %s", e->d_name);
	printf("\n");
	closedir(d);
	return 0;
}

static int do_caps(void)
{
	static const char *keys[] = {"CapEff", "CapBnd", "CapPrm", "CapInh", "CapAmb",
				     "NoNewPrivs", "Seccomp"};
	char val[7][32] = {{0}}, line[256];
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return report("caps", 0);
	while (fgets(line, sizeof(line), f))
		for (int i = 0; i < 7; i++) {
			size_t n = strlen(keys[i]);
			if (strncmp(line, keys[i], n) == 0 && line[n] == ':')
				sscanf(line + n + 1, "%31s", val[i]);
		}
	fclose(f);
	printf("caps: eff=%s bnd=%s prm=%s inh=%s amb=%s nnp=%s seccomp=%s\n", val[0], val[1],
	       val[2], val[3], val[4], val[5], val[6]);
	return 0;
}

#ifndef SYS_io_uring_setup
#define SYS_io_uring_setup 425
#endif

/* Calls that reveal a seccomp denial: unfiltered they succeed or fail with anything but EPERM. */
static int do_syscall(const char *name)
{
	long r;
	if (strcmp(name, "keyctl") == 0)
		r = syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* session */, 0);
	else if (strcmp(name, "setns") == 0)
		r = syscall(SYS_setns, -1, 0);
	else if (strcmp(name, "perf_event_open") == 0)
		r = syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0);
	else if (strcmp(name, "io_uring_setup") == 0)
		r = syscall(SYS_io_uring_setup, 1, NULL);
	else
		return 2;
	printf("syscall %s: %s\n", name, r >= 0 ? "ok" : errname(errno));
	return 0;
}

static int do_connect(const char *ip, int port, int from)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	struct sockaddr_in local = {.sin_family = AF_INET, .sin_port = htons(from)};
	int one = 1;
	if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
		printf("connect: bad address\n");
		return 2;
	}
	int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (s >= 0 && from && (setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
			       bind(s, (struct sockaddr *)&local, sizeof(local)) < 0)) {
		printf("connect: bind: %s\n", errname(errno));
		return 1;
	}
	if (s < 0 || (connect(s, (struct sockaddr *)&a, sizeof(a)) < 0 && errno != EINPROGRESS)) {
		printf("connect: %s\n", errname(errno));
		return 1;
	}
	struct pollfd p = {.fd = s, .events = POLLOUT};
	int err = 0;
	socklen_t len = sizeof(err);
	if (poll(&p, 1, 2000) == 0)
		err = ETIMEDOUT;
	else if (getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	close(s);
	if (err) {
		printf("connect: %s\n", errname(err));
		return 1;
	}
	printf("connect: ok\n");
	return 0;
}

static int do_udp_echo(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) < 0)
		return report("udp-echo", 0);
	printf("udp-echo: ready\n");
	fflush(stdout);
	char buf[65536];
	for (;;) {
		struct sockaddr_in from;
		socklen_t len = sizeof(from);
		ssize_t n = recvfrom(s, buf, sizeof(buf), 0, (struct sockaddr *)&from, &len);
		if (n >= 0)
			sendto(s, buf, n, 0, (struct sockaddr *)&from, len);
	}
}

int main(int argc, char **argv)
{
	const char *op = argc > 1 ? argv[1] : "";
	if (strcmp(op, "ptrace") == 0 && argc == 3)
		return do_ptrace(atoi(argv[2]));
	if (strcmp(op, "unshare") == 0 && argc == 3)
		return do_unshare(argv[2]);
	if (strcmp(op, "clone3") == 0 && argc == 2)
		return do_clone3();
	if (strcmp(op, "mount") == 0 && argc == 2) {
		int ok = mount("none", "/mnt", "tmpfs", 0, NULL) == 0;
		if (ok)
			umount("/mnt");
		return report("mount", ok);
	}
	if (strcmp(op, "open-max") == 0 && argc == 2)
		return do_open_max();
	if (strcmp(op, "fsize") == 0 && argc == 4)
		return do_fsize(argv[2], strtoull(argv[3], NULL, 10));
	if (strcmp(op, "alloc") == 0 && argc == 3)
		return do_alloc(atol(argv[2]), 0);
	if (strcmp(op, "alloc") == 0 && argc == 4 && strcmp(argv[3], "hold") == 0)
		return do_alloc(atol(argv[2]), 1);
	if (strcmp(op, "fds") == 0 && argc == 2)
		return do_fds();
	if (strcmp(op, "caps") == 0 && argc == 2)
		return do_caps();
	if (strcmp(op, "syscall") == 0 && argc == 3 && do_syscall(argv[2]) == 0)
		return 0;
	if (strcmp(op, "connect") == 0 && (argc == 4 || argc == 5))
		return do_connect(argv[2], atoi(argv[3]), argc == 5 ? atoi(argv[4]) : 0);
	if (strcmp(op, "now") == 0 && argc == 2) {
		struct timespec t;
		clock_gettime(CLOCK_REALTIME, &t);
		printf("%lld\n", (long long)t.tv_sec * 1000000 + t.tv_nsec / 1000);
		return 0;
	}
	if (strcmp(op, "udp-echo") == 0 && argc == 3)
		return do_udp_echo(atoi(argv[2]));
	fprintf(stderr, "usage: hydra-probe ptrace PID | unshare NS | clone3 | mount | open-max |"
			" fsize PATH BYTES | alloc MB [hold] | fds | caps | syscall NAME |"
			" connect IP PORT [FROM_PORT] | udp-echo PORT | now\n");
	return 2;
}
