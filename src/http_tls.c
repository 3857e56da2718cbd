/*
 * http_tls.c
 *	  HTTPS for the HTTP server (opsflags.http_tls): the server's TLS
 *	  context, made of PostgreSQL's own certificate and key (ssl_cert_file,
 *	  ssl_key_file, ssl_min/max_protocol_version, ssl_ciphers), and each
 *	  connection's TLS session: its handshake, reads, writes and close, all
 *	  non-blocking.  Part of the core; plain connections never come here
 *	  (http_conn_recv() and http_conn_send() in http_core.h).
 *
 * A call that cannot go on says which way it waits (conn->tls_read_wants
 * for a handshake or a read, conn->tls_write_wants for a write), and the
 * loop waits for that: OpenSSL may need to write to read on, or the
 * reverse.  Renegotiation is refused, so after the handshake a write waits
 * for writeable and a read for readable, as on a plain socket.
 *
 * The context is made when the server starts listening with TLS and again
 * at every reload (as PostgreSQL re-reads its own): connections keep the
 * one they began with, and a certificate that does not load keeps the
 * previous one.  Without OpenSSL (PostgreSQL built without it) TLS cannot
 * be turned on.
 */
#include "postgres.h"

#include <sys/socket.h>

#include "storage/latch.h"
#include "utils/guc.h"

#include "http_core.h"

bool		http_tls_active = false;

#ifdef USE_OPENSSL

#include <openssl/err.h>
#include <openssl/ssl.h>

#if OPENSSL_VERSION_NUMBER < 0x10100000L
#error "opsflags http needs OpenSSL 1.1.0 or later"
#endif

static SSL_CTX *tls_context = NULL;
static bool passphrase_asked = false;

/* The first OpenSSL error queued, as text (or what the caller says). */
static const char *
tls_error(const char *otherwise)
{
	unsigned long e = ERR_get_error();
	const char *reason = NULL;

	/* a file that cannot be opened is a system error: its errno */
	if (e != 0 && ERR_GET_LIB(e) == ERR_LIB_SYS)
		reason = strerror(ERR_GET_REASON(e));
	else if (e != 0)
		reason = ERR_reason_error_string(e);
	ERR_clear_error();
	return reason != NULL ? reason : otherwise;
}

/*
 * A key with a passphrase: the loop has no one to ask (and must never
 * prompt on a terminal), so it fails to load, and says why.
 */
static int
no_passphrase(char *buf, int size, int rwflag, void *userdata)
{
	passphrase_asked = true;
	if (size > 0)
		buf[0] = '\0';
	return 0;
}

/* TLSv1, TLSv1.1, ... as PostgreSQL's ssl_*_protocol_version say; 0: any */
static int
protocol_version(const char *setting)
{
	if (setting == NULL)
		return 0;
	if (strcmp(setting, "TLSv1") == 0)
		return TLS1_VERSION;
	if (strcmp(setting, "TLSv1.1") == 0)
		return TLS1_1_VERSION;
	if (strcmp(setting, "TLSv1.2") == 0)
		return TLS1_2_VERSION;
#ifdef TLS1_3_VERSION
	if (strcmp(setting, "TLSv1.3") == 0)
		return TLS1_3_VERSION;
#endif
	return 0;
}

static void
load_failed(const char *what, const char *file, const char *reason)
{
	ereport(WARNING,
			(errcode(ERRCODE_CONFIG_FILE_ERROR),
			 errmsg("opsflags http could not load %s \"%s\": %s", what, file, reason),
			 errhint("opsflags.http_tls uses the server's ssl_cert_file and ssl_key_file.")));
}

