/* pgwarden proxy: the pooler and router (PgBouncer's and HAProxy's role). */
#ifndef PGW_PROXY_H
#define PGW_PROXY_H

/* `pgwarden proxy -c proxy.ini`; returns the process exit code. */
int proxy_main(int argc, char **argv);

#endif
