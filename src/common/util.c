#include "common/util.h"
#include "common/log.h"
#include "common/timeutil.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int cmn_buf_append(struct cmn_buf *b, const void *data, size_t len)
{
	if (b->len + len + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *p;

		while (cap < b->len + len + 1)
			cap *= 2;
		p = realloc(b->data, cap);
		if (!p)
			return PGW_ENOMEM;
		b->data = p;
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
	return PGW_OK;
}

int cmn_buf_printf(struct cmn_buf *b, const char *fmt, ...)
{
	va_list ap;
	char small[512];
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return PGW_ERR;
	if ((size_t)n < sizeof(small))
		return cmn_buf_append(b, small, (size_t)n);
	char *big = malloc((size_t)n + 1);

	if (!big)
		return PGW_ENOMEM;
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	int rc = cmn_buf_append(b, big, (size_t)n);

	free(big);
	return rc;
}

void cmn_buf_reset(struct cmn_buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

void cmn_buf_free(struct cmn_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

char *cmn_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct cmn_buf b = {0};
	char chunk[8192];
	size_t n;

	if (!f)
		return NULL;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (cmn_buf_append(&b, chunk, n) != PGW_OK) {
			fclose(f);
			cmn_buf_free(&b);
			errno = ENOMEM;
			return NULL;
		}
	}
	fclose(f);
	if (!b.data && cmn_buf_append(&b, "", 0) != PGW_OK)
		return NULL;
	if (len)
		*len = b.len;
	return b.data;
}

int cmn_write_file_atomic(const char *path, const char *data, size_t len, mode_t mode)
{
	char tmp[4096];
	int fd;

	/* A fresh name, created exclusively: never a file or a link someone put there. */
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.XXXXXX", path) >= sizeof(tmp)) {
		errno = ENAMETOOLONG;
		return PGW_ERR;
	}
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0)
		return PGW_ERR;
	while (len > 0) {
		ssize_t w = write(fd, data, len);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			close(fd);
			unlink(tmp);
			return PGW_ERR;
		}
		data += w;
		len -= (size_t)w;
	}
	if (fchmod(fd, mode) != 0 || fsync(fd) != 0) {
		close(fd);
		unlink(tmp);
		return PGW_ERR;
	}
	if (close(fd) != 0) {
		unlink(tmp);
		return PGW_ERR;
	}
	if (rename(tmp, path) != 0) {
		unlink(tmp);
		return PGW_ERR;
	}
	return PGW_OK;
}

int cmn_mkdir_p(const char *path, mode_t mode)
{
	char buf[4096];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(buf))
		return PGW_EINVAL;
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) != 0 && errno != EEXIST)
			return PGW_ERR;
		*p = '/';
	}
	if (mkdir(buf, mode) != 0 && errno != EEXIST)
		return PGW_ERR;
	return PGW_OK;
}

bool cmn_dir_is_empty_or_missing(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	bool empty = true;

	if (!d)
		return errno == ENOENT;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
			empty = false;
			break;
		}
	}
	closedir(d);
	return empty;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

int cmn_rm_rf(const char *path)
{
	if (nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
		return PGW_ERR;
	return PGW_OK;
}

void cmn_slot_name(const char *member, char *out, size_t size)
{
	size_t j = 0;

	for (const char *p = member; *p && j + 1 < size && j < 63; p++) {
		unsigned char c = (unsigned char)tolower((unsigned char)*p);

		out[j++] = (char)(isalnum(c) ? c : '_');
	}
	out[j] = '\0';
}

int cmn_split_hostport(const char *s, char *host, size_t host_size, int *port)
{
	const char *colon;
	size_t hlen;
	char *end;
	long p;

	if (*s == '[') {
		const char *close = strchr(s, ']');

		if (!close || close[1] != ':')
			return PGW_EINVAL;
		hlen = (size_t)(close - s - 1);
		s++;
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return PGW_EINVAL;
		hlen = (size_t)(colon - s);
	}
	if (hlen >= host_size)
		return PGW_EINVAL;
	errno = 0;
	p = strtol(colon + 1, &end, 10);
	if (errno || *end != '\0' || end == colon + 1 || p < 1 || p > 65535)
		return PGW_EINVAL;
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	*port = (int)p;
	return PGW_OK;
}

int cmn_parse_lsn(const char *s, uint64_t *out)
{
	unsigned int hi, lo;
	char extra;

	if (!s || sscanf(s, "%X/%X%c", &hi, &lo, &extra) != 2)
		return PGW_EINVAL;
	*out = ((uint64_t)hi << 32) | lo;
	return PGW_OK;
}

void cmn_format_lsn(uint64_t lsn, char *out, size_t size)
{
	snprintf(out, size, "%X/%X", (unsigned int)(lsn >> 32), (unsigned int)lsn);
}

/* The memory limit of our cgroup (v2 memory.max, else v1), or 0 when none is set. */
static int64_t cgroup_memory_limit(void)
{
	static const char *const files[] = {"/sys/fs/cgroup/memory.max",
					    "/sys/fs/cgroup/memory/memory.limit_in_bytes"};

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char *text = cmn_read_file(files[i], NULL);
		long long v;
		char *end;

		if (!text)
			continue;
		errno = 0;
		v = strtoll(text, &end, 10);
		if (end == text || errno != 0 || v <= 0) {
			free(text); /* "max": no limit */
			return 0;
		}
		free(text);
		return v;
	}
	return 0;
}

