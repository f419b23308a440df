#include "node/pgctl.h"
#include "cluster/dyncfg.h"
#include "node/defaults.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/timeutil.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ARGV_MAX 32

static char argv_store[ARGV_MAX][4200];
static const char *argv_ptrs[ARGV_MAX + 1];
static const char *env_ptrs[4];

/* Collects printf-formatted arguments into the static argv. */
static int argc_cur;

static void argv_reset(void)
{
	argc_cur = 0;
	argv_ptrs[0] = NULL;
}

static void argv_add(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void argv_add(const char *fmt, ...)
{
	va_list ap;

	if (argc_cur >= ARGV_MAX)
		return;
	va_start(ap, fmt);
	vsnprintf(argv_store[argc_cur], sizeof(argv_store[0]), fmt, ap);
	va_end(ap);
	argv_ptrs[argc_cur] = argv_store[argc_cur];
	argc_cur++;
	argv_ptrs[argc_cur] = NULL;
}

void pgctl_init(struct pgctl *p, const struct agent_config *cfg)
{
	memset(p, 0, sizeof(*p));
	p->cfg = cfg;
	snprintf(p->pgpass_env, sizeof(p->pgpass_env), "PGPASSFILE=%s", cfg->pgpass);
	snprintf(p->lcall_env, sizeof(p->lcall_env), "LC_ALL=C");
}

void pgctl_close(struct pgctl *p)
{
	if (p->conn)
		PQfinish(p->conn);
	p->conn = NULL;
}

const char *const *pgctl_env(struct pgctl *p)
{
	env_ptrs[0] = p->pgpass_env;
	env_ptrs[1] = p->lcall_env;
	env_ptrs[2] = NULL;
	return env_ptrs;
}

void pgctl_log_path(const struct pgctl *p, char *out, size_t size)
{
	char dir[4096];
	char *slash;

	snprintf(dir, sizeof(dir), "%s", p->cfg->socket_dir);
	slash = strrchr(dir, '/');
	if (slash && slash != dir)
		*slash = '\0';
	snprintf(out, size, "%s/postgresql.log", dir);
}

static pid_t read_postmaster_pid(const char *data_dir)
{
	char path[4200];

	snprintf(path, sizeof(path), "%s/postmaster.pid", data_dir);
	return cmn_read_pidfile(path);
}

static void conninfo_escape(const char *in, char *out, size_t size)
{
	size_t j = 0;

	for (; *in && j + 2 < size; in++) {
		if (*in == '\'' || *in == '\\')
			out[j++] = '\\';
		out[j++] = *in;
	}
	out[j] = '\0';
}

static PGconn *connect_to(struct pgctl *p, const char *host, int port)
{
	char conninfo[8192], h[1024], pass[4200], user[512], ca[4200] = "";
	const char *key = "passfile";
	/* Our own PostgreSQL through its socket: no TLS there. Others: as configured. */
	bool remote = host[0] != '/';

	/* The CLI may have no passfile (another host): the configured password then. */
	if (p->cfg->pgpass) {
		conninfo_escape(p->cfg->pgpass, pass, sizeof(pass));
	} else {
		key = "password";
		conninfo_escape(p->cfg->superuser_password ? p->cfg->superuser_password : "", pass,
				sizeof(pass));
	}
	conninfo_escape(host, h, sizeof(h));
	conninfo_escape(p->cfg->superuser ? p->cfg->superuser : "postgres", user, sizeof(user));
	if (remote && p->cfg->connect_sslrootcert) {
		char q[4150];

		conninfo_escape(p->cfg->connect_sslrootcert, q, sizeof(q));
		snprintf(ca, sizeof(ca), " sslrootcert='%s'", q);
	}
	snprintf(conninfo, sizeof(conninfo),
		 "host='%s' port=%d user='%s' dbname=postgres %s='%s' connect_timeout=%d "
		 "application_name=pgwarden options='-c statement_timeout=%d' sslmode=%s%s",
		 h, port, user, key, pass, AGENT_PG_CONNECT_TIMEOUT_S,
		 AGENT_PG_STATEMENT_TIMEOUT_MS,
		 remote && p->cfg->connect_sslmode ? p->cfg->connect_sslmode : "prefer", ca);
	return PQconnectdb(conninfo);
}

/*
 * PQexec with a client-side deadline: statement_timeout cannot help when the
 * server itself hangs (a backend stuck on I/O, a stopped postmaster), and the HA
 * loop must never block. Returns the last result, or NULL on timeout (the query
 * is cancelled; the caller drops the connection).
 */
static PGresult *exec_deadline(PGconn *c, const char *sql)
{
	int64_t deadline = cmn_now_ms() + AGENT_PG_STATEMENT_TIMEOUT_MS + 1000;
	PGresult *last = NULL, *r;

	if (!PQsendQuery(c, sql))
		return PQmakeEmptyPGresult(c, PGRES_FATAL_ERROR);
	for (;;) {
		while (!PQisBusy(c)) {
			r = PQgetResult(c);
			if (!r)
				return last ? last : PQmakeEmptyPGresult(c, PGRES_FATAL_ERROR);
			PQclear(last);
			last = r;
		}
		int64_t left = deadline - cmn_now_ms();
		struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};

		if (left <= 0 || pfd.fd < 0)
			break;
		if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
			break;
		if (!PQconsumeInput(c))
			break;
	}
	PQclear(last);
	PGcancel *cancel = PQgetCancel(c);
	char err[256];

	if (cancel) {
		(void)PQcancel(cancel, err, sizeof(err));
		PQfreeCancel(cancel);
	}
	log_warning("PostgreSQL did not answer within %d ms: query abandoned",
		    AGENT_PG_STATEMENT_TIMEOUT_MS + 1000);
	return NULL;
}

