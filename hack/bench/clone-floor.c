/* The floor for `hydra run`: the least a runtime must do to start /bin/true in a busybox rootfs
 * with new mount/pid/ipc/uts/net namespaces (no cgroups, no seccomp, no pivot_root).
 * usage: clone-floor ROOTFS */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static char stack[64 * 1024];

static int child(void *rootfs)
{
	if (chroot(rootfs) != 0 || chdir("/") != 0)
		return perror("chroot"), 125;
	char *argv[] = {"/bin/true", NULL};
	execv(argv[0], argv);
	return perror("execv"), 127;
}

int main(int argc, char **argv)
{
	int st, flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET;
	if (argc != 2)
		return fprintf(stderr, "usage: clone-floor ROOTFS\n"), 2;
	pid_t pid = clone(child, stack + sizeof(stack), flags | SIGCHLD, argv[1]);
	if (pid < 0 || waitpid(pid, &st, 0) < 0)
		return perror("clone"), 125;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
