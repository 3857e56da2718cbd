/*
 * api_keys.c
 *	  API keys of the HTTP flag server, the C side (the tables and functions
 *	  are in api_keys.sql): the setting opsflags.http_require_keys, random
 *	  bytes for new keys, base64url, the constant-time comparison of secret
 *	  hashes, and the role checks of create_api_key.
 *
 * Nothing here ever logs or reports a key or a secret: errors name the role
 * or the lengths involved, never a value that was presented.
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "opsflags.h"

PG_FUNCTION_INFO_V1(opsflags_api_key_random);
PG_FUNCTION_INFO_V1(opsflags_api_key_base64url);
PG_FUNCTION_INFO_V1(opsflags_api_key_hash_matches);
PG_FUNCTION_INFO_V1(opsflags_api_key_require_keys);
PG_FUNCTION_INFO_V1(opsflags_api_key_caller);
PG_FUNCTION_INFO_V1(opsflags_api_key_check_role);

/* Most random bytes one call returns (a secret takes 32). */
#define API_KEY_MAX_RANDOM 64

/* opsflags.http_require_keys */
static bool api_keys_always_required = false;

/*
 * api_key_random(nbytes integer) RETURNS bytea: nbytes (1 to 64) bytes from
 * the server's cryptographically strong random source.
 */
Datum
opsflags_api_key_random(PG_FUNCTION_ARGS)
{
	int32		nbytes = PG_GETARG_INT32(0);
	bytea	   *result;

	if (nbytes < 1 || nbytes > API_KEY_MAX_RANDOM)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("number of random bytes must be between 1 and %d", API_KEY_MAX_RANDOM)));
	result = (bytea *) palloc(VARHDRSZ + nbytes);
	SET_VARSIZE(result, VARHDRSZ + nbytes);
	if (!pg_strong_random(VARDATA(result), nbytes))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes")));
	PG_RETURN_BYTEA_P(result);
}

/*
 * base64url(data bytea) RETURNS text: RFC 4648 section 5 without padding,
 * so that the text can stand unchanged in a URL path segment, a query
 * string and an HTTP header.
 */
Datum
opsflags_api_key_base64url(PG_FUNCTION_ARGS)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	bytea	   *data = PG_GETARG_BYTEA_PP(0);
	const unsigned char *in = (const unsigned char *) VARDATA_ANY(data);
	size_t		len = VARSIZE_ANY_EXHDR(data);
	char	   *out;
	char	   *p;
	size_t		i;

	if (len > (MaxAllocSize - VARHDRSZ) / 4 * 3 - 3)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("bytea value too long for base64url encoding")));
	out = p = palloc(len / 3 * 4 + 4 + 1);
	for (i = 0; i + 2 < len; i += 3)
	{
		uint32		v = ((uint32) in[i] << 16) | ((uint32) in[i + 1] << 8) | in[i + 2];

		*p++ = alphabet[(v >> 18) & 0x3F];
		*p++ = alphabet[(v >> 12) & 0x3F];
		*p++ = alphabet[(v >> 6) & 0x3F];
		*p++ = alphabet[v & 0x3F];
	}
	if (len - i == 1)
	{
		uint32		v = (uint32) in[i] << 16;

		*p++ = alphabet[(v >> 18) & 0x3F];
		*p++ = alphabet[(v >> 12) & 0x3F];
	}
	else if (len - i == 2)
	{
		uint32		v = ((uint32) in[i] << 16) | ((uint32) in[i + 1] << 8);

		*p++ = alphabet[(v >> 18) & 0x3F];
		*p++ = alphabet[(v >> 12) & 0x3F];
		*p++ = alphabet[(v >> 6) & 0x3F];
	}
	*p = '\0';
	PG_RETURN_TEXT_P(cstring_to_text_with_len(out, p - out));
}

/*
 * api_key_hash_matches(a bytea, b bytea) RETURNS boolean: equality in time
 * that depends on the lengths only, not on where the first difference is
 * (PostgreSQL 15's server API has no timingsafe_bcmp).  The lengths are no
 * secret: every stored hash is a SHA-256.
 */
Datum
opsflags_api_key_hash_matches(PG_FUNCTION_ARGS)
{
	bytea	   *a = PG_GETARG_BYTEA_PP(0);
	bytea	   *b = PG_GETARG_BYTEA_PP(1);
	const volatile unsigned char *pa = (const unsigned char *) VARDATA_ANY(a);
	const volatile unsigned char *pb = (const unsigned char *) VARDATA_ANY(b);
	size_t		len = VARSIZE_ANY_EXHDR(a);
	unsigned char diff = 0;
	size_t		i;

	if (len != VARSIZE_ANY_EXHDR(b))
		PG_RETURN_BOOL(false);
	for (i = 0; i < len; i++)
		diff |= pa[i] ^ pb[i];
	PG_RETURN_BOOL(diff == 0);
}

/* api_key_require_keys() RETURNS boolean: opsflags.http_require_keys. */
Datum
opsflags_api_key_require_keys(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(api_keys_always_required);
}

/*
 * api_key_caller() RETURNS text: the role the session acts as (current_user
 * as SET ROLE or the login set it), also inside a SECURITY DEFINER function,
 * where current_user is the function's owner.
 */
Datum
opsflags_api_key_caller(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(GetUserNameFromId(GetOuterUserId(), false)));
}

/*
 * api_key_check_role(role_name text) RETURNS text: the name of the role an
 * admin key is to act as, after checking that it exists (42704) and that
 * the session's role (see api_key_caller) may act as it: is a superuser, or
 * a member of it, and so may SET ROLE to it (42501): a key must not let its
 * creator act as a role more powerful than itself.
 */
Datum
opsflags_api_key_check_role(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Oid			caller = GetOuterUserId();
	Oid			roleid;

	roleid = get_role_oid(name, true);
	if (!OidIsValid(roleid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role \"%s\" does not exist", name)));
	if (!superuser_arg(caller) && !is_member_of_role(caller, roleid))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to create an API key acting as role \"%s\"", name),
				 errdetail("Only superusers and members of role \"%s\" may.", name)));
	PG_RETURN_TEXT_P(cstring_to_text(name));
}

void
opsflags_api_keys_init(void)
{
	DefineCustomBoolVariable("opsflags.http_require_keys",
							 "Require an API key for every request of the HTTP server.",
							 "Off: an environment requires keys once it has an active API key.",
							 &api_keys_always_required,
							 false,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);
}