static PGconn *local_conn(struct pgctl *p)
{
	if (p->conn && PQstatus(p->conn) == CONNECTION_OK)
		return p->conn;
	if (p->conn)
		PQfinish(p->conn);
	p->conn = connect_to(p, p->cfg->socket_dir, p->cfg->pg_port);
	if (PQstatus(p->conn) != CONNECTION_OK) {
		log_debug("local PostgreSQL not reachable: %s", PQerrorMessage(p->conn));
		PQfinish(p->conn);
		p->conn = NULL;
	}
	return p->conn;
}

void pgctl_probe(struct pgctl *p, struct pgctl_probe *out)
{
	char path[4200];
	struct stat st;
	PGconn *c;
	PGresult *r;

	memset(out, 0, sizeof(*out));
	snprintf(path, sizeof(path), "%s/PG_VERSION", p->cfg->data_dir);
	out->data_valid = stat(path, &st) == 0;
	if (!out->data_valid) {
		pgctl_close(p);
		return;
	}
	snprintf(path, sizeof(path), "%s/standby.signal", p->cfg->data_dir);
	out->standby_signal = stat(path, &st) == 0;
	out->postmaster_pid = pgctl_live_postmaster(p->cfg->data_dir);
	if (!out->postmaster_pid) {
		pgctl_close(p);
		return;
	}
	c = local_conn(p);
	if (!c)
		return;
	r = exec_deadline(
	    c, "SELECT pg_is_in_recovery(),"
	       " CASE WHEN pg_is_in_recovery() THEN NULL"
	       "  ELSE ('x' || substr(pg_walfile_name(pg_current_wal_flush_lsn()), 1, 8))"
	       "::bit(32)::int END,"
	       " CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_flush_lsn() END,"
	       " pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn(),"
	       " r.received_tli, r.status, r.sender_host || ':' || r.sender_port,"
	       " current_setting('server_version_num')::int,"
	       " extract(epoch from pg_postmaster_start_time())::bigint,"
	       " (SELECT timeline_id FROM pg_control_checkpoint()),"
	       " (SELECT count(*) FROM pg_settings WHERE pending_restart),"
	       " CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END,"
	       " extract(epoch from pg_last_xact_replay_timestamp())"
	       " FROM (SELECT 1) AS one LEFT JOIN pg_stat_wal_receiver r ON true");
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
		log_debug("probe query failed: %s", PQerrorMessage(c));
		PQclear(r);
		pgctl_close(p);
		return;
	}
	out->accepting = true;
	out->in_recovery = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	if (!out->in_recovery) {
		out->timeline = atoi(PQgetvalue(r, 0, 1));
		if (cmn_parse_lsn(PQgetvalue(r, 0, 2), &out->lsn) != PGW_OK)
			out->lsn = 0;
	} else {
		if (!PQgetisnull(r, 0, 3) &&
		    cmn_parse_lsn(PQgetvalue(r, 0, 3), &out->receive_lsn) != PGW_OK)
			out->receive_lsn = 0;
		if (!PQgetisnull(r, 0, 4) &&
		    cmn_parse_lsn(PQgetvalue(r, 0, 4), &out->replay_lsn) != PGW_OK)
			out->replay_lsn = 0;
		out->lsn = out->receive_lsn > out->replay_lsn ? out->receive_lsn : out->replay_lsn;
		out->timeline =
		    PQgetisnull(r, 0, 5) ? atoi(PQgetvalue(r, 0, 10)) : atoi(PQgetvalue(r, 0, 5));
		out->streaming =
		    !PQgetisnull(r, 0, 6) && strcmp(PQgetvalue(r, 0, 6), "streaming") == 0;
		if (!PQgetisnull(r, 0, 7))
			snprintf(out->upstream, sizeof(out->upstream), "%s", PQgetvalue(r, 0, 7));
		out->replay_paused = strcmp(PQgetvalue(r, 0, 12), "t") == 0;
		out->replayed_at = PQgetisnull(r, 0, 13) ? 0 : strtod(PQgetvalue(r, 0, 13), NULL);
	}
	out->server_version = atoi(PQgetvalue(r, 0, 8));
	out->start_time = atoll(PQgetvalue(r, 0, 9));
	out->pending_restart = atoi(PQgetvalue(r, 0, 11)) > 0;
	PQclear(r);
}

