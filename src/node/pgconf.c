#include "node/pgconf.h"
#include "node/backup.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MB (1024LL * 1024)
#define GB (1024LL * MB)

static const struct {
	const char *name;
	const char *reason;
} managed[] = {
    {"listen_addresses", "set [postgresql] listen"},
    {"port", "set [postgresql] listen"},
    {"unix_socket_directories", "set [postgresql] socket_dir"},
    {"hba_file", "pg_hba.conf is written by pgwarden; use [postgresql] pg_hba"},
    {"primary_conninfo", "pgwarden points replicas at the leader"},
    {"primary_slot_name", "pgwarden manages replication slots"},
    {"data_directory", "set [postgresql] data_dir"},
    {"config_file", "postgresql.conf is written by pgwarden"},
    {"cluster_name", "pgwarden sets it to the member name"},
    {"synchronous_standby_names",
     "the leader sets it in synchronous mode: use synchronous_mode / synchronous_node_count"},
    {"wal_receiver_status_interval",
     "pgwarden sets it to 1s: the leader judges a standby by how often it replies"},
};

const char *pgconf_node_only_reason(const char *name)
{
	static const char *const code[] = {
	    "archive_command",
	    "archive_library",
	    "restore_command",
	    "archive_cleanup_command",
	    "recovery_end_command",
	    "ssl_passphrase_command",
	    "shared_preload_libraries",
	    "local_preload_libraries",
	    "session_preload_libraries",
	    "dynamic_library_path",
	    "jit_provider",
	};

	for (size_t i = 0; i < sizeof(code) / sizeof(code[0]); i++)
		if (strcmp(code[i], name) == 0)
			return "it runs a command or loads code as postgres: set it in each node's "
			       "[parameters], never from etcd";
	return NULL;
}

const char *pgconf_managed_reason(const char *name)
{
	for (size_t i = 0; i < sizeof(managed) / sizeof(managed[0]); i++)
		if (strcmp(managed[i].name, name) == 0)
			return managed[i].reason;
	return NULL;
}

int pgconf_check_parameters(const struct agent_config *cfg, char *err, size_t err_size)
{
	for (size_t i = 0; i < cfg->parameters.n; i++) {
		const struct cmn_kv *kv = &cfg->parameters.items[i];
		const char *why = pgconf_managed_reason(kv->key);

		if (!why)
			why = backup_managed_reason(cfg, kv->key);

		if (why) {
			snprintf(err, err_size,
				 "%s: '%s' in [parameters] is managed by pgwarden (%s)", kv->origin,
				 kv->key, why);
			return PGW_EINVAL;
		}
		if (strchr(kv->value, '\n')) {
			snprintf(err, err_size, "%s: bad value for '%s' in [parameters]",
				 kv->origin, kv->key);
			return PGW_EINVAL;
		}
	}
	return PGW_OK;
}

static void fmt_mb(int64_t bytes, char *out, size_t size)
{
	int64_t mb = bytes / MB;

	if (mb >= 1024 && mb % 1024 == 0)
		snprintf(out, size, "%lldGB", (long long)(mb / 1024));
	else
		snprintf(out, size, "%lldMB", (long long)mb);
}

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