int64_t cmn_physical_memory(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
	int64_t ram = 1024LL * 1024 * 1024, limit = cgroup_memory_limit();

	if (pages > 0 && page > 0)
		ram = (int64_t)pages * page;
	/* In a container with a memory limit (Docker's --memory), that is what we have. */
	return limit > 0 && limit < ram ? limit : ram;
}

int cmn_self_exe(char *out, size_t size)
{
	static const char deleted[] = " (deleted)";
	ssize_t n = readlink("/proc/self/exe", out, size - 1);
	size_t len;

	if (n <= 0)
		return -1;
	out[n] = '\0';
	len = (size_t)n;
	if (len > sizeof(deleted) - 1 && strcmp(out + len - (sizeof(deleted) - 1), deleted) == 0)
		out[len - (sizeof(deleted) - 1)] = '\0';
	return 0;
}

/* One "address[/bits]" entry: family (AF_INET or AF_INET6), address bytes, prefix bits. */
static bool parse_network(const char *entry, size_t len, int *family, uint8_t addr[16], int *bits)
{
	char buf[64], *slash;
	int max;

	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, entry, len);
	buf[len] = '\0';
	slash = strchr(buf, '/');
	if (slash)
		*slash++ = '\0';
	if (inet_pton(AF_INET, buf, addr) == 1) {
		*family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, buf, addr) == 1) {
		*family = AF_INET6;
		max = 128;
	} else {
		return false;
	}
	*bits = max;
	if (slash) {
		char *end;
		long b = strtol(slash, &end, 10);

		if (!*slash || *end || b < 0 || b > max)
			return false;
		*bits = (int)b;
	}
	return true;
}

/* Calls fn on each entry of the comma-separated list (blanks around entries skipped). */
static bool each_network(const char *networks, bool (*fn)(const char *, size_t, void *), void *arg)
{
	const char *p = networks;

	while (p && *p) {
		size_t len;

		while (*p == ' ' || *p == ',')
			p++;
		len = strcspn(p, ",");
		while (len && p[len - 1] == ' ')
			len--;
		if (len && fn(p, len, arg))
			return true;
		p += strcspn(p, ",");
	}
	return false;
}

struct net_check {
	char *why;
	size_t why_size;
};

static bool bad_entry(const char *entry, size_t len, void *arg)
{
	struct net_check *c = arg;
	uint8_t addr[16];
	int family, bits;

	if (parse_network(entry, len, &family, addr, &bits))
		return false;
	snprintf(c->why, c->why_size, "bad network '%.*s': expected an address or address/bits",
		 (int)len, entry);
	return true;
}

int cmn_networks_check(const char *networks, char *why, size_t why_size)
{
	struct net_check c = {why, why_size};

	return each_network(networks, bad_entry, &c) ? PGW_EINVAL : PGW_OK;
}

struct net_match {
	int family;
	const uint8_t *addr;
};

static bool entry_matches(const char *entry, size_t len, void *arg)
{
	struct net_match *m = arg;
	uint8_t net[16];
	int family, bits;

	if (!parse_network(entry, len, &family, net, &bits) || family != m->family)
		return false;
	for (int i = 0; i < bits / 8; i++)
		if (net[i] != m->addr[i])
			return false;
	if (bits % 8) {
		uint8_t mask = (uint8_t)(0xff << (8 - bits % 8));

		if ((net[bits / 8] & mask) != (m->addr[bits / 8] & mask))
			return false;
	}
	return true;
}

static bool sockaddr_in_networks(const struct sockaddr *sa, const char *networks)
{
	struct net_match m;

	if (sa->sa_family == AF_INET) {
		m.family = AF_INET;
		m.addr = (const uint8_t *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
	} else if (sa->sa_family == AF_INET6) {
		m.family = AF_INET6;
		m.addr =
		    (const uint8_t *)&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
	} else {
		return false;
	}
	return each_network(networks, entry_matches, &m);
}

bool cmn_host_in_networks(const char *host, const char *networks)
{
	/* Address literals only: a name could resolve elsewhere when it is used (and a
	 * lookup would block the loops that read etcd). */
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST},
			*ai = NULL;
	bool all = true;

	if (!networks || !*networks)
		return true;
	if (!host || !*host || getaddrinfo(host, NULL, &hints, &ai) != 0 || !ai)
		return false;
	for (struct addrinfo *p = ai; p && all; p = p->ai_next)
		all = sockaddr_in_networks(p->ai_addr, networks);
	freeaddrinfo(ai);
	return all;
}