bool pgctl_maybe_primary(const struct pgctl_probe *pg)
{
	if (!pg->postmaster_pid)
		return false;
	return pg->accepting ? !pg->in_recovery : !pg->standby_signal;
}

int pgctl_exec(struct pgctl *p, const char *sql)
{
	PGconn *c = local_conn(p);
	PGresult *r;
	int rc = PGW_OK;

	if (!c) {
		log_warning("cannot connect to the local PostgreSQL to run a statement");
		return PGW_ENET;
	}
	r = exec_deadline(c, sql);
	if (!r) {
		pgctl_close(p); /* a query is still running on it */
		return PGW_ETIMEOUT;
	}
	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
		log_warning("statement failed: %s", PQerrorMessage(c));
		rc = PGW_ERR;
	}
	PQclear(r);
	return rc;
}

static char *first_value(PGconn *c, const char *sql)
{
	PGresult *r = exec_deadline(c, sql);
	char *v = NULL;

	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && PQnfields(r) > 0 &&
	    !PQgetisnull(r, 0, 0))
		v = strdup(PQgetvalue(r, 0, 0));
	else if (PQresultStatus(r) != PGRES_TUPLES_OK)
		log_warning("query failed: %s", PQerrorMessage(c));
	PQclear(r);
	return v;
}

char *pgctl_query_value(struct pgctl *p, const char *sql)
{
	PGconn *c = local_conn(p);
	char *v = c ? first_value(c, sql) : NULL;

	if (!v && p->conn && PQtransactionStatus(p->conn) == PQTRANS_ACTIVE)
		pgctl_close(p); /* abandoned after its deadline */
	return v;
}

char *pgctl_query_remote(struct pgctl *p, const char *host, int port, const char *sql)
{
	PGconn *c = connect_to(p, host, port);
	char *v = NULL;

	if (PQstatus(c) == CONNECTION_OK)
		v = first_value(c, sql);
	else
		log_warning("cannot connect to %s:%d: %s", host, port, PQerrorMessage(c));
	PQfinish(c);
	return v;
}