int pgconf_parameters(const struct agent_config *cfg, struct cmn_kvlist *out)
{
	int64_t mem = cfg->memory;
	int64_t max_conn = clamp64(mem / (32 * MB), 100, 500);
	char v[64];
	int rc = PGW_OK;

	memset(out, 0, sizeof(*out));
#define SET(k, val)                                                   \
	do {                                                          \
		if (rc == PGW_OK)                                     \
			rc = cmn_kvlist_set(out, k, val, "pgwarden"); \
	} while (0)
	fmt_mb(clamp64(mem / 4, 16 * MB, INT64_MAX), v, sizeof(v));
	SET("shared_buffers", v);
	fmt_mb(clamp64(mem * 3 / 4, 32 * MB, INT64_MAX), v, sizeof(v));
	SET("effective_cache_size", v);
	fmt_mb(clamp64(mem / 16, 16 * MB, 2 * GB), v, sizeof(v));
	SET("maintenance_work_mem", v);
	fmt_mb(clamp64(mem / (max_conn * 3), 4 * MB, 1 * GB), v, sizeof(v));
	SET("work_mem", v);
	snprintf(v, sizeof(v), "%lld", (long long)max_conn);
	SET("max_connections", v);
	SET("wal_level", "replica");
	SET("hot_standby", "on");
	SET("wal_log_hints", "on");
	SET("max_wal_senders", "10");
	SET("max_replication_slots", "10");
	fmt_mb(clamp64(mem / 16, 128 * MB, 8 * GB), v, sizeof(v));
	SET("wal_keep_size", v);
	SET("password_encryption", "scram-sha-256");
	SET("wal_receiver_status_interval", "1s");
	SET("wal_retrieve_retry_interval", "1s"); /* reconnect fast to a new leader */
	SET("hot_standby_feedback", "on");
	/* A client whose connection died without a FIN (a network fault, its host gone, its
	 * own tcp_user_timeout) would leave its backend idle in transaction, holding its locks,
	 * for the kernel's 2 hours: probe after 10 s idle, give up after 3 lost probes or 20 s
	 * of unacknowledged data. */
	SET("tcp_keepalives_idle", "10");
	SET("tcp_keepalives_interval", "3");
	SET("tcp_keepalives_count", "3");
	SET("tcp_user_timeout", "20s");
	if (backup_enabled(cfg))
		SET("archive_timeout", "60s"); /* the recovery point when everything is lost */
	for (size_t i = 0; i < cfg->dyn_parameters.n && rc == PGW_OK; i++)
		rc = cmn_kvlist_set(out, cfg->dyn_parameters.items[i].key,
				    cfg->dyn_parameters.items[i].value,
				    cfg->dyn_parameters.items[i].origin);
	for (size_t i = 0; i < cfg->parameters.n && rc == PGW_OK; i++)
		rc =
		    cmn_kvlist_set(out, cfg->parameters.items[i].key,
				   cfg->parameters.items[i].value, cfg->parameters.items[i].origin);
	if (rc == PGW_OK) /* last: neither etcd nor [parameters] can point them elsewhere */
		rc = backup_pg_parameters(cfg, out);
#undef SET
	if (rc != PGW_OK)
		cmn_kvlist_free(out);
	return rc;
}

/* Quotes a value for postgresql.conf. */
static void conf_quote(const char *in, char *out, size_t size)
{
	size_t j = 0;

	out[j++] = '\'';
	for (; *in && j + 3 < size; in++) {
		if (*in == '\'' || *in == '\\')
			out[j++] = *in; /* postgresql.conf: '' and \\ */
		out[j++] = *in;
	}
	out[j++] = '\'';
	out[j] = '\0';
}

static void conninfo_quote(const char *in, char *out, size_t size)
{
	size_t j = 0;

	out[j++] = '\'';
	for (; *in && j + 3 < size; in++) {
		if (*in == '\'' || *in == '\\')
			out[j++] = '\\';
		out[j++] = *in;
	}
	out[j++] = '\'';
	out[j] = '\0';
}

void pgconf_primary_conninfo(const struct agent_config *cfg, const struct pgconf_upstream *up,
			     char *out, size_t size)
{
	char host[600], user[600], pass[8400], app[600], ca[4200] = "";

	conninfo_quote(up->host, host, sizeof(host));
	conninfo_quote(cfg->replication_user, user, sizeof(user));
	conninfo_quote(cfg->pgpass, pass, sizeof(pass));
	conninfo_quote(cfg->member_name, app, sizeof(app));
	if (cfg->connect_sslrootcert) {
		char q[4150];

		conninfo_quote(cfg->connect_sslrootcert, q, sizeof(q));
		snprintf(ca, sizeof(ca), " sslrootcert=%s", q);
	}
	snprintf(out, size,
		 "host=%s port=%d user=%s passfile=%s application_name=%s connect_timeout=2 "
		 "keepalives_idle=5 keepalives_interval=2 keepalives_count=3 sslmode=%s%s",
		 host, up->port, user, pass, app,
		 cfg->connect_sslmode ? cfg->connect_sslmode : "prefer", ca);
}

