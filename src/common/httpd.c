#include "common/httpd.h"

#include <stdio.h>
#include <string.h>

enum MHD_Result cmn_httpd_reply(struct MHD_Connection *conn, unsigned int code, const char *type,
				const char *body, size_t len, const char *allow, const char *realm)
{
	struct MHD_Response *r =
	    MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result ret;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", type);
	MHD_add_response_header(r, "Cache-Control", "no-store");
	if (allow)
		MHD_add_response_header(r, "Allow", allow);
	if (realm) {
		char challenge[200];

		snprintf(challenge, sizeof(challenge), "Basic realm=\"%s\", charset=\"UTF-8\"",
			 realm);
		MHD_add_response_header(r, "WWW-Authenticate", challenge);
	}
	ret = MHD_queue_response(conn, code, r);
	MHD_destroy_response(r);
	return ret;
}

enum MHD_Result cmn_httpd_error(struct MHD_Connection *conn, unsigned int code, const char *reason,
				const char *allow, const char *realm)
{
	char body[600], esc[512];
	size_t j = 0;
	int n;

	for (const char *p = reason; *p && j + 2 < sizeof(esc); p++) {
		if (*p == '"' || *p == '\\')
			esc[j++] = '\\';
		esc[j++] = (*p >= 32 && *p < 127) ? *p : '?';
	}
	esc[j] = '\0';
	n = snprintf(body, sizeof(body), "{\"error\": \"%s\"}\n", esc);
	return cmn_httpd_reply(conn, code, "application/json", body,
			       n < 0			  ? 0
			       : (size_t)n < sizeof(body) ? (size_t)n
							  : sizeof(body) - 1,
			       allow, realm);
}

bool cmn_const_eq(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned char diff = la != lb;

	for (size_t i = 0; i < la; i++)
		diff |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
	return diff == 0;
}

enum cmn_httpd_auth cmn_httpd_basic_auth(struct MHD_Connection *conn, const char *username,
					 const char *password)
{
	char *pass = NULL, *user = MHD_basic_auth_get_username_password(conn, &pass);
	bool user_ok, pass_ok;

	if (!user) {
		if (pass)
			MHD_free(pass);
		return CMN_HTTPD_AUTH_NONE;
	}
	user_ok = cmn_const_eq(user, username); /* both compared, whatever the first */
	pass_ok = pass && cmn_const_eq(pass, password);
	MHD_free(user);
	if (pass)
		MHD_free(pass);
	return user_ok && pass_ok ? CMN_HTTPD_AUTH_OK : CMN_HTTPD_AUTH_WRONG;
}
