/*
 * pgwarden up --with-prometheus: Debian's Prometheus on the cluster's folder, scraping
 * every agent's and the proxy's /metrics, with the alert rules of
 * deploy/monitoring/alerts.yml (built into the binary).
 *
 *   DIR/prometheus/prometheus.yml   the scrape configuration (written by each up)
 *   DIR/prometheus/alerts.yml       the rules
 *   DIR/prometheus/port             its port (so a later up and down find it)
 *   DIR/prometheus/data/            its time series (kept 2 days)
 *   DIR/prometheus/prometheus.log, prometheus.pid
 *
 * Once asked for, it is part of the folder: a later `up` starts it again, `down` stops it.
 */
#include "cli/local.h"
#include "common/proc.h"
#include "common/util.h"

#include "alerts_yml.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PROMETHEUS_BIN	    "/usr/bin/prometheus"
#define PROMETHEUS_EXPECT   " --config.file="
#define PROMETHEUS_INTERVAL "1s" /* a local cluster: cheap, and alerts come at once */

static void prom_path(const struct layout *l, char *out, size_t size, const char *name)
{
	snprintf(out, size, "%s/prometheus%s%s", l->dir, name[0] ? "/" : "", name);
}

/* The port of an earlier --with-prometheus (0: none). */
static int saved_port(const struct layout *l)
{
	char path[PATH_MAX + 32];
	char *text;
	int port = 0;

	prom_path(l, path, sizeof(path), "port");
	text = cmn_read_file(path, NULL);
	if (text) {
		char *end;
		long v = strtol(text, &end, 10);

		while (*end == '\n' || *end == ' ')
			end++;
		if (end != text && !*end && v >= 1024 && v <= 65000)
			port = (int)v;
		else
			fprintf(stderr, "pgwarden: %s is not a port: Prometheus left alone\n",
				path);
	}
	free(text);
	return port;
}