bool
http_tls_load(void)
{
	const char *cert = GetConfigOption("ssl_cert_file", false, false);
	const char *key = GetConfigOption("ssl_key_file", false, false);
	const char *ciphers = GetConfigOption("ssl_ciphers", true, false);
	int			min_version = protocol_version(GetConfigOption("ssl_min_protocol_version", true, false));
	int			max_version = protocol_version(GetConfigOption("ssl_max_protocol_version", true, false));
	SSL_CTX    *context;

	ERR_clear_error();
	context = SSL_CTX_new(TLS_server_method());
	if (context == NULL)
	{
		load_failed("a TLS context for", cert, tls_error("out of memory"));
		return false;
	}
	/*
	 * Partial writes, from a buffer that may move between retries (the
	 * streams' buffers are compacted); buffers given back while idle (a
	 * thousand quiet streams); no renegotiation; no session cache
	 * (stateless tickets still resume sessions).
	 */
	SSL_CTX_set_mode(context, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
					 SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_options(context, SSL_OP_NO_COMPRESSION);
#ifdef SSL_OP_NO_RENEGOTIATION
	SSL_CTX_set_options(context, SSL_OP_NO_RENEGOTIATION);
#endif
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
	/* a client that closes without close_notify has just left */
	SSL_CTX_set_options(context, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
	SSL_CTX_set_session_cache_mode(context, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_default_passwd_cb(context, no_passphrase);
	passphrase_asked = false;

	if (SSL_CTX_use_certificate_chain_file(context, cert) != 1)
	{
		load_failed("the TLS certificate", cert, tls_error("unreadable"));
		SSL_CTX_free(context);
		return false;
	}
	if (SSL_CTX_use_PrivateKey_file(context, key, SSL_FILETYPE_PEM) != 1)
	{
		load_failed("the TLS key", key,
					passphrase_asked ? "a key protected by a passphrase is not supported" :
					tls_error("unreadable"));
		SSL_CTX_free(context);
		return false;
	}
	if (SSL_CTX_check_private_key(context) != 1)
	{
		load_failed("the TLS key", key, "it does not match the certificate");
		ERR_clear_error();
		SSL_CTX_free(context);
		return false;
	}
	if ((min_version != 0 && SSL_CTX_set_min_proto_version(context, min_version) != 1) ||
		(max_version != 0 && SSL_CTX_set_max_proto_version(context, max_version) != 1) ||
		(ciphers != NULL && ciphers[0] != '\0' && SSL_CTX_set_cipher_list(context, ciphers) != 1))
	{
		load_failed("the TLS settings for", cert,
					"ssl_min_protocol_version, ssl_max_protocol_version or ssl_ciphers was refused");
		ERR_clear_error();
		SSL_CTX_free(context);
		return false;
	}

	/* connections begun with the previous context keep it (it is counted) */
	if (tls_context != NULL)
		SSL_CTX_free(tls_context);
	tls_context = context;
	return true;
}

bool
http_tls_loaded(void)
{
	return tls_context != NULL;
}

void
http_tls_unload(void)
{
	if (tls_context != NULL)
		SSL_CTX_free(tls_context);
	tls_context = NULL;
}

bool
http_tls_start(HttpConn *conn)
{
	SSL		   *ssl;

	ERR_clear_error();
	ssl = SSL_new(tls_context);
	if (ssl == NULL || SSL_set_fd(ssl, conn->sock) != 1)
	{
		if (ssl != NULL)
			SSL_free(ssl);
		ERR_clear_error();
		return false;
	}
	SSL_set_accept_state(ssl);
	conn->tls = ssl;
	conn->tls_ready = false;
	conn->tls_failed = false;
	conn->tls_read_wants = WL_SOCKET_READABLE;
	conn->tls_write_wants = WL_SOCKET_WRITEABLE;
	return true;
}

/* Which way a call that could not go on waits; 0: it failed. */
static uint32
tls_wait(HttpConn *conn, int rc)
{
	switch (SSL_get_error(conn->tls, rc))
	{
		case SSL_ERROR_WANT_READ:
			return WL_SOCKET_READABLE;
		case SSL_ERROR_WANT_WRITE:
			return WL_SOCKET_WRITEABLE;
		default:
			return 0;
	}
}

int
http_tls_handshake(HttpConn *conn)
{
	int			rc;
	uint32		wait;

	ERR_clear_error();
	rc = SSL_do_handshake(conn->tls);
	if (rc == 1)
	{
		conn->tls_ready = true;
		conn->tls_read_wants = WL_SOCKET_READABLE;
		return HTTP_TLS_DONE;
	}
	wait = tls_wait(conn, rc);
	if (wait != 0)
	{
		conn->tls_read_wants = wait;
		return HTTP_TLS_WAIT;
	}
	conn->tls_failed = true;
	/* OpenSSL recognises a plain HTTP request where a ClientHello should be */
	if (ERR_GET_REASON(ERR_peek_error()) == SSL_R_HTTP_REQUEST)
	{
		ERR_clear_error();
		return HTTP_TLS_PLAIN;
	}
	ereport(DEBUG1,
			(errmsg_internal("opsflags http: TLS handshake with %s failed: %s",
							 conn->peer, tls_error("connection closed"))));
	return HTTP_TLS_FAILED;
}

ssize_t
http_tls_recv(HttpConn *conn, void *buf, size_t len)
{
	int			rc;
	uint32		wait;

	if (len == 0)
		return 0;
	ERR_clear_error();
	rc = SSL_read(conn->tls, buf, (int) Min(len, (size_t) INT_MAX));
	if (rc > 0)
	{
		conn->tls_read_wants = WL_SOCKET_READABLE;
		return rc;
	}
	wait = tls_wait(conn, rc);
	if (wait != 0)
	{
		conn->tls_read_wants = wait;
		errno = EAGAIN;
		return -1;
	}
	if (SSL_get_error(conn->tls, rc) == SSL_ERROR_ZERO_RETURN)
		return 0;				/* close_notify: the client closed */
	conn->tls_failed = true;
	ERR_clear_error();
	errno = ECONNRESET;
	return -1;
}

ssize_t
http_tls_send(HttpConn *conn, const void *buf, size_t len)
{
	int			rc;
	uint32		wait;

	if (len == 0)
		return 0;
	ERR_clear_error();
	rc = SSL_write(conn->tls, buf, (int) Min(len, (size_t) INT_MAX));
	if (rc > 0)
	{
		conn->tls_write_wants = WL_SOCKET_WRITEABLE;
		return rc;
	}
	wait = tls_wait(conn, rc);
	if (wait != 0)
	{
		conn->tls_write_wants = wait;
		errno = EAGAIN;
		return -1;
	}
	conn->tls_failed = true;
	ERR_clear_error();
	errno = EPIPE;
	return -1;
}

/* Bytes OpenSSL has read and decrypted that were not yet taken */
int
http_tls_pending(HttpConn *conn)
{
	return SSL_pending(conn->tls);
}

/*
 * Say close_notify, once, if it can go now (never waiting): after a failure
 * or before the handshake is done there is nothing to say it on.
 */
void
http_tls_shutdown(HttpConn *conn)
{
	if (conn->tls_failed || !conn->tls_ready ||
		(SSL_get_shutdown(conn->tls) & SSL_SENT_SHUTDOWN) != 0)
		return;
	ERR_clear_error();
	(void) SSL_shutdown(conn->tls);
	ERR_clear_error();
}

void
http_tls_end(HttpConn *conn, bool abort)
{
	if (conn->tls == NULL)
		return;
	if (!abort)
		http_tls_shutdown(conn);
	SSL_free(conn->tls);
	conn->tls = NULL;
}

#else							/* !USE_OPENSSL */

bool
http_tls_load(void)
{
	ereport(WARNING,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("opsflags http cannot serve HTTPS: PostgreSQL was built without OpenSSL")));
	return false;
}

bool
http_tls_loaded(void)
{
	return false;
}

void
http_tls_unload(void)
{
}

bool
http_tls_start(HttpConn *conn)
{
	return false;
}

int
http_tls_handshake(HttpConn *conn)
{
	return HTTP_TLS_FAILED;
}

ssize_t
http_tls_recv(HttpConn *conn, void *buf, size_t len)
{
	errno = ECONNRESET;
	return -1;
}

ssize_t
http_tls_send(HttpConn *conn, const void *buf, size_t len)
{
	errno = EPIPE;
	return -1;
}

int
http_tls_pending(HttpConn *conn)
{
	return 0;
}

void
http_tls_shutdown(HttpConn *conn)
{
}

void
http_tls_end(HttpConn *conn, bool abort)
{
	conn->tls = NULL;
}

#endif							/* USE_OPENSSL */
