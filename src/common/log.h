/*
 * One logger for every component: a line per event on stderr, with time,
 * level and component. Never pass passwords or full conninfo strings here.
 */
#ifndef PGW_LOG_H
#define PGW_LOG_H

enum cmn_log_level {
	CMN_LOG_DEBUG = 0,
	CMN_LOG_INFO,
	CMN_LOG_WARNING,
	CMN_LOG_ERROR,
	CMN_LOG_FATAL
};

void cmn_log_set_level(enum cmn_log_level level);
int cmn_log_parse_level(const char *name, enum cmn_log_level *out);
void cmn_log_set_ident(const char *ident);
void cmn_log_write(enum cmn_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...)	 cmn_log_write(CMN_LOG_DEBUG, __VA_ARGS__)
#define log_info(...)	 cmn_log_write(CMN_LOG_INFO, __VA_ARGS__)
#define log_warning(...) cmn_log_write(CMN_LOG_WARNING, __VA_ARGS__)
#define log_error(...)	 cmn_log_write(CMN_LOG_ERROR, __VA_ARGS__)
#define log_fatal(...)	 cmn_log_write(CMN_LOG_FATAL, __VA_ARGS__)

#endif
