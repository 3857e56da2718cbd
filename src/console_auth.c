/*
 * console_auth.c
 *	  Sign-in to the web console as a PostgreSQL role, the C side (the
 *	  tables and functions are in console_auth.sql): the password check with
 *	  the server's own routines, the log lines of refused sign-ins, the CSRF
 *	  token of a session, the session settings
 *	  (opsflags.console_session_idle_timeout and _max_age), and the
 *	  privilege check of console_sign_out_all.
 *
 * A password is never logged, reported or kept: it is only handed to
 * plain_crypt_verify().  Log lines name the role and the client address.
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "common/hmac.h"
#include "fmgr.h"
#include "libpq/crypt.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "opsflags.h"

PG_FUNCTION_INFO_V1(opsflags_console_password_check);
PG_FUNCTION_INFO_V1(opsflags_console_log_throttled);
PG_FUNCTION_INFO_V1(opsflags_console_csrf_mac);
PG_FUNCTION_INFO_V1(opsflags_console_idle_timeout);
PG_FUNCTION_INFO_V1(opsflags_console_max_age);
PG_FUNCTION_INFO_V1(opsflags_console_check_sign_out);

/* Longest password looked at; longer ones fail (PostgreSQL's own client
 * refuses a password message of over 1000 bytes). */
#define CONSOLE_MAX_PASSWORD 1024

/* The message a session's CSRF token is the HMAC of, keyed by the token. */
#define CONSOLE_CSRF_MESSAGE "opsflags console csrf"

/* opsflags.console_session_idle_timeout and _max_age, in seconds */
static int	console_idle_timeout_s = 30 * 60;
static int	console_max_age_s = 12 * 3600;

/*
 * A SCRAM secret of a random password, made once per backend: a role that
 * cannot sign in has its password checked against it, so that a sign-in as
 * a role that does not exist takes as long as one with a wrong password.
 */
static char *dummy_secret = NULL;

static const char *
console_dummy_secret(void)
{
	if (dummy_secret == NULL)
	{
		uint8		raw[16];
		char		password[sizeof(raw) * 2 + 1];
		MemoryContext oldcontext;

		if (!pg_strong_random(raw, sizeof(raw)))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate random bytes")));
		hex_encode((const char *) raw, sizeof(raw), password);
		password[sizeof(password) - 1] = '\0';
		oldcontext = MemoryContextSwitchTo(TopMemoryContext);
		dummy_secret = encrypt_password(PASSWORD_TYPE_SCRAM_SHA_256, "", password);
		MemoryContextSwitchTo(oldcontext);
	}
	return dummy_secret;
}

/* "address 192.0.2.1" or "an unknown address", for log lines */
static char *
console_client_text(FunctionCallInfo fcinfo, int argno)
{
	if (PG_ARGISNULL(argno))
		return pstrdup("an unknown address");
	return psprintf("address %s", text_to_cstring(PG_GETARG_TEXT_PP(argno)));
}

/*
 * console_password_check(role_name text, password text, client text)
 * RETURNS oid: the role's OID when role_name may sign in with password,
 * else NULL.  The password is checked as the server checks it at a
 * password login: against pg_authid's SCRAM-SHA-256 or MD5 secret, with
 * rolvaliduntil honoured; a role must also have LOGIN.  A role that does
 * not exist, has no password or no LOGIN still has a password checked (the
 * dummy's, or its own), so that every failure takes about as long.
 * Failures are logged (server log only), with the reason as a detail, as
 * the server logs a failed login; client is the client's address, as text.
 */
Datum
opsflags_console_password_check(PG_FUNCTION_ARGS)
{
	char	   *role = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	text	   *password_t = PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1);
	bool		valid_name = role != NULL && role[0] != '\0' && strlen(role) < NAMEDATALEN;
	/* an empty password is refused, as at a login */
	bool		valid_password = password_t != NULL && VARSIZE_ANY_EXHDR(password_t) > 0 &&
		VARSIZE_ANY_EXHDR(password_t) <= CONSOLE_MAX_PASSWORD;
	char	   *shadow_pass = NULL;
	const char *detail = NULL;	/* why it failed, for the log */
	const char *verify_detail = NULL;
	Oid			roleid = InvalidOid;
	bool		canlogin = false;
	bool		verified;

	if (valid_name)
	{
		HeapTuple	tup = SearchSysCache1(AUTHNAME, CStringGetDatum(role));

		if (HeapTupleIsValid(tup))
		{
			Form_pg_authid form = (Form_pg_authid) GETSTRUCT(tup);

			roleid = form->oid;
			canlogin = form->rolcanlogin;
			ReleaseSysCache(tup);
		}
		/* NULL, with the reason, for no role, no password, past VALID UNTIL */
		shadow_pass = get_role_password(role, &detail);
	}

	verified = plain_crypt_verify(valid_name ? role : "",
								  shadow_pass != NULL ? shadow_pass : console_dummy_secret(),
								  valid_password ? text_to_cstring(password_t) : "",
								  &verify_detail) == STATUS_OK;

	/* Without shadow_pass, detail is get_role_password's. */
	if (!valid_name)
		detail = "No valid role name was given.";
	else if (!valid_password)
		detail = password_t == NULL || VARSIZE_ANY_EXHDR(password_t) == 0 ?
			"No password was given." :
			psprintf("The password is longer than %d bytes.", CONSOLE_MAX_PASSWORD);
	else if (shadow_pass != NULL && !verified)
		detail = verify_detail;
	else if (shadow_pass != NULL && !canlogin)
		detail = psprintf("Role \"%s\" is not permitted to log in.", role);
	else if (shadow_pass != NULL)
		PG_RETURN_OID(roleid);

	ereport(LOG_SERVER_ONLY,
			(errcode(ERRCODE_INVALID_PASSWORD),
			 errmsg("console sign-in failed for role \"%s\" from %s",
					role != NULL ? role : "", console_client_text(fcinfo, 2)),
			 detail != NULL ? errdetail_log("%s", detail) : 0,
			 errhidestmt(true)));
	PG_RETURN_NULL();
}

