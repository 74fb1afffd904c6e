/*
 * net.c - socket helpers, TLS configuration and control-plane calls.
 */
#include "base/net.h"

#include <stdio.h>
#include <stdlib.h>
#include <arpa/inet.h>
#include <string.h>

#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>

#include "base/log.h"
#include "trellis/trellis_status.h"

struct net_tls {
    nng_tls_config *server;
    nng_tls_config *client;
};

static int tls_fail(char *err, size_t errlen, const char *what, const char *file, int rv)
{
    snprintf(err, errlen, "tls: %s %s: %s", what, file, nng_strerror(rv));
    return TRELLIS_INVALID;
}

static int opt_set(const char *s)
{
    return s && s[0] != '\0';
}

int net_tls_new(const net_tls_opts *o, net_tls **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!opt_set(o->ca_file))
        return TRELLIS_OK;
    net_tls *t = calloc(1, sizeof(*t));
    if (!t)
        return TRELLIS_INTERNAL;
    int rv;
    if ((rv = nng_tls_config_alloc(&t->server, NNG_TLS_MODE_SERVER)) != 0 ||
        (rv = nng_tls_config_alloc(&t->client, NNG_TLS_MODE_CLIENT)) != 0) {
        net_tls_free(t);
        snprintf(err, errlen, "tls: %s", nng_strerror(rv));
        return TRELLIS_INTERNAL;
    }
    int rc = TRELLIS_OK;
    if ((rv = nng_tls_config_ca_file(t->client, o->ca_file)) != 0 ||
        (rv = nng_tls_config_ca_file(t->server, o->ca_file)) != 0) {
        rc = tls_fail(err, errlen, "CA file", o->ca_file, rv);
    } else if (opt_set(o->cert_key_file) &&
               ((rv = nng_tls_config_cert_key_file(t->server, o->cert_key_file, NULL)) != 0 ||
                (rv = nng_tls_config_cert_key_file(t->client, o->cert_key_file, NULL)) != 0)) {
        rc = tls_fail(err, errlen, "certificate/key file", o->cert_key_file, rv);
    } else if ((rv = nng_tls_config_auth_mode(t->client, NNG_TLS_AUTH_MODE_REQUIRED)) != 0 ||
               (rv = nng_tls_config_auth_mode(t->server, o->mutual ? NNG_TLS_AUTH_MODE_REQUIRED
                                                                   : NNG_TLS_AUTH_MODE_NONE)) !=
                   0) {
        rc = tls_fail(err, errlen, "auth mode", "", rv);
    } else if (opt_set(o->server_name) &&
               (rv = nng_tls_config_server_name(t->client, o->server_name)) != 0) {
        rc = tls_fail(err, errlen, "server name", o->server_name, rv);
    }
    if (rc != TRELLIS_OK) {
        net_tls_free(t);
        return rc;
    }
    *out = t;
    return TRELLIS_OK;
}

void net_tls_free(net_tls *t)
{
    if (!t)
        return;
    if (t->server)
        nng_tls_config_free(t->server);
    if (t->client)
        nng_tls_config_free(t->client);
    free(t);
}

int net_status(int rv)
{
    switch (rv) {
    case 0:
        return TRELLIS_OK;
    case NNG_ETIMEDOUT:
        return TRELLIS_TIMEOUT;
    case NNG_ECONNREFUSED:
    case NNG_ECONNRESET:
    case NNG_ECONNSHUT:
    case NNG_ECLOSED:
    case NNG_EUNREACHABLE:
    case NNG_EADDRINVAL:
    case NNG_EPEERAUTH:
    case NNG_ECRYPTO:
        return TRELLIS_UNAVAILABLE;
    case NNG_ENOMEM:
        return TRELLIS_INTERNAL;
    case NNG_EMSGSIZE:
        return TRELLIS_TOO_LARGE;
    case NNG_EINVAL:
        return TRELLIS_INVALID;
    case NNG_EAGAIN:
        return TRELLIS_OVERLOADED;
    default:
        return TRELLIS_UNAVAILABLE;
    }
}

int net_set_limits(nng_socket s, size_t recv_max, int recv_timeout_ms, int send_timeout_ms)
{
    int rv;
    if ((rv = nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, recv_max)) != 0 ||
        (rv = nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, recv_timeout_ms)) != 0 ||
        (rv = nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, send_timeout_ms)) != 0)
        return net_status(rv);
    return TRELLIS_OK;
}

static int is_tls_url(const char *url)
{
    return strncmp(url, "tls+", 4) == 0;
}

