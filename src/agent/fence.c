#include "agent/fence.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/timeutil.h"
#include "common/util.h"
#include "node/pgctl.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define FENCE_POLL_US 50000

static pid_t fence_pid; /* the fence process we started, reaped by agent_fence_reap */

static void fence_path(const char *run_dir, char *out, size_t size)
{
	snprintf(out, size, "%s/fence", run_dir);
}

static int write_deadline(const char *path, int64_t deadline_ms)
{
	char text[32];
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	ssize_t n;

	if (fd < 0)
		return PGW_ERR;
	snprintf(text, sizeof(text), "%020lld\n", (long long)deadline_ms);
	n = pwrite(fd, text, 21, 0); /* one small write: readers see old or new */
	close(fd);
	return n == 21 ? PGW_OK : PGW_ERR;
}

static int64_t read_deadline(int fd)
{
	char text[32];
	ssize_t n = pread(fd, text, 21, 0);

	if (n != 21)
		return -1;
	text[21] = '\0';
	return atoll(text);
}

/* true when a fence process holds the lock on the file. */
static bool fence_running(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	bool running;

	if (fd < 0)
		return false;
	running = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
	close(fd);
	return running;
}

int agent_fence_set(const char *run_dir, const char *data_dir, int64_t deadline_ms)
{
	char path[PATH_MAX], self[PATH_MAX];

	fence_path(run_dir, path, sizeof(path));
	if (write_deadline(path, deadline_ms) != PGW_OK) {
		log_error("cannot write the fence file %s: %s", path, strerror(errno));
		return PGW_ERR;
	}
	/* Ours may not hold its lock yet (just started): never a second one. */
	agent_fence_reap();
	if (deadline_ms <= 0 || fence_pid || fence_running(path))
		return PGW_OK;
	if (cmn_self_exe(self, sizeof(self)) != 0)
		return PGW_ERR;
	const char *argv[] = {self, "fence", run_dir, data_dir, NULL};
	struct cmn_proc_opts o = {.argv = argv, .new_session = true, .inherit_output = true};
	pid_t pid;

	if (cmn_proc_spawn(&o, &pid) != PGW_OK) {
		log_error("cannot start the fence process");
		return PGW_ERR;
	}
	log_info("fence process started (pid %d)", (int)pid);
	fence_pid = pid;
	return PGW_OK;
}

void agent_fence_reap(void)
{
	int code;

	if (fence_pid && cmn_proc_poll(fence_pid, &code) == 1)
		fence_pid = 0;
}

static bool standby_signal(const char *data_dir)
{
	char path[PATH_MAX];
	struct stat st;

	snprintf(path, sizeof(path), "%s/standby.signal", data_dir);
	return stat(path, &st) == 0;
}

int agent_fence_main(int argc, char **argv)
{
	char path[PATH_MAX];
	int fd;

	if (argc != 3) {
		fprintf(stderr, "usage: pgwarden fence RUN_DIR DATA_DIR (started by the agent)\n");
		return 2;
	}
	cmn_log_set_ident("fence");
	fence_path(argv[1], path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) != 0)
		return 0; /* another fence process guards this node */
	signal(SIGHUP, SIG_IGN);
	for (;;) {
		int64_t deadline = read_deadline(fd);
		struct stat st;

		if (deadline <= 0 || stat(path, &st) != 0)
			return 0; /* disarmed */
		if (cmn_now_ms() >= deadline) {
			pid_t pm = pgctl_live_postmaster(argv[2]);

			if (pm && !standby_signal(argv[2])) {
				log_warning(
				    "the agent did not renew the leader lease in time: stopping "
				    "PostgreSQL (pid %d) so that it takes no more writes",
				    (int)pm);
				kill(pm, SIGQUIT);
			}
			return 0;
		}
		usleep(FENCE_POLL_US);
	}
}
