#include "common/log.h"
#include "common/err.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

static enum cmn_log_level min_level = CMN_LOG_INFO;
static char log_ident[64] = "pgwarden";
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"DEBUG", "INFO", "WARNING", "ERROR", "FATAL"};

void cmn_log_set_level(enum cmn_log_level level)
{
	min_level = level;
}

int cmn_log_parse_level(const char *name, enum cmn_log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcasecmp(name, level_names[i]) == 0) {
			*out = (enum cmn_log_level)i;
			return PGW_OK;
		}
	}
	return PGW_EINVAL;
}

void cmn_log_set_ident(const char *ident)
{
	snprintf(log_ident, sizeof(log_ident), "%s", ident);
}

/*
 * One event, one line: control characters (a newline in a user name a client chose, say,
 * which would forge a line) are written as \n, \t or \xNN.
 */
static void escape_controls(const char *in, char *out, size_t size)
{
	static const char hex[] = "0123456789abcdef";
	size_t j = 0;

	for (; *in && j + 5 < size; in++) {
		unsigned char ch = (unsigned char)*in;

		if (ch >= 0x20 && ch != 0x7f) {
			out[j++] = (char)ch;
		} else if (ch == '\n' || ch == '\t') {
			out[j++] = '\\';
			out[j++] = ch == '\n' ? 'n' : 't';
		} else {
			out[j++] = '\\';
			out[j++] = 'x';
			out[j++] = hex[ch >> 4];
			out[j++] = hex[ch & 15];
		}
	}
	out[j] = '\0';
}

void cmn_log_write(enum cmn_log_level level, const char *fmt, ...)
{
	char raw[2048], msg[4096];
	char stamp[32];
	struct timeval tv;
	struct tm tm;
	va_list ap;

	if (level < min_level)
		return;
	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	escape_controls(raw, msg, sizeof(msg));
	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
	pthread_mutex_lock(&log_lock);
	fprintf(stderr, "%s.%03d %s %s: %s\n", stamp, (int)(tv.tv_usec / 1000), log_ident,
		level_names[level], msg);
	fflush(stderr);
	pthread_mutex_unlock(&log_lock);
}

const char *pgw_strerror(int err)
{
	switch (err) {
	case PGW_OK:
		return "success";
	case PGW_ENOMEM:
		return "out of memory";
	case PGW_ENET:
		return "unreachable";
	case PGW_ETIMEOUT:
		return "timed out";
	case PGW_ENOTFOUND:
		return "not found";
	case PGW_EPROTO:
		return "protocol error";
	case PGW_EINVAL:
		return "invalid input";
	case PGW_EUNAVAIL:
		return "unavailable";
	case PGW_EAUTH:
		return "authentication failed";
	default:
		return "error";
	}
}