int pgctl_check_parameters(struct pgctl *p, const char *host, int port,
			   const struct cmn_kvlist *params, char *err, size_t err_size)
{
	PGconn *c;
	PGresult *r;
	int rc = PGW_OK;

	if (params->n == 0)
		return PGW_OK;
	c = connect_to(p, host, port);
	if (PQstatus(c) != CONNECTION_OK) {
		snprintf(err, err_size,
			 "cannot connect to PostgreSQL at %s:%d to check the parameters: %s", host,
			 port, PQerrorMessage(c));
		PQfinish(c);
		return PGW_ENET;
	}
	r = exec_deadline(
	    c, "SELECT name, vartype, coalesce(unit, ''), coalesce(min_val, ''),"
	       " coalesce(max_val, ''), coalesce(array_to_string(enumvals, E'\\x1f'), ''),"
	       " context FROM pg_settings");
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		snprintf(err, err_size, "cannot read pg_settings on %s:%d: %s", host, port,
			 PQerrorMessage(c));
		rc = PGW_ENET;
	}
	for (size_t i = 0; rc == PGW_OK && i < params->n; i++) {
		const struct cmn_kv *kv = &params->items[i];
		int row = -1;

		for (int j = 0; j < PQntuples(r) && row < 0; j++)
			if (strcmp(PQgetvalue(r, j, 0), kv->key) == 0)
				row = j;
		if (row < 0) {
			/* "ext.name": a placeholder PostgreSQL accepts for extensions. */
			if (!strchr(kv->key, '.')) {
				snprintf(err, err_size, "unrecognized PostgreSQL parameter \"%s\"",
					 kv->key);
				rc = PGW_EINVAL;
			}
			continue;
		}
		struct dyncfg_pg_setting s = {
		    .name = kv->key,
		    .vartype = PQgetvalue(r, row, 1),
		    .unit = PQgetvalue(r, row, 2),
		    .min_val = PQgetvalue(r, row, 3),
		    .max_val = PQgetvalue(r, row, 4),
		    .enumvals = PQgetvalue(r, row, 5),
		    .context = PQgetvalue(r, row, 6),
		};

		rc = dyncfg_check_pg_value(&s, kv->value, err, err_size);
	}
	PQclear(r);
	PQfinish(c);
	return rc;
}

static const struct {
	const char *text;
	enum pgctl_cd_state state;
} cd_states[] = {
    {"starting up", PGCTL_CD_STARTING_UP},
    {"shut down", PGCTL_CD_SHUT_DOWN},
    {"shut down in recovery", PGCTL_CD_SHUT_DOWN_IN_RECOVERY},
    {"shutting down", PGCTL_CD_SHUTTING_DOWN},
    {"in crash recovery", PGCTL_CD_IN_CRASH_RECOVERY},
    {"in archive recovery", PGCTL_CD_IN_ARCHIVE_RECOVERY},
    {"in production", PGCTL_CD_IN_PRODUCTION},
};

const char *pgctl_cd_state_name(enum pgctl_cd_state s)
{
	for (size_t i = 0; i < sizeof(cd_states) / sizeof(cd_states[0]); i++)
		if (cd_states[i].state == s)
			return cd_states[i].text;
	return "unknown";
}

