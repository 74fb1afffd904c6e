/*
 * tls.c - TLS sessions as a base/conn transport, over OpenSSL (tls.h).
 */
#include "base/tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "trellis/trellis_status.h"

#define TLS_COALESCE (16u << 10) /* small pieces are gathered into records this big */

struct tls_ctx {
    SSL_CTX *ctx;
    int server;
    char server_name[256];
};

typedef struct tls_sess {
    SSL *ssl;
    uint8_t *gather; /* TLS_COALESCE bytes: small output pieces made one record */
} tls_sess;

const char *tls_version(void)
{
    return OpenSSL_version(OPENSSL_VERSION);
}

static void ssl_err(char *err, size_t errlen, const char *what, const char *file)
{
    unsigned long e = ERR_get_error();
    char why[160] = "unknown error";
    if (e)
        ERR_error_string_n(e, why, sizeof(why));
    ERR_clear_error();
    snprintf(err, errlen, "%s%s%s: %s", what, file ? " " : "", file ? file : "", why);
}

/* A key file with a passphrase is refused rather than prompted for (the
 * control plane refuses it too: there is no passphrase setting). */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0;
}

int tls_ctx_new(const tls_opts *o, tls_ctx **out, char *err, size_t errlen)
{
    *out = NULL;
    int has_ca = o->ca_file && o->ca_file[0];
    int has_cert = o->cert_key_file && o->cert_key_file[0];
    if (o->server && !has_cert) {
        snprintf(err, errlen, "a TLS server needs tls.cert_key_file");
        return TRELLIS_INVALID;
    }
    if (!o->server && !has_ca) {
        snprintf(err, errlen, "a TLS client needs tls.ca_file");
        return TRELLIS_INVALID;
    }
    tls_ctx *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return TRELLIS_INTERNAL;
    }
    t->server = o->server;
    snprintf(t->server_name, sizeof(t->server_name), "%s", o->server_name ? o->server_name : "");
    t->ctx = SSL_CTX_new(o->server ? TLS_server_method() : TLS_client_method());
    if (!t->ctx) {
        ssl_err(err, errlen, "SSL_CTX_new", NULL);
        free(t);
        return TRELLIS_INTERNAL;
    }
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
    SSL_CTX_set_default_passwd_cb(t->ctx, no_passphrase);
    /* A write may be retried from a buffer that moved, and may be partial:
     * the connection's output queue works that way. */
    SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                 SSL_MODE_RELEASE_BUFFERS);
    int rc = TRELLIS_OK;
    if (has_cert && (SSL_CTX_use_certificate_chain_file(t->ctx, o->cert_key_file) != 1 ||
                     SSL_CTX_use_PrivateKey_file(t->ctx, o->cert_key_file, SSL_FILETYPE_PEM) != 1 ||
                     SSL_CTX_check_private_key(t->ctx) != 1)) {
        ssl_err(err, errlen, "certificate and key", o->cert_key_file);
        rc = TRELLIS_INVALID;
    }
    if (rc == TRELLIS_OK && has_ca &&
        SSL_CTX_load_verify_locations(t->ctx, o->ca_file, NULL) != 1) {
        ssl_err(err, errlen, "CA", o->ca_file);
        rc = TRELLIS_INVALID;
    }
    if (rc != TRELLIS_OK) {
        tls_ctx_free(t);
        return rc;
    }
    if (!o->server)
        SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
    else if (o->mutual)
        SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    *out = t;
    return TRELLIS_OK;
}

void tls_ctx_free(tls_ctx *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    free(t);
}

/* ---- the transport ------------------------------------------------------------------ */

/* Maps an SSL_ERROR_* after a call that did not complete to errno and the
 * readiness the session waits for. Returns -1 (read/write) or the
 * handshake's answer through *again. */
static int ssl_wait(SSL *ssl, int ret, uint32_t *want)
{
    switch (SSL_get_error(ssl, ret)) {
    case SSL_ERROR_WANT_READ:
        *want = EV_READ;
        errno = EAGAIN;
        return 1;
    case SSL_ERROR_WANT_WRITE:
        *want = EV_WRITE;
        errno = EAGAIN;
        return 1;
    case SSL_ERROR_ZERO_RETURN:
        return 0; /* closed cleanly */
    default:
        ERR_clear_error();
        errno = EIO;
        return -1;
    }
}

