/* Small shared helpers: growable strings, files, names. */
#ifndef PGW_UTIL_H
#define PGW_UTIL_H

#include "common/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Growable NUL-terminated byte buffer. Owns data; release with cmn_buf_free. */
struct cmn_buf {
	char *data;
	size_t len;
	size_t cap;
};

int cmn_buf_append(struct cmn_buf *b, const void *data, size_t len) PGW_WUR;
int cmn_buf_printf(struct cmn_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cmn_buf_reset(struct cmn_buf *b);
void cmn_buf_free(struct cmn_buf *b);

/* Reads a whole file (NUL-terminated); caller frees. NULL on error (errno set). */
char *cmn_read_file(const char *path, size_t *len);
/* Writes via a temporary file + fsync + rename, with the given mode. */
int cmn_write_file_atomic(const char *path, const char *data, size_t len, mode_t mode) PGW_WUR;
int cmn_mkdir_p(const char *path, mode_t mode) PGW_WUR;
bool cmn_dir_is_empty_or_missing(const char *path);
int cmn_rm_rf(const char *path) PGW_WUR;

/* Lowercase [a-z0-9_] version of a member name, usable as a replication slot name. */
void cmn_slot_name(const char *member, char *out, size_t size);
/*
 * This program's path, to run it again (the agent's fence and scheduled backups): read
 * from /proc/self/exe, without the " (deleted)" Linux appends once the file was replaced
 * (an upgrade: the new binary at the same path is what runs then). -1 when unknown.
 */
int cmn_self_exe(char *out, size_t size);

/* Splits "host:port" ("[v6]:port" too). Returns PGW_EINVAL on a bad string. */
/*
 * A TCP socket listening on host:port ("" or "*": every address) with SO_REUSEADDR
 * and close-on-exec, non-blocking if asked; -1 (logged, what names the listener) when
 * it cannot.
 */
int cmn_tcp_listen(const char *host, int port, int backlog, bool nonblock, const char *what);
/*
 * Whether host:port accepts a TCP connection within timeout_ms, the name's resolution
 * included (each address it resolves to, in a thread of its own that is left to end by
 * itself when the time is up). The connection is closed at once.
 */
bool cmn_tcp_answers(const char *host, int port, int timeout_ms);

int cmn_split_hostport(const char *s, char *host, size_t host_size, int *port) PGW_WUR;
/*
 * A list of networks, "10.0.0.0/8, 192.168.1.7, fd00::/8": PGW_OK, or PGW_EINVAL with
 * why naming the bad entry.
 */
int cmn_networks_check(const char *networks, char *why, size_t why_size) PGW_WUR;
/*
 * Is host, an address literal, within networks? A name is not (it could resolve
 * elsewhere by the time it is used). networks NULL or "": anything is.
 */
bool cmn_host_in_networks(const char *host, const char *networks);

/* "%X/%X" LSN text <-> integer. */
/* name is one of list's names, separated by commas and/or spaces ("a,b", "a, b"); an
 * empty name is in no list. */
bool cmn_name_in_list(const char *list, const char *name);

int cmn_parse_lsn(const char *s, uint64_t *out) PGW_WUR;
void cmn_format_lsn(uint64_t lsn, char *out, size_t size);

/* This machine's RAM, or our cgroup's memory limit when that is lower (a container). */
int64_t cmn_physical_memory(void);

#endif
