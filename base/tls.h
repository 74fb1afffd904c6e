/*
 * tls.h - TLS for the data plane's connections, with OpenSSL: a context
 * per side built from the tls.* settings (the same files nng's TLS uses on
 * the control plane), and sessions that plug into base/conn as its
 * transport, over nonblocking sockets.
 *
 * A client session verifies the server's certificate against the CA and,
 * when tls.server_name is set, that name (a DNS name of the certificate);
 * without it the chain alone, as nng's TLS does on the control plane. A
 * server session presents its certificate and, with `mutual`, requires
 * and verifies the client's. A key with a passphrase is refused.
 */
#ifndef TRELLIS_TLS_H
#define TRELLIS_TLS_H

#include <stddef.h>

#include "base/conn.h"

typedef struct tls_ctx tls_ctx;

typedef struct tls_opts {
    const char *ca_file;       /* CA bundle (PEM): verifies the peer */
    const char *cert_key_file; /* own certificate and key in one PEM; a server's is required */
    const char *server_name;   /* a client's expected name; NULL or "": the dialed host */
    int mutual;                /* a server requires clients' certificates */
    int server;                /* 1 for the accepting side */
} tls_opts;

/* Builds a context. TRELLIS_OK with *out, or TRELLIS_INVALID with the
 * reason (naming the file) in err: an unreadable or invalid PEM file, a
 * server without a certificate, a client without a CA. */
int tls_ctx_new(const tls_opts *o, tls_ctx **out, char *err, size_t errlen);
void tls_ctx_free(tls_ctx *t);

/* A session on the connected (or connecting) socket fd: the transport and
 * its state to give conn_new, which frees the state with the connection.
 * TRELLIS_OK or TRELLIS_INTERNAL. */
int tls_session(const tls_ctx *t, int fd, const conn_transport **tr, void **arg);

/* "OpenSSL 3.0.x ..." for logs. */
const char *tls_version(void);

#endif