static int write_text(const char *path, const char *text)
{
	if (cmn_write_file_atomic(path, text, strlen(text), 0644) != PGW_OK) {
		fprintf(stderr, "pgwarden: cannot write %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

static int write_config(const struct layout *l)
{
	char path[PATH_MAX + 32];
	struct cmn_buf b = {0};
	char cluster[2 * sizeof(l->cluster)];
	size_t n = 0;
	int rc;

	/* The cluster's name in a double-quoted YAML string. */
	for (const char *ch = l->cluster; *ch && n + 2 < sizeof(cluster); ch++) {
		if ((unsigned char)*ch < 0x20)
			continue;
		if (*ch == '"' || *ch == '\\')
			cluster[n++] = '\\';
		cluster[n++] = *ch;
	}
	cluster[n] = '\0';
	(void)cmn_buf_printf(&b,
			     "# Written by pgwarden up --with-prometheus (each run): edit "
			     "deploy/monitoring/ instead.\n"
			     "global:\n  scrape_interval: %s\n  evaluation_interval: %s\n"
			     "  external_labels:\n    cluster: \"%s\"\n"
			     "rule_files:\n  - alerts.yml\n"
			     "scrape_configs:\n"
			     "  - job_name: pgwarden-agent\n    scheme: %s\n",
			     PROMETHEUS_INTERVAL, PROMETHEUS_INTERVAL, cluster, l->api_scheme);
	if (strcmp(l->api_scheme, "https") == 0) /* a local cluster's own certificates */
		(void)cmn_buf_printf(&b, "    tls_config:\n      insecure_skip_verify: true\n");
	(void)cmn_buf_printf(&b, "    static_configs:\n      - targets: [");
	for (int i = 0; i < N_NODES; i++)
		(void)cmn_buf_printf(&b, "%s\"127.0.0.1:%d\"", i ? ", " : "", l->port[LP_API] + i);
	(void)cmn_buf_printf(&b,
			     "]\n  - job_name: pgwarden-proxy\n    static_configs:\n"
			     "      - targets: [\"127.0.0.1:%d\"]\n",
			     l->port[LP_HTTP]);
	if (!b.data) {
		fprintf(stderr, "pgwarden: out of memory\n");
		return -1;
	}
	prom_path(l, path, sizeof(path), "prometheus.yml");
	rc = write_text(path, b.data);
	cmn_buf_free(&b);
	if (rc == 0) {
		prom_path(l, path, sizeof(path), "alerts.yml");
		rc = write_text(path, pgw_alerts_yml);
	}
	return rc;
}

int start_prometheus(const struct layout *l, bool asked, int port)
{
	char dir[PATH_MAX + 32], data[PATH_MAX + 32], cfg[PATH_MAX + 32], log[PATH_MAX + 32],
	    pidf[PATH_MAX + 32], arg_cfg[PATH_MAX + 64], arg_data[PATH_MAX + 64], arg_web[64],
	    text[16];
	int saved = saved_port(l);
	struct stat st;

	if (!asked && !saved)
		return 0; /* never asked for in this folder */
	if (!port)
		port = saved ? saved : 9090;
	prom_path(l, pidf, sizeof(pidf), "prometheus.pid");
	pid_t running = running_pid(pidf, PROMETHEUS_EXPECT);

	if (running) {
		/* Running already: the configuration and rules as this binary has them. */
		if (write_config(l) == 0)
			(void)kill(running, SIGHUP);
		if (port != saved)
			fprintf(
			    stderr,
			    "pgwarden: Prometheus already runs on port %d: stop it (pgwarden down) "
			    "to move it\n",
			    saved);
		return 0;
	}
	if (stat(PROMETHEUS_BIN, &st) != 0) {
		fprintf(stderr,
			"pgwarden: --with-prometheus needs Debian's Prometheus (%s): apt "
			"install prometheus\n",
			PROMETHEUS_BIN);
		return -1;
	}
	if (port_in_use(port)) {
		fprintf(
		    stderr,
		    "pgwarden: port %d (Prometheus) is already in use by another program (Debian's "
		    "prometheus service? systemctl disable --now prometheus): stop it or choose "
		    "another with --prometheus-port\n",
		    port);
		return -1;
	}
	prom_path(l, dir, sizeof(dir), "");
	prom_path(l, data, sizeof(data), "data");
	if (make_dir(dir, 0755) != 0 || make_dir(data, 0755) != 0 || write_config(l) != 0)
		return -1;
	snprintf(text, sizeof(text), "%d\n", port);
	prom_path(l, cfg, sizeof(cfg), "port");
	if (write_text(cfg, text) != 0)
		return -1;
	prom_path(l, cfg, sizeof(cfg), "prometheus.yml");
	prom_path(l, log, sizeof(log), "prometheus.log");
	snprintf(arg_cfg, sizeof(arg_cfg), "--config.file=%s", cfg);
	snprintf(arg_data, sizeof(arg_data), "--storage.tsdb.path=%s", data);
	snprintf(arg_web, sizeof(arg_web), "--web.listen-address=127.0.0.1:%d", port);
	const char *argv[] = {
	    PROMETHEUS_BIN, arg_cfg, arg_data, arg_web, "--storage.tsdb.retention.time=2d", NULL};

	if (spawn_logged(argv, log, pidf) != 0)
		return -1;
	printf("started Prometheus on 127.0.0.1:%d (rules: %s/alerts.yml)\n", port, dir);
	return 0;
}

int prometheus_port(const struct layout *l)
{
	char pidf[PATH_MAX + 32];

	prom_path(l, pidf, sizeof(pidf), "prometheus.pid");
	return running_pid(pidf, PROMETHEUS_EXPECT) ? saved_port(l) : 0;
}

bool prometheus_state(const struct layout *l, pid_t *pid, int *port)
{
	char path[PATH_MAX + 32];

	prom_path(l, path, sizeof(path), "port");
	if (access(path, F_OK) != 0)
		return false;
	prom_path(l, path, sizeof(path), "prometheus.pid");
	*pid = running_pid(path, PROMETHEUS_EXPECT);
	*port = saved_port(l);
	return true;
}

void stop_prometheus(const struct layout *l)
{
	char pidf[PATH_MAX + 32];

	prom_path(l, pidf, sizeof(pidf), "prometheus.pid");
	stop_pid("Prometheus", running_pid(pidf, PROMETHEUS_EXPECT), 20000);
}
