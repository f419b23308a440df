#include "common/proc.h"
#include "common/log.h"
#include "common/timeutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* In the child, between fork and exec: only async-signal-safe calls. */
static void child_setup(const struct cmn_proc_opts *o, int out_fd, pid_t parent)
{
	int devnull = open("/dev/null", O_RDONLY);

	if (devnull >= 0) {
		dup2(devnull, 0);
		if (devnull > 2)
			close(devnull);
	}
	if (out_fd >= 0) {
		dup2(out_fd, 1);
		dup2(out_fd, 2);
		if (out_fd > 2)
			close(out_fd);
	}
	if (close_range(3, ~0U, 0) != 0) {
		/* Kernels before 5.9: close them one by one (no allocation here). */
		for (int fd = 3; fd < 65536; fd++)
			close(fd);
	}
	if (o->new_session)
		setsid();
	signal(SIGPIPE, SIG_DFL);
	signal(SIGCHLD, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (o->run_as) {
		if (setgroups(0, NULL) != 0 || setgid(o->gid) != 0 || setuid(o->uid) != 0)
			_exit(126);
	}
	if (o->cwd && chdir(o->cwd) != 0)
		_exit(126);
	/* After setuid (which clears it); a parent already gone: do not start at all. */
	if (o->die_with_parent && (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent))
		_exit(126);
}

/* In the child after a failed exec: say so on stderr (async-signal-safe) and exit 127. */
static void exec_failed(const char *prog) __attribute__((noreturn));
static void exec_failed(const char *prog)
{
	const char *why = strerror(errno);
	ssize_t w = write(2, "pgwarden: cannot execute ", 25);

	w += write(2, prog, strlen(prog));
	w += write(2, ": ", 2);
	w += write(2, why, strlen(why));
	w += write(2, "\n", 1);
	(void)w;
	_exit(127);
}

/* Our environment with env_extra added, an extra entry replacing ours of that name. */
static char **build_env(const char *const *env_extra)
{
	extern char **environ;
	size_t n_env = 0, n_extra = 0, k = 0;
	char **envp;

	while (environ[n_env])
		n_env++;
	while (env_extra && env_extra[n_extra])
		n_extra++;
	envp = calloc(n_env + n_extra + 1, sizeof(char *));
	if (!envp)
		return NULL;
	for (size_t i = 0; i < n_env; i++) {
		const char *eq = strchr(environ[i], '=');
		size_t nlen = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
		bool overridden = false;

		for (size_t j = 0; j < n_extra; j++)
			if (strncmp(env_extra[j], environ[i], nlen) == 0 &&
			    env_extra[j][nlen] == '=')
				overridden = true;
		if (!overridden)
			envp[k++] = environ[i];
	}
	for (size_t j = 0; j < n_extra; j++)
		envp[k++] = (char *)env_extra[j];
	envp[k] = NULL;
	return envp;
}

int cmn_proc_spawn(const struct cmn_proc_opts *o, pid_t *pid_out)
{
	int out_fd = -1;
	pid_t pid;

	if (o->inherit_output) {
		out_fd = -1;
	} else if (o->log_path) {
		struct stat st;

		/* Never through a link, nor into anything but a plain file of its own (a log in
		 * a folder its child's user owns may have been replaced by one). */
		out_fd =
		    open(o->log_path,
			 O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0640);
		if (out_fd < 0) {
			log_error("cannot open log file %s: %s", o->log_path,
				  errno == ELOOP ? "it is a symbolic link" : strerror(errno));
			return PGW_ERR;
		}
		if (fstat(out_fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
			log_error("cannot use log file %s: not a plain file with one name",
				  o->log_path);
			close(out_fd);
			return PGW_ERR;
		}
		(void)fcntl(out_fd, F_SETFL, O_APPEND); /* O_NONBLOCK was only for a FIFO */
		if (o->run_as && st.st_uid != o->uid && fchown(out_fd, o->uid, o->gid) != 0)
			log_warning("cannot chown %s: %s", o->log_path, strerror(errno));
	} else {
		out_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	}
	/* Build the environment before fork: no allocation in the child. */
	char **envp = build_env(o->env_extra);
	pid_t parent = getpid();

	if (!envp) {
		if (out_fd >= 0)
			close(out_fd);
		return PGW_ENOMEM;
	}
	pid = fork();
	if (pid < 0) {
		log_error("fork failed: %s", strerror(errno));
		free(envp);
		if (out_fd >= 0)
			close(out_fd);
		return PGW_ERR;
	}
	if (pid == 0) {
		child_setup(o, out_fd, parent);
		execvpe(o->argv[0], (char *const *)o->argv, envp);
		exec_failed(o->argv[0]);
	}
	free(envp);
	if (out_fd >= 0)
		close(out_fd);
	*pid_out = pid;
	return PGW_OK;
}

static int decode_status(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return 255;
}

int cmn_proc_poll(pid_t pid, int *exit_code)
{
	int status;
	pid_t r = waitpid(pid, &status, WNOHANG);

	if (r == 0)
		return 0;
	if (r < 0) {
		*exit_code = 255; /* not our child any more */
		return 1;
	}
	*exit_code = decode_status(status);
	return 1;
}

int cmn_proc_run(const char *const *argv, const char *const *env_extra, int timeout_ms,
		 struct cmn_buf *out, int *exit_code)
{
	struct cmn_proc_opts o = {.argv = argv, .env_extra = env_extra};

	return cmn_proc_run_opts(&o, timeout_ms, out, exit_code);
}

int cmn_proc_run_opts(const struct cmn_proc_opts *po, int timeout_ms, struct cmn_buf *out,
		      int *exit_code)
{
	const char *const *argv = po->argv;
	int fds[2];
	pid_t pid;
	int64_t deadline = cmn_now_ms() + timeout_ms;

	if (pipe2(fds, O_CLOEXEC) != 0)
		return PGW_ERR;
	struct cmn_proc_opts o = *po;
	char **envp = build_env(o.env_extra);
	pid_t parent = getpid();

	if (!envp) {
		close(fds[0]);
		close(fds[1]);
		return PGW_ENOMEM;
	}
	pid = fork();
	if (pid < 0) {
		free(envp);
		close(fds[0]);
		close(fds[1]);
		return PGW_ERR;
	}
	if (pid == 0) {
		child_setup(&o, fds[1], parent);
		execvpe(argv[0], (char *const *)argv, envp);
		exec_failed(argv[0]);
	}
	free(envp);
	close(fds[1]);
	int rc = PGW_OK;

	for (;;) {
		int64_t left = deadline - cmn_now_ms();
		struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
		char chunk[4096];

		if (left <= 0) {
			kill(pid, SIGKILL);
			rc = PGW_ETIMEOUT;
			break;
		}
		int pr = poll(&pfd, 1, (int)(left > 200 ? 200 : left));

		if (pr < 0 && errno != EINTR)
			break;
		if (pr <= 0)
			continue;
		ssize_t n = read(fds[0], chunk, sizeof(chunk));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (out && cmn_buf_append(out, chunk, (size_t)n) != PGW_OK)
			rc = PGW_ENOMEM;
	}
	close(fds[0]);
	int status = 0;

	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			break;
		if (r < 0 && errno != EINTR) {
			status = 255 << 8;
			break;
		}
		if (cmn_now_ms() > deadline + 1000)
			kill(pid, SIGKILL);
		usleep(10000);
	}
	*exit_code = decode_status(status);
	if (rc == PGW_ETIMEOUT)
		log_warning("%s did not finish within %d ms and was killed", argv[0], timeout_ms);
	return rc;
}

void cmn_proc_stop(pid_t pid, int *exit_code)
{
	kill(pid, SIGTERM);
	while (cmn_proc_poll(pid, exit_code) == 0)
		usleep(100000);
}

size_t cmn_proc_cmdline(pid_t pid, char *out, size_t size)
{
	char path[64];
	ssize_t n;
	int fd;

	out[0] = '\0';
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, out, size - 1);
	close(fd);
	if (n <= 0)
		return 0;
	out[n] = '\0';
	return (size_t)n;
}