/*
 * console_log_throttled(role_name text, client text) RETURNS void: the log
 * line of a sign-in refused for too many failures, before any password is
 * looked at.
 */
Datum
opsflags_console_log_throttled(PG_FUNCTION_ARGS)
{
	ereport(LOG_SERVER_ONLY,
			(errcode(ERRCODE_INVALID_PASSWORD),
			 errmsg("console sign-in refused for role \"%s\" from %s: too many failed attempts",
					PG_ARGISNULL(0) ? "" : text_to_cstring(PG_GETARG_TEXT_PP(0)),
					console_client_text(fcinfo, 1)),
			 errhidestmt(true)));
	PG_RETURN_VOID();
}

/*
 * console_csrf_mac(token text) RETURNS bytea: HMAC-SHA-256 keyed by the
 * session token of a fixed message.  The CSRF token is derived, not stored:
 * whoever holds the session token can compute it again, nobody else can,
 * and the table's hash of the token does not give it away.
 */
Datum
opsflags_console_csrf_mac(PG_FUNCTION_ARGS)
{
	text	   *token = PG_GETARG_TEXT_PP(0);
	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);
	bytea	   *result = (bytea *) palloc(VARHDRSZ + PG_SHA256_DIGEST_LENGTH);

	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	if (pg_hmac_init(ctx, (const uint8 *) VARDATA_ANY(token), VARSIZE_ANY_EXHDR(token)) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) CONSOLE_CSRF_MESSAGE, strlen(CONSOLE_CSRF_MESSAGE)) < 0 ||
		pg_hmac_final(ctx, (uint8 *) VARDATA(result), PG_SHA256_DIGEST_LENGTH) < 0)
	{
		const char *why = pg_hmac_error(ctx);

		pg_hmac_free(ctx);
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute the CSRF token: %s", why)));
	}
	pg_hmac_free(ctx);
	SET_VARSIZE(result, VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
	PG_RETURN_BYTEA_P(result);
}

/* console_idle_timeout() RETURNS integer: the setting, in seconds */
Datum
opsflags_console_idle_timeout(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(console_idle_timeout_s);
}

/* console_max_age() RETURNS integer: the setting, in seconds */
Datum
opsflags_console_max_age(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(console_max_age_s);
}

/*
 * console_check_sign_out(role oid) RETURNS void: may the session's role (as
 * SET ROLE set it, also inside a SECURITY DEFINER function) end every
 * console session of role?  Admins (superusers, the owner of the sessions
 * tables, opsflags_admin) may, and so may the role itself (or a role that
 * has its privileges); anyone else gets 42501.
 */
Datum
opsflags_console_check_sign_out(PG_FUNCTION_ARGS)
{
	Oid			roleid = PG_GETARG_OID(0);
	Oid			caller = GetOuterUserId();
	Oid			owner = opsflags_rel_owner(opsflags_relid("environments"));
	Oid			admin = get_role_oid("opsflags_admin", true);

	if (superuser_arg(caller) || has_privs_of_role(caller, roleid) ||
		(OidIsValid(owner) && has_privs_of_role(caller, owner)) ||
		(OidIsValid(admin) && has_privs_of_role(caller, admin)))
		PG_RETURN_VOID();
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to sign out the console sessions of role \"%s\"",
					GetUserNameFromId(roleid, false)),
			 errdetail("Only admins and the role itself may.")));
	PG_RETURN_VOID();
}

void
opsflags_console_auth_init(void)
{
	DefineCustomIntVariable("opsflags.console_session_idle_timeout",
							"A console session ends when it has not been used for this long.",
							NULL,
							&console_idle_timeout_s,
							30 * 60, 1, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("opsflags.console_session_max_age",
							"A console session ends this long after its sign-in, used or not.",
							NULL,
							&console_max_age_s,
							12 * 3600, 1, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);
}
