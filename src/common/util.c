#include "common/util.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
	if (fchmod(fd, mode) != 0 || fsync(fd) != 0 || close(fd) != 0) {
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