int cmn_proc_each(bool (*fn)(pid_t pid, void *arg), void *arg)
{
	DIR *proc = opendir("/proc");
	struct dirent *e;

	if (!proc)
		return PGW_ERR;
	while ((e = readdir(proc)) != NULL) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);

		if (!*end && pid > 0 && !fn((pid_t)pid, arg))
			break;
	}
	closedir(proc);
	return PGW_OK;
}

bool cmn_pid_alive(pid_t pid)
{
	char path[64], buf[256];
	const char *paren;
	ssize_t n;
	int fd;

	/* EPERM: a process of another user now has that pid: not ours, so not alive. */
	if (pid <= 0 || kill(pid, 0) != 0)
		return false;
	/* A zombie is dead, whatever kill(0) says (its parent may be slow to reap it). */
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return true;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return true;
	buf[n] = '\0';
	paren = strrchr(buf, ')');
	return !(paren && paren[1] == ' ' && paren[2] == 'Z');
}

pid_t cmn_read_pidfile(const char *path)
{
	FILE *f = fopen(path, "r");
	long pid = 0;

	if (!f)
		return 0;
	if (fscanf(f, "%ld", &pid) != 1)
		pid = 0;
	fclose(f);
	return pid > 0 ? (pid_t)pid : 0;
}