int net_listen(nng_socket s, const char *url, const net_tls *tls, int *port_out)
{
    nng_listener l;
    int rv;
    if (port_out)
        *port_out = 0;
    if (is_tls_url(url) && !tls) {
        log_error("listen %s: tls+tcp needs tls.ca_file and tls.cert_key_file", url);
        return TRELLIS_INVALID;
    }
    if ((rv = nng_listener_create(&l, s, url)) != 0) {
        log_error("listen %s: %s", url, nng_strerror(rv));
        return net_status(rv);
    }
    if (is_tls_url(url) && (rv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, tls->server)) != 0) {
        log_error("listen %s: tls: %s", url, nng_strerror(rv));
        nng_listener_close(l);
        return net_status(rv);
    }
    if ((rv = nng_listener_start(l, 0)) != 0) {
        log_error("listen %s: %s", url, nng_strerror(rv));
        nng_listener_close(l);
        return rv == NNG_EADDRINUSE ? TRELLIS_UNAVAILABLE : net_status(rv);
    }
    if (port_out) {
        nng_sockaddr sa;
        if (nng_listener_get_addr(l, NNG_OPT_LOCADDR, &sa) == 0) {
            if (sa.s_family == NNG_AF_INET)
                *port_out = ntohs(sa.s_in.sa_port);
            else if (sa.s_family == NNG_AF_INET6)
                *port_out = ntohs(sa.s_in6.sa_port);
        }
    }
    return TRELLIS_OK;
}

int net_dial(nng_socket s, const char *url, const net_tls *tls)
{
    nng_dialer d;
    return net_dial_get(s, url, tls, &d);
}

int net_dial_get(nng_socket s, const char *url, const net_tls *tls, nng_dialer *out)
{
    nng_dialer d;
    int rv;
    /* With TLS configured every endpoint speaks it: tcp:// means tls+tcp://. */
    char up[NET_URL_MAX + 8];
    if (tls && strncmp(url, "tcp", 3) == 0) {
        snprintf(up, sizeof(up), "tls+%s", url);
        url = up;
    }
    if (is_tls_url(url) && !tls) {
        log_error("dial %s: tls+tcp needs tls.ca_file", url);
        return TRELLIS_INVALID;
    }
    if ((rv = nng_dialer_create(&d, s, url)) != 0)
        return net_status(rv);
    if (is_tls_url(url) && (rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, tls->client)) != 0) {
        nng_dialer_close(d);
        return net_status(rv);
    }
    nng_dialer_set_ms(d, NNG_OPT_RECONNMINT, 50);
    nng_dialer_set_ms(d, NNG_OPT_RECONNMAXT, 1000);
    if ((rv = nng_dialer_start(d, NNG_FLAG_NONBLOCK)) != 0) {
        nng_dialer_close(d);
        return net_status(rv);
    }
    *out = d;
    return TRELLIS_OK;
}

/* ---- rpc_conn ----------------------------------------------------------------- */

struct rpc_conn {
    nng_socket sock;
    wire_limits lim;
    char token[NET_TOKEN_MAX];
};

int rpc_open(const char *url, const net_tls *tls, const wire_limits *lim, const char *token,
             rpc_conn **out)
{
    rpc_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return TRELLIS_INTERNAL;
    int rv = nng_req0_open(&c->sock);
    if (rv != 0) {
        free(c);
        return net_status(rv);
    }
    c->lim = *lim;
    snprintf(c->token, sizeof(c->token), "%s", token ? token : "");
    /* A lost reply is retried by the caller at its own deadline, not by nng. */
    nng_socket_set_ms(c->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
    int rc = net_set_limits(c->sock, lim->max_message, 1000, 1000);
    if (rc == TRELLIS_OK)
        rc = net_dial(c->sock, url, tls);
    if (rc != TRELLIS_OK) {
        nng_close(c->sock);
        free(c);
        return rc;
    }
    *out = c;
    return TRELLIS_OK;
}

void rpc_close(rpc_conn *c)
{
    if (!c)
        return;
    nng_close(c->sock);
    free(c);
}

int rpc_call(rpc_conn *c, Trellis__Envelope *env, int timeout_ms, wire_arena *a,
             Trellis__Envelope **reply)
{
    *reply = NULL;
    env->version = WIRE_VERSION;
    if (c->token[0]) {
        env->auth.data = (uint8_t *)c->token;
        env->auth.len = strlen(c->token);
    }
    nng_msg *m;
    int rc = wire_to_msg(env, &m);
    if (rc != TRELLIS_OK)
        return rc;
    nng_socket_set_ms(c->sock, NNG_OPT_SENDTIMEO, timeout_ms);
    nng_socket_set_ms(c->sock, NNG_OPT_RECVTIMEO, timeout_ms);
    int rv = nng_sendmsg(c->sock, m, 0);
    if (rv != 0) {
        nng_msg_free(m);
        return net_status(rv);
    }
    rv = nng_recvmsg(c->sock, &m, 0);
    if (rv != 0)
        return net_status(rv);
    rc = wire_decode(a, nng_msg_body(m), nng_msg_len(m), &c->lim, reply);
    nng_msg_free(m);
    if (rc != TRELLIS_OK)
        return rc;
    if ((*reply)->body_case == TRELLIS__ENVELOPE__BODY_ERROR) {
        int st = (int)(*reply)->error->status;
        return st == TRELLIS_OK ? TRELLIS_INTERNAL : st;
    }
    return TRELLIS_OK;
}

int rpc_call_url(const char *url, const net_tls *tls, const wire_limits *lim, const char *token,
                 Trellis__Envelope *env, int timeout_ms, wire_arena *a, Trellis__Envelope **reply)
{
    rpc_conn *c;
    int rc = rpc_open(url, tls, lim, token, &c);
    if (rc != TRELLIS_OK)
        return rc;
    rc = rpc_call(c, env, timeout_ms, a, reply);
    rpc_close(c);
    return rc;
}