/* Value after "label:" on its line, trimmed; NULL when absent. */
static const char *cd_field(const char *text, const char *label, char *out, size_t size)
{
	const char *p = text;
	size_t l = strlen(label);

	while (p && *p) {
		if (strncmp(p, label, l) == 0 && p[l] == ':') {
			const char *v = p + l + 1;
			size_t n = 0;

			while (*v == ' ' || *v == '\t')
				v++;
			while (v[n] && v[n] != '\n')
				n++;
			if (n >= size)
				n = size - 1;
			memcpy(out, v, n);
			out[n] = '\0';
			return out;
		}
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return NULL;
}

int pgctl_controldata(struct pgctl *p, struct pgctl_controldata *out)
{
	char bin[4200], v[256];
	struct cmn_buf buf = {0};
	int code = 0;
	const char *argv[4];

	memset(out, 0, sizeof(*out));
	snprintf(bin, sizeof(bin), "%s/pg_controldata", p->cfg->bin_dir);
	argv[0] = bin;
	argv[1] = "-D";
	argv[2] = p->cfg->data_dir;
	argv[3] = NULL;
	if (cmn_proc_run(argv, pgctl_env(p), 10000, &buf, &code) != PGW_OK || code != 0) {
		log_warning("pg_controldata failed (exit %d): %s", code, buf.data ? buf.data : "");
		cmn_buf_free(&buf);
		return PGW_ERR;
	}
	if (cd_field(buf.data, "Database system identifier", v, sizeof(v)))
		snprintf(out->sysid, sizeof(out->sysid), "%.31s", v);
	if (cd_field(buf.data, "Database cluster state", v, sizeof(v)))
		for (size_t i = 0; i < sizeof(cd_states) / sizeof(cd_states[0]); i++)
			if (strcmp(v, cd_states[i].text) == 0)
				out->state = cd_states[i].state;
	if (cd_field(buf.data, "Latest checkpoint location", v, sizeof(v)) &&
	    cmn_parse_lsn(v, &out->checkpoint_lsn) != PGW_OK)
		out->checkpoint_lsn = 0;
	if (cd_field(buf.data, "Latest checkpoint's TimeLineID", v, sizeof(v)))
		out->checkpoint_tli = atoi(v);
	if (cd_field(buf.data, "Minimum recovery ending location", v, sizeof(v)) &&
	    cmn_parse_lsn(v, &out->min_recovery_lsn) != PGW_OK)
		out->min_recovery_lsn = 0;
	if (cd_field(buf.data, "Min recovery ending loc's timeline", v, sizeof(v)))
		out->min_recovery_tli = atoi(v);
	cmn_buf_free(&buf);
	char label[4200];
	struct stat st;

	snprintf(label, sizeof(label), "%s/backup_label", p->cfg->data_dir);
	out->backup_label = stat(label, &st) == 0;
	return out->sysid[0] ? PGW_OK : PGW_EPROTO;
}

const char *const *pgctl_argv_initdb(struct pgctl *p, const char *pwfile)
{
	const struct agent_config *c = p->cfg;

	argv_reset();
	argv_add("%s/initdb", c->bin_dir);
	argv_add("-D");
	argv_add("%s", c->data_dir);
	argv_add("--data-checksums");
	argv_add("--username=%s", c->superuser);
	argv_add("--pwfile=%s", pwfile);
	argv_add("--auth=scram-sha-256");
	argv_add("--encoding=UTF8");
	argv_add("--locale=C.UTF-8");
	return argv_ptrs;
}

const char *const *pgctl_argv_start(struct pgctl *p)
{
	char log[4200];

	pgctl_log_path(p, log, sizeof(log));
	argv_reset();
	argv_add("%s/pg_ctl", p->cfg->bin_dir);
	argv_add("start");
	argv_add("-D");
	argv_add("%s", p->cfg->data_dir);
	/* Wait until it accepts connections, but not for ever: a standby without an
	 * upstream may never become consistent. The HA loop sees "starting" then. */
	argv_add("-w");
	argv_add("-t");
	argv_add("%d", AGENT_PG_START_WAIT_S);
	argv_add("-s");
	argv_add("-l");
	argv_add("%s", log);
	return argv_ptrs;
}

const char *const *pgctl_argv_stop(struct pgctl *p, const char *mode)
{
	argv_reset();
	argv_add("%s/pg_ctl", p->cfg->bin_dir);
	argv_add("stop");
	argv_add("-D");
	argv_add("%s", p->cfg->data_dir);
	argv_add("-m");
	argv_add("%s", mode);
	argv_add("-w");
	argv_add("-t");
	argv_add("%d", AGENT_PG_STOP_TIMEOUT_S);
	return argv_ptrs;
}

const char *const *pgctl_argv_promote(struct pgctl *p)
{
	argv_reset();
	argv_add("%s/pg_ctl", p->cfg->bin_dir);
	argv_add("promote");
	argv_add("-D");
	argv_add("%s", p->cfg->data_dir);
	argv_add("-w");
	argv_add("-t");
	argv_add("%d", AGENT_PG_START_TIMEOUT_S);
	return argv_ptrs;
}

/* " sslmode=... [sslrootcert='...']" toward another member, as [postgresql] says. */
static void ssl_conninfo(const struct pgctl *p, char *out, size_t size)
{
	char ca[4150] = "";

	if (p->cfg->connect_sslrootcert)
		conninfo_escape(p->cfg->connect_sslrootcert, ca, sizeof(ca));
	snprintf(out, size, " sslmode=%s%s%s%s",
		 p->cfg->connect_sslmode ? p->cfg->connect_sslmode : "prefer",
		 ca[0] ? " sslrootcert='" : "", ca, ca[0] ? "'" : "");
}

const char *const *pgctl_argv_basebackup(struct pgctl *p, const char *target_dir, const char *host,
					 int port)
{
	char ssl[4400];

	argv_reset();
	argv_add("%s/pg_basebackup", p->cfg->bin_dir);
	argv_add("-D");
	argv_add("%s", target_dir);
	argv_add("-h");
	argv_add("%s", host);
	argv_add("-p");
	argv_add("%d", port);
	argv_add("-U");
	argv_add("%s", p->cfg->replication_user);
	argv_add("-X");
	argv_add("stream");
	argv_add("-c");
	argv_add("fast");
	argv_add("-w");
	argv_add("--no-password");
	ssl_conninfo(p, ssl, sizeof(ssl));
	argv_add("-d");
	argv_add("%s", ssl + 1);
	return argv_ptrs;
}

const char *const *pgctl_argv_rewind(struct pgctl *p, const char *host, int port)
{
	char h[1024], user[512], pass[4200], ssl[4400];

	conninfo_escape(host, h, sizeof(h));
	conninfo_escape(p->cfg->superuser, user, sizeof(user));
	conninfo_escape(p->cfg->pgpass, pass, sizeof(pass));
	argv_reset();
	argv_add("%s/pg_rewind", p->cfg->bin_dir);
	argv_add("-D");
	argv_add("%s", p->cfg->data_dir);
	ssl_conninfo(p, ssl, sizeof(ssl));
	argv_add("--source-server=host='%s' port=%d user='%s' dbname=postgres passfile='%s' "
		 "connect_timeout=%d%s",
		 h, port, user, pass, AGENT_PG_CONNECT_TIMEOUT_S, ssl);
	return argv_ptrs;
}

/*
 * Whether pid is a postgres process working in the data directory real_dir (the
 * postmaster and its children chdir there). A process whose working directory we may
 * not read counts as one, so that doubt never removes a live server's lock file.
 */
static bool postgres_in(pid_t pid, const char *real_dir)
{
	char path[64], comm[32] = "", cwd[PATH_MAX];
	ssize_t n;
	FILE *f;

	if (pid <= 0 || pid == getpid() || !cmn_pid_alive(pid))
		return false;
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	if (!fgets(comm, sizeof(comm), f))
		comm[0] = '\0';
	fclose(f);
	comm[strcspn(comm, "\n")] = '\0';
	if (strcmp(comm, "postgres") != 0)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/cwd", (int)pid);
	n = readlink(path, cwd, sizeof(cwd) - 1);
	if (n < 0)
		return errno != ENOENT; /* gone meanwhile: not alive */
	cwd[n] = '\0';
	return !real_dir || strcmp(cwd, real_dir) == 0;
}

/*
 * The postmaster named in postmaster.pid, if that process is a postgres working in this
 * data directory; 0 otherwise. A stale file (a crash, a lost host) may name any process
 * once PIDs are reused: in a container, where they start from 1 again, the agent itself,
 * its fence or a pgBackRest it runs.
 */
pid_t pgctl_live_postmaster(const char *data_dir)
{
	char real[PATH_MAX];
	pid_t pid = read_postmaster_pid(data_dir);

	return postgres_in(pid, realpath(data_dir, real) ? real : NULL) ? pid : 0;
}

struct working_in {
	const char *dir;
	bool found;
};

/* cmn_proc_each: stops at a postgres working in w->dir. */
static bool find_working_in(pid_t pid, void *arg)
{
	struct working_in *w = arg;

	w->found = postgres_in(pid, w->dir);
	return !w->found;
}

/* The first bytes of path (its pid line and more), "" when it cannot be read. */
static void read_head(const char *path, char *out, size_t size)
{
	FILE *f = fopen(path, "r");
	size_t n = 0;

	if (f) {
		n = fread(out, 1, size - 1, f);
		fclose(f);
	}
	out[n] = '\0';
}

int pgctl_remove_stale_pidfile(const char *data_dir)
{
	char real[PATH_MAX], path[PATH_MAX + 32], before[256], after[256];
	struct working_in w = {.dir = real, .found = false};
	struct stat st;

	/* Whatever it holds: a postmaster's pid, a single-user backend's negated one (a
	 * host lost during pg_rewind's crash recovery), nothing (a crash while writing). */
	if (!realpath(data_dir, real))
		return PGW_OK;
	snprintf(path, sizeof(path), "%s/postmaster.pid", real);
	if (lstat(path, &st) != 0)
		return PGW_OK;
	read_head(path, before, sizeof(before));
	/* PostgreSQL's own interlock, the shared memory its backends still hold, is read
	 * from this file: it goes only when no postgres at all works in the directory. A
	 * postmaster creating it is in the directory already. */
	if (cmn_proc_each(find_working_in, &w) != PGW_OK || w.found)
		return PGW_ERR;
	/* Not rewritten meanwhile (a server that started during the scan). */
	read_head(path, after, sizeof(after));
	if (strcmp(before, after) != 0)
		return PGW_ERR;
	if (unlink(path) != 0 && errno != ENOENT)
		return PGW_ERR;
	before[strcspn(before, "\n")] = '\0';
	log_warning("removed a stale postmaster.pid (pid '%s'): no postgres works in %s (a crash "
		    "left the file; its pid may have been reused since)",
		    before, real);
	return PGW_OK;
}

int pgctl_signal_stop(struct pgctl *p, const char *mode)
{
	pid_t pid = pgctl_live_postmaster(p->cfg->data_dir);
	int sig = strcmp(mode, "smart") == 0	   ? SIGTERM
		  : strcmp(mode, "immediate") == 0 ? SIGQUIT
						   : SIGINT;

	if (pid <= 0 || kill(pid, sig) != 0)
		return PGW_ERR;
	return PGW_OK;
}

int pgctl_signal_promote(struct pgctl *p)
{
	pid_t pid = pgctl_live_postmaster(p->cfg->data_dir);
	char path[4200];
	int fd;

	if (pid <= 0)
		return PGW_ERR;
	snprintf(path, sizeof(path), "%s/promote", p->cfg->data_dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return PGW_ERR;
	close(fd);
	if (kill(pid, SIGUSR1) != 0) {
		unlink(path);
		return PGW_ERR;
	}
	return PGW_OK;
}

int pgctl_reload(struct pgctl *p)
{
	pid_t pid = pgctl_live_postmaster(p->cfg->data_dir);

	if (pid <= 0) {
		log_warning("cannot reload PostgreSQL: no postmaster runs");
		return PGW_ERR;
	}
	if (kill(pid, SIGHUP) != 0) {
		log_warning("cannot reload PostgreSQL (postmaster pid %d): %s", (int)pid,
			    strerror(errno));
		return PGW_ERR;
	}
	return PGW_OK;
}

static int check_parameters(void *arg, const char *host, int port, const struct cmn_kvlist *changed,
			    char *err, size_t err_size)
{
	return pgctl_check_parameters(arg, host, port, changed, err, err_size);
}

struct confedit_checks pgctl_confedit_checks(struct pgctl *p)
{
	struct confedit_checks c = {
	    .rules = &agent_config_dyncfg_rules, .check_params = check_parameters, .arg = p};

	return c;
}
