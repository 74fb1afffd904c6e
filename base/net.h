/*
 * net.h - nng sockets the trellis way: every socket gets a receive size
 * limit and timeouts, tls+tcp:// endpoints get the configured certificates,
 * and control-plane calls go through rpc_conn with a deadline.
 */
#ifndef TRELLIS_NET_H
#define TRELLIS_NET_H

#include <stddef.h>

#include <nng/nng.h>

#include "base/wire.h"

#define NET_URL_MAX   256 /* bytes of an endpoint URL, NUL included */
#define NET_TOKEN_MAX 256 /* bytes of an authentication token, NUL included */

/* TLS settings for the endpoints of one process; NULL means plain TCP only
 * (a tls+tcp:// URL then fails with TRELLIS_INVALID). */
typedef struct net_tls net_tls;

/* Where the certificates are (the `tls` section of the configuration, or a
 * client's options). Empty strings and NULL mean "not set". */
typedef struct net_tls_opts {
    const char *ca_file;       /* CA bundle; empty: no TLS at all */
    const char *cert_key_file; /* this process's certificate and key (PEM) */
    const char *server_name;   /* name expected in servers' certificates */
    int mutual;                /* servers require clients' certificates */
} net_tls_opts;

/* Builds the TLS configurations. *out is NULL when o->ca_file is empty.
 * Errors (unreadable or invalid PEM files) name the file in err. The
 * strings of o are not kept. */
int net_tls_new(const net_tls_opts *o, net_tls **out, char *err, size_t errlen);
void net_tls_free(net_tls *t);

/* Sets the receive size limit and the send/receive timeouts (ms, -1 for
 * none) on a socket. */
int net_set_limits(nng_socket s, size_t recv_max, int recv_timeout_ms, int send_timeout_ms);

/* Listens on url (port 0 picks a free port; *port_out, if not NULL,
 * receives the bound TCP port or 0). Returns a trellis status; the nng error
 * is logged. */
int net_listen(nng_socket s, const char *url, const net_tls *tls, int *port_out);

/* Dials url in the background: returns at once and keeps reconnecting, so
 * peers may start in any order. */
int net_dial(nng_socket s, const char *url, const net_tls *tls);
/* net_dial, and the dialer in *out (for nng_dialer_close). */
int net_dial_get(nng_socket s, const char *url, const net_tls *tls, nng_dialer *out);

/* Maps an nng error to a trellis status (NNG_ETIMEDOUT -> TIMEOUT, ...). */
int net_status(int nng_rv);

/* A synchronous request/reply connection to one URL, for control traffic.
 * Not thread-safe: one caller at a time. */
typedef struct rpc_conn rpc_conn;

int rpc_open(const char *url, const net_tls *tls, const wire_limits *lim, const char *token,
             rpc_conn **out);
void rpc_close(rpc_conn *c);

/* Sends env (its version and auth are filled in) and waits up to timeout_ms
 * for the reply, decoded into arena a. An ErrorReply is returned as its
 * status. TRELLIS_TIMEOUT when no reply came in time. */
int rpc_call(rpc_conn *c, Trellis__Envelope *env, int timeout_ms, wire_arena *a,
             Trellis__Envelope **reply);

/* One-shot: open, call, close. */
int rpc_call_url(const char *url, const net_tls *tls, const wire_limits *lim, const char *token,
                 Trellis__Envelope *env, int timeout_ms, wire_arena *a, Trellis__Envelope **reply);

#endif
