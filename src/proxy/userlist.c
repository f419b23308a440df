#include "proxy/userlist.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads one "quoted" field at *p into out; false when malformed. */
static bool quoted(const char **p, char *out, size_t size)
{
	const char *s = *p;
	size_t j = 0;

	while (*s == ' ' || *s == '\t')
		s++;
	if (*s++ != '"')
		return false;
	for (;; s++) {
		if (!*s || *s == '\n')
			return false;
		if (*s == '"') {
			if (s[1] != '"')
				break;
			s++;
		}
		if (j + 1 >= size)
			return false;
		out[j++] = *s;
	}
	out[j] = '\0';
	*p = s + 1;
	return true;
}

static int add_user(struct proxy_userlist *l, const char *name, const char *secret)
{
	struct proxy_user *u, *grown;

	grown = realloc(l->users, sizeof(*l->users) * (l->n + 1));
	if (!grown)
		return PGW_ENOMEM;
	l->users = grown;
	u = &l->users[l->n];
	memset(u, 0, sizeof(*u));
	snprintf(u->name, sizeof(u->name), "%s", name);
	if (strncmp(secret, "SCRAM-SHA-256$", 14) == 0) {
		if (pgp_scram_secret_parse(secret, &u->scram) != PGW_OK)
			return PGW_EINVAL;
		u->has_scram = true;
	} else if (strlen(secret) == 35 && strncmp(secret, "md5", 3) == 0 &&
		   strspn(secret + 3, "0123456789abcdef") == 32) {
		memcpy(u->md5, secret, 36);
		u->has_md5 = true;
	} else {
		uint8_t salt[16];

		u->password = strdup(secret);
		if (!u->password)
			return PGW_ENOMEM;
		pgp_md5_secret(name, secret, u->md5);
		u->has_md5 = true;
		if (pgp_random(salt, sizeof(salt)) != PGW_OK ||
		    pgp_scram_secret_from_password(secret, salt, sizeof(salt), PGP_SCRAM_ITERATIONS,
						   &u->scram) != PGW_OK) {
			free(u->password);
			return PGW_ERR;
		}
		u->has_scram = true;
	}
	l->n++;
	return PGW_OK;
}

int proxy_userlist_load(const char *path, struct proxy_userlist *out, char *err, size_t err_size)
{
	char *text = cmn_read_file(path, NULL), *save = NULL;
	int lineno = 0, rc = PGW_OK;

	memset(out, 0, sizeof(*out));
	if (!text) {
		snprintf(err, err_size, "%s: cannot read the auth file", path);
		return PGW_EINVAL;
	}
	/* strtok_r would skip empty lines and miscount: walk line by line. */
	for (char *line = text; line && rc == PGW_OK; lineno++) {
		char *nl = strchr(line, '\n'), name[64], secret[1024];
		const char *p = line;

		(void)save;
		if (nl)
			*nl = '\0';
		while (*p == ' ' || *p == '\t' || *p == '\r')
			p++;
		if (*p && *p != ';' && *p != '#') {
			if (!quoted(&p, name, sizeof(name)) ||
			    !quoted(&p, secret, sizeof(secret))) {
				snprintf(err, err_size,
					 "%s:%d: expected \"user\" \"password\" (double quotes)",
					 path, lineno + 1);
				rc = PGW_EINVAL;
			} else {
				rc = add_user(out, name, secret);
				if (rc == PGW_EINVAL)
					snprintf(err, err_size, "%s:%d: bad SCRAM verifier for %s",
						 path, lineno + 1, name);
				else if (rc != PGW_OK)
					snprintf(err, err_size, "%s:%d: out of memory", path,
						 lineno + 1);
			}
		}
		line = nl ? nl + 1 : NULL;
	}
	free(text);
	if (rc != PGW_OK)
		proxy_userlist_free(out);
	return rc;
}

int proxy_userlist_set(struct proxy_userlist *l, const char *name, const char *secret)
{
	struct proxy_user *u = proxy_userlist_find(l, name);

	if (u) {
		/* Same secret: keep what logins taught us (the SCRAM ClientKey). */
		if ((u->has_scram && strncmp(secret, "SCRAM-SHA-256$", 14) == 0 && !u->password) ||
		    (u->has_md5 && !u->has_scram && strcmp(u->md5, secret) == 0)) {
			struct pgp_scram_secret s;

			if (!u->has_scram || (pgp_scram_secret_parse(secret, &s) == PGW_OK &&
					      memcmp(&s, &u->scram, sizeof(s)) == 0))
				return PGW_OK;
		}
		if (u->password) {
			memset(u->password, 0, strlen(u->password));
			free(u->password);
		}
		/* Take it out: add_user appends the new version. */
		memmove(u, u + 1, (size_t)((l->users + l->n) - (u + 1)) * sizeof(*u));
		l->n--;
	}
	int rc = add_user(l, name, secret);

	if (rc == PGW_OK)
		l->users[l->n - 1].dynamic = true;
	return rc;
}

struct proxy_user *proxy_userlist_find(struct proxy_userlist *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->users[i].name, name) == 0)
			return &l->users[i];
	return NULL;
}

void proxy_userlist_free(struct proxy_userlist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		if (l->users[i].password) {
			memset(l->users[i].password, 0, strlen(l->users[i].password));
			free(l->users[i].password);
		}
	}
	free(l->users);
	memset(l, 0, sizeof(*l));
}