static int write_in_data(const struct agent_config *cfg, const char *name, const char *text)
{
	char path[4200];

	snprintf(path, sizeof(path), "%s/%s", cfg->data_dir, name);
	if (cmn_write_file_atomic(path, text, strlen(text), 0600) != PGW_OK) {
		log_error("cannot write %s: %s", path, strerror(errno));
		return PGW_ERR;
	}
	return PGW_OK;
}

void pgconf_read_ssn(const struct agent_config *cfg, char *out, size_t size)
{
	char path[4200], *text, *line, *save = NULL;
	static const char key[] = "synchronous_standby_names = '";

	out[0] = '\0';
	snprintf(path, sizeof(path), "%s/postgresql.conf", cfg->data_dir);
	text = cmn_read_file(path, NULL);
	if (!text)
		return;
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		size_t j = 0;

		if (strncmp(line, key, sizeof(key) - 1) != 0)
			continue;
		/* Undo conf_quote: '' and \\ stand for one character. */
		for (const char *p = line + sizeof(key) - 1; *p && j + 1 < size; p++) {
			if ((*p == '\'' || *p == '\\') && p[1] == *p)
				p++;
			else if (*p == '\'')
				break;
			out[j++] = *p;
		}
		out[j] = '\0';
	}
	free(text);
}

static int write_conf(const struct agent_config *cfg, const struct pgconf_upstream *up,
		      unsigned without)
{
	struct cmn_kvlist params;
	struct cmn_buf b = {0};
	char q[9000], slot[64], listen_host[300];
	int rc;

	rc = pgconf_parameters(cfg, &params);
	if (rc == PGW_OK && (without & PGCONF_NO_ARCHIVE_LOOKUPS))
		rc = cmn_kvlist_set(&params, "restore_command", "", "pgwarden (promotion)");
	if (rc == PGW_OK && (without & PGCONF_NO_ARCHIVING))
		rc = cmn_kvlist_set(&params, "archive_command", "",
				    "pgwarden (a stop without the repository host)");
	if (rc != PGW_OK) {
		cmn_kvlist_free(&params);
		return rc;
	}
	cmn_buf_printf(&b,
		       "# Written by pgwarden for member %s: edits here are overwritten.\n"
		       "# Set parameters in the [parameters] section of the node "
		       "configuration.\n",
		       cfg->member_name);
	snprintf(listen_host, sizeof(listen_host), "%s", cfg->pg_host);
	conf_quote(listen_host, q, sizeof(q));
	cmn_buf_printf(&b, "listen_addresses = %s\nport = %d\n", q, cfg->pg_port);
	conf_quote(cfg->socket_dir, q, sizeof(q));
	cmn_buf_printf(&b, "unix_socket_directories = %s\n", q);
	conf_quote(cfg->member_name, q, sizeof(q));
	cmn_buf_printf(&b, "cluster_name = %s\n", q);
	for (size_t i = 0; i < params.n; i++) {
		conf_quote(params.items[i].value, q, sizeof(q));
		cmn_buf_printf(&b, "%s = %s\n", params.items[i].key, q);
	}
	cmn_kvlist_free(&params);
	conf_quote(cfg->synchronous_standby_names, q, sizeof(q));
	cmn_buf_printf(&b, "synchronous_standby_names = %s\n", q);
	if (up && up->host) {
		char ci[8400];

		pgconf_primary_conninfo(cfg, up, ci, sizeof(ci));
		conf_quote(ci, q, sizeof(q));
		cmn_slot_name(cfg->member_name, slot, sizeof(slot));
		cmn_buf_printf(&b, "primary_conninfo = %s\nprimary_slot_name = '%s'\n", q, slot);
	} else {
		cmn_buf_printf(&b, "primary_conninfo = ''\nprimary_slot_name = ''\n");
	}
	cmn_buf_printf(&b, "recovery_target_timeline = 'latest'\n");
	if (!b.data)
		return PGW_ENOMEM;
	rc = write_in_data(cfg, "postgresql.conf", b.data);
	cmn_buf_free(&b);
	/* Leftovers of ALTER SYSTEM or pg_basebackup -R would override our settings. */
	if (rc == PGW_OK)
		rc = write_in_data(cfg, "postgresql.auto.conf",
				   "# Managed by pgwarden: use [parameters] instead.\n");
	return rc;
}

