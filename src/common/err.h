/*
 * Project-wide error codes. Fallible functions return 0 or one of these
 * (negative) values; the function that detects an error logs it once.
 */
#ifndef PGW_ERR_H
#define PGW_ERR_H

#define PGW_WUR __attribute__((warn_unused_result))

enum pgw_err {
	PGW_OK = 0,
	PGW_ERR = -1,	    /* generic failure, already logged */
	PGW_ENOMEM = -2,    /* out of memory */
	PGW_ENET = -3,	    /* peer unreachable (connection refused, reset, DNS) */
	PGW_ETIMEOUT = -4,  /* deadline passed */
	PGW_ENOTFOUND = -5, /* key / lease / object does not exist */
	PGW_EPROTO = -6,    /* peer sent something we cannot parse */
	PGW_EINVAL = -7,    /* bad argument or bad input from a user */
	PGW_EUNAVAIL = -8,  /* peer up but cannot serve now (no leader, starting) */
	PGW_EAUTH = -9,	    /* authentication failed */
};

const char *pgw_strerror(int err);

#endif