static ssize_t t_read(void *arg, int fd, void *buf, size_t n, uint32_t *want)
{
    tls_sess *s = arg;
    (void)fd;
    size_t got = 0;
    int r = SSL_read_ex(s->ssl, buf, n, &got);
    if (r == 1)
        return (ssize_t)got;
    int w = ssl_wait(s->ssl, r, want);
    return w == 0 ? 0 : -1;
}

/* Writes one buffer: bytes taken, or -1 (errno EAGAIN: *want says why). */
static ssize_t write_one(tls_sess *s, const void *p, size_t n, uint32_t *want)
{
    size_t put = 0;
    int r = SSL_write_ex(s->ssl, p, n, &put);
    if (r == 1)
        return (ssize_t)put;
    ssl_wait(s->ssl, r, want);
    return -1;
}

static ssize_t t_writev(void *arg, int fd, const struct iovec *iov, int n, uint32_t *want)
{
    tls_sess *s = arg;
    (void)fd;
    size_t total = 0;
    int i = 0;
    while (i < n) {
        const uint8_t *p;
        size_t len;
        int next;
        if (iov[i].iov_len >= TLS_COALESCE) {
            p = iov[i].iov_base;
            len = iov[i].iov_len;
            next = i + 1;
        } else {
            /* Small pieces in one record: each would be a record of its own. */
            len = 0;
            next = i;
            while (next < n && len + iov[next].iov_len <= TLS_COALESCE) {
                memcpy(s->gather + len, iov[next].iov_base, iov[next].iov_len);
                len += iov[next].iov_len;
                next++;
            }
            if (next == i) { /* cannot happen: a small piece fits */
                next = i + 1;
                p = iov[i].iov_base;
                len = iov[i].iov_len;
            } else {
                p = s->gather;
            }
        }
        ssize_t w = write_one(s, p, len, want);
        if (w < 0)
            return total ? (ssize_t)total : -1;
        total += (size_t)w;
        if ((size_t)w < len)
            break; /* partial: the caller comes back with the rest */
        i = next;
    }
    return (ssize_t)total;
}

static int t_handshake(void *arg, int fd, uint32_t *want)
{
    tls_sess *s = arg;
    (void)fd;
    int r = SSL_do_handshake(s->ssl);
    if (r == 1)
        return 0;
    return ssl_wait(s->ssl, r, want) == 1 ? 1 : -1;
}

static size_t t_pending(void *arg)
{
    tls_sess *s = arg;
    return (size_t)SSL_pending(s->ssl);
}

static void t_free(void *arg)
{
    tls_sess *s = arg;
    if (!s)
        return;
    SSL_free(s->ssl);
    free(s->gather);
    free(s);
}

static const conn_transport tls_transport = {t_read, t_writev, t_handshake, t_pending, t_free};

int tls_session(const tls_ctx *t, int fd, const conn_transport **tr, void **arg)
{
    tls_sess *s = calloc(1, sizeof(*s));
    if (!s || !(s->gather = malloc(TLS_COALESCE)) || !(s->ssl = SSL_new(t->ctx)) ||
        SSL_set_fd(s->ssl, fd) != 1) {
        t_free(s);
        return TRELLIS_INTERNAL;
    }
    if (t->server) {
        SSL_set_accept_state(s->ssl);
    } else {
        SSL_set_connect_state(s->ssl);
        /* Without a server name the chain alone is checked: any
         * certificate of the cluster's CA at any address, as on the
         * control plane (docs/security.md, "Server names"). */
        const char *name = t->server_name;
        if (name[0] &&
            (SSL_set1_host(s->ssl, name) != 1 || SSL_set_tlsext_host_name(s->ssl, name) != 1)) {
            t_free(s);
            return TRELLIS_INTERNAL;
        }
    }
    *tr = &tls_transport;
    *arg = s;
    return TRELLIS_OK;
}