int pgconf_write_conf(const struct agent_config *cfg, const struct pgconf_upstream *up)
{
	return write_conf(cfg, up, 0);
}

int pgconf_write_conf_without(const struct agent_config *cfg, const struct pgconf_upstream *up,
			      unsigned flags)
{
	return write_conf(cfg, up, flags);
}

bool pgconf_restore_command_off(const struct agent_config *cfg)
{
	char path[4200];
	char *text;
	bool off;

	snprintf(path, sizeof(path), "%s/postgresql.conf", cfg->data_dir);
	text = cmn_read_file(path, NULL);
	off = text && strstr(text, "\nrestore_command = ''\n");
	free(text);
	return off;
}

int pgconf_write_hba(const struct agent_config *cfg)
{
	struct cmn_buf b = {0};
	int rc;

	cmn_buf_printf(&b, "# Written by pgwarden: edits here are overwritten.\n"
			   "# TYPE  DATABASE     USER  ADDRESS  METHOD\n");
	/* First match wins: the operator's lines come before the defaults. */
	if (cfg->pg_hba_extra) {
		char *copy = strdup(cfg->pg_hba_extra), *save = NULL;

		if (!copy) {
			cmn_buf_free(&b);
			return PGW_ENOMEM;
		}
		for (char *line = strtok_r(copy, ";", &save); line;
		     line = strtok_r(NULL, ";", &save))
			cmn_buf_printf(&b, "%s\n", line);
		free(copy);
	}
	cmn_buf_printf(&b,
		       "local   all          all            scram-sha-256\n"
		       /* pg_basebackup or pgBackRest on the member itself, as the superuser */
		       "local   replication  all            scram-sha-256\n"
		       "host    replication  all   127.0.0.1/32  scram-sha-256\n"
		       "host    replication  all   ::1/128  scram-sha-256\n"
		       "host    replication  %s    all      scram-sha-256\n"
		       "host    all          all   all      scram-sha-256\n",
		       cfg->replication_user);
	if (!b.data)
		return PGW_ENOMEM;
	rc = write_in_data(cfg, "pg_hba.conf", b.data);
	cmn_buf_free(&b);
	return rc;
}

static void pgpass_escape(const char *in, char *out, size_t size)
{
	size_t j = 0;

	for (; *in && j + 2 < size; in++) {
		if (*in == ':' || *in == '\\')
			out[j++] = '\\';
		out[j++] = *in;
	}
	out[j] = '\0';
}

int pgconf_write_pgpass(const struct agent_config *cfg)
{
	char su[600], sp[2100], ru[600], rp[2100], text[6000];

	pgpass_escape(cfg->superuser, su, sizeof(su));
	pgpass_escape(cfg->superuser_password, sp, sizeof(sp));
	pgpass_escape(cfg->replication_user, ru, sizeof(ru));
	pgpass_escape(cfg->replication_password, rp, sizeof(rp));
	snprintf(text, sizeof(text), "*:*:*:%s:%s\n*:*:*:%s:%s\n", su, sp, ru, rp);
	if (cmn_write_file_atomic(cfg->pgpass, text, strlen(text), 0600) != PGW_OK) {
		log_error("cannot write the passfile %s: %s", cfg->pgpass, strerror(errno));
		return PGW_ERR;
	}
	return PGW_OK;
}

int pgconf_set_standby_signal(const struct agent_config *cfg, bool on)
{
	char path[4200];

	snprintf(path, sizeof(path), "%s/standby.signal", cfg->data_dir);
	if (on)
		return cmn_write_file_atomic(path, "", 0, 0600) == PGW_OK ? PGW_OK : PGW_ERR;
	if (unlink(path) != 0 && errno != ENOENT)
		return PGW_ERR;
	return PGW_OK;
}

bool pgconf_has_standby_signal(const struct agent_config *cfg)
{
	char path[4200];
	struct stat st;

	snprintf(path, sizeof(path), "%s/standby.signal", cfg->data_dir);
	return stat(path, &st) == 0;
}