bool cmn_name_in_list(const char *list, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = list; n && p && *p;) {
		while (*p == ' ' || *p == ',')
			p++;
		size_t len = strcspn(p, ", ");

		if (len == n && strncmp(p, name, n) == 0)
			return true;
		p += len;
	}
	return false;
}

int cmn_tcp_listen(const char *host, int port, int backlog, bool nonblock, const char *what)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	char portstr[16];
	int fd, one = 1;

	snprintf(portstr, sizeof(portstr), "%d", port);
	if (getaddrinfo(*host && strcmp(host, "*") != 0 ? host : NULL, portstr, &hints, &ai) != 0 ||
	    !ai) {
		log_error("%s: cannot resolve listen address %s", what, host);
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (fd >= 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, backlog) != 0) {
		log_error("%s: cannot listen on %s:%d: %s", what, host, port, strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	return fd;
}

/* Resolves host and connects to each address until one accepts, within timeout_ms. */
static bool tcp_connects(const char *host, int port, int timeout_ms)
{
	struct addrinfo hints = {
	    .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	char portstr[16];
	int64_t deadline = cmn_now_ms() + timeout_ms;
	bool ok = false;

	snprintf(portstr, sizeof(portstr), "%d", port);
	if (getaddrinfo(host, portstr, &hints, &ai) != 0 || !ai)
		return false;
	for (struct addrinfo *p = ai; p && !ok && cmn_now_ms() < deadline; p = p->ai_next) {
		int fd = socket(p->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		int err = 0, rc;
		socklen_t len = sizeof(err);

		if (fd < 0)
			continue;
		if (connect(fd, p->ai_addr, p->ai_addrlen) == 0) {
			ok = true;
		} else if (errno == EINPROGRESS) {
			struct pollfd pfd = {.fd = fd, .events = POLLOUT};

			do {
				int64_t left = deadline - cmn_now_ms();

				rc = left > 0 ? poll(&pfd, 1, (int)left) : 0;
			} while (rc < 0 && errno == EINTR);
			ok = rc == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
			     err == 0;
		}
		close(fd);
	}
	freeaddrinfo(ai);
	return ok;
}

/* A probe shared by the caller and its thread: the last one to let go frees it. */
struct tcp_probe {
	pthread_mutex_t lock;
	pthread_cond_t done_cond;
	int refs;
	bool done, ok;
	int port, timeout_ms;
	char host[];
};

static void probe_release(struct tcp_probe *t)
{
	bool last;

	pthread_mutex_lock(&t->lock);
	last = --t->refs == 0;
	pthread_mutex_unlock(&t->lock);
	if (last) {
		pthread_cond_destroy(&t->done_cond);
		pthread_mutex_destroy(&t->lock);
		free(t);
	}
}

static void *probe_run(void *arg)
{
	struct tcp_probe *t = arg;
	bool ok = tcp_connects(t->host, t->port, t->timeout_ms);

	pthread_mutex_lock(&t->lock);
	t->ok = ok;
	t->done = true;
	pthread_cond_signal(&t->done_cond);
	pthread_mutex_unlock(&t->lock);
	probe_release(t);
	return NULL;
}

bool cmn_tcp_answers(const char *host, int port, int timeout_ms)
{
	size_t n = strlen(host) + 1;
	struct tcp_probe *t = calloc(1, sizeof(*t) + n);
	pthread_condattr_t ca;
	pthread_attr_t attr;
	pthread_t th;
	struct timespec ts;
	bool ok;

	if (!t) /* (the name's resolution would not be bounded: not answering) */
		return false;
	memcpy(t->host, host, n);
	t->port = port;
	t->timeout_ms = timeout_ms;
	t->refs = 2;
	pthread_mutex_init(&t->lock, NULL);
	pthread_condattr_init(&ca);
	(void)pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* cannot fail on Linux */
	pthread_cond_init(&t->done_cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&th, &attr, probe_run, t) != 0) {
		pthread_attr_destroy(&attr);
		t->refs = 1;
		probe_release(t);
		return false;
	}
	pthread_attr_destroy(&attr);
	/* The name's resolution has no timeout of its own: the wait has. */
	cmn_deadline_ts(CLOCK_MONOTONIC, timeout_ms, &ts);
	pthread_mutex_lock(&t->lock);
	while (!t->done && pthread_cond_timedwait(&t->done_cond, &t->lock, &ts) == 0)
		;
	ok = t->done && t->ok;
	pthread_mutex_unlock(&t->lock);
	probe_release(t);
	return ok;
}
