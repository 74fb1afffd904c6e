/*
 * test_tls.c - base/tls.c over real sockets: contexts refused for missing
 * or broken files and for a key under a passphrase, a handshake and a megabyte each way through
 * base/conn (records larger than a read, writes the socket takes in pieces), and the handshakes
 * that must fail: a server name the certificate does not carry, a CA that did not sign the server,
 * a client without a certificate when the server requires one. Certificates are made here with
 * OpenSSL (a CA and a leaf for "localhost", EC P-256).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tsupport.h"
#include "base/clock.h"
#include "base/conn.h"
#include "base/tls.h"

TestSuite(tls, .timeout = 60);

#define BULK (1u << 20)

static char dir[64];
static char ca_path[128], other_ca_path[128], leaf_path[128], client_path[128], locked_path[128];

/* ---- certificates ------------------------------------------------------------------------- */

typedef struct cert {
    EVP_PKEY *key;
    X509 *x;
} cert;

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    cr_assert(e);
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
}

/* A certificate for cn, signed by ca (self-signed when ca is NULL). */
static cert make_cert(const char *cn, const cert *ca, const char *san)
{
    cert c = {EVP_EC_gen("P-256"), X509_new()};
    cr_assert(c.key && c.x);
    X509_set_version(c.x, 2);
    static long serial = 1;
    ASN1_INTEGER_set(X509_get_serialNumber(c.x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(c.x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(c.x), 86400);
    X509_set_pubkey(c.x, c.key);
    X509_NAME *name = X509_get_subject_name(c.x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509 *issuer = ca ? ca->x : c.x;
    X509_set_issuer_name(c.x, X509_get_subject_name(issuer));
    add_ext(c.x, issuer, NID_basic_constraints, ca ? "CA:FALSE" : "critical,CA:TRUE");
    if (!ca)
        add_ext(c.x, issuer, NID_key_usage, "critical,keyCertSign,cRLSign");
    if (san)
        add_ext(c.x, issuer, NID_subject_alt_name, san);
    cr_assert(X509_sign(c.x, ca ? ca->key : c.key, EVP_sha256()) > 0);
    return c;
}

static void write_pem(const char *path, const cert *c, int with_key)
{
    FILE *f = fopen(path, "w");
    cr_assert(f);
    cr_assert(PEM_write_X509(f, c->x));
    if (with_key)
        cr_assert(PEM_write_PrivateKey(f, c->key, NULL, NULL, 0, NULL, NULL));
    fclose(f);
}

static void cert_free(cert *c)
{
    EVP_PKEY_free(c->key);
    X509_free(c->x);
}

static void make_files(void)
{
    snprintf(dir, sizeof(dir), "/tmp/trellis-tls-XXXXXX");
    cr_assert(mkdtemp(dir));
    snprintf(ca_path, sizeof(ca_path), "%s/ca.pem", dir);
    snprintf(other_ca_path, sizeof(other_ca_path), "%s/other-ca.pem", dir);
    snprintf(leaf_path, sizeof(leaf_path), "%s/server.pem", dir);
    snprintf(client_path, sizeof(client_path), "%s/client.pem", dir);
    cert ca = make_cert("test CA", NULL, NULL), other = make_cert("other CA", NULL, NULL);
    cert leaf = make_cert("localhost", &ca, "DNS:localhost");
    cert client = make_cert("a client", &ca, NULL);
    write_pem(ca_path, &ca, 0);
    write_pem(other_ca_path, &other, 0);
    write_pem(leaf_path, &leaf, 1);
    write_pem(client_path, &client, 1);
    /* The server's certificate with its key under a passphrase. */
    snprintf(locked_path, sizeof(locked_path), "%s/locked.pem", dir);
    FILE *f = fopen(locked_path, "w");
    cr_assert(f && PEM_write_X509(f, leaf.x));
    cr_assert(PEM_write_PrivateKey(f, leaf.key, EVP_aes_128_cbc(), NULL, 0, NULL, "secret"));
    fclose(f);
    cert_free(&ca);
    cert_free(&other);
    cert_free(&leaf);
    cert_free(&client);
}

static void remove_files(void)
{
    const char *files[] = {ca_path, other_ca_path, leaf_path, client_path, locked_path};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        unlink(files[i]);
    rmdir(dir);
}

static tls_ctx *ctx_or_fail(const tls_opts *o)
{
    tls_ctx *t;
    char err[256] = "";
    int rc = tls_ctx_new(o, &t, err, sizeof(err));
    cr_assert_eq(rc, TRELLIS_OK, "tls_ctx_new: %s", err);
    return t;
}

/* ---- contexts ---------------------------------------------------------------------------- */

Test(tls, contexts_refuse_missing_and_broken_files)
{
    make_files();
    char bad[160];
    snprintf(bad, sizeof(bad), "%s/garbage.pem", dir);
    FILE *f = fopen(bad, "w");
    fputs("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n", f);
    fclose(f);
    char missing[160];
    snprintf(missing, sizeof(missing), "%s/missing.pem", dir);
    struct {
        tls_opts o;
        const char *names; /* what the error must mention */
    } cases[] = {
        {{NULL, NULL, NULL, 0, 1}, "cert_key_file"},    {{NULL, NULL, NULL, 0, 0}, "ca_file"},
        {{NULL, missing, NULL, 0, 1}, missing},         {{NULL, bad, NULL, 0, 1}, bad},
        {{missing, NULL, NULL, 0, 0}, missing},         {{bad, NULL, NULL, 0, 0}, bad},
        {{ca_path, ca_path, NULL, 0, 1}, ca_path},      /* a certificate without its key */
        {{NULL, locked_path, NULL, 0, 1}, locked_path}, /* refused, never prompted for */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        tls_ctx *t = NULL;
        char err[512] = "";
        int rc = tls_ctx_new(&cases[i].o, &t, err, sizeof(err));
        cr_assert_eq(rc, TRELLIS_INVALID, "case %zu: %s", i, trellis_status_name(rc));
        cr_assert_null(t);
        cr_assert(strstr(err, cases[i].names), "case %zu: \"%s\" does not name %s", i, err,
                  cases[i].names);
    }
    unlink(bad);
    remove_files();
}

/* ---- sessions over base/conn --------------------------------------------------------------- */

typedef struct side {
    conn *c;
    int ready, closed, status;
    size_t got;  /* bytes received */
    int echo;    /* the server writes back what it reads */
    uint8_t *rx; /* the client keeps what comes back */
} side;

static size_t on_input(conn *c, uint8_t *data, size_t len)
{
    side *s = conn_arg(c);
    if (s->echo)
        conn_write(c, data, len);
    else if (s->got + len <= BULK)
        memcpy(s->rx + s->got, data, len);
    s->got += len;
    return len;
}

static void on_close(conn *c, int status)
{
    side *s = conn_arg(c);
    s->closed = 1;
    s->status = status;
    s->c = NULL;
}

static void on_ready(conn *c)
{
    side *s = conn_arg(c);
    s->ready = 1;
}

static const conn_proto proto = {on_input, on_close, on_ready, NULL, NULL, NULL};

/* A client and a server session on the two ends of a socket pair, on one
 * loop. With bulk the client sends BULK bytes once ready and the run
 * lasts until they all came back; otherwise until both are ready or one
 * closed. Returns 1 if the handshake completed on both sides. */
static int run_pair(const tls_opts *so, const tls_opts *co, int bulk)
{
    tls_ctx *sc = ctx_or_fail(so), *cc = ctx_or_fail(co);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    ev_loop *l;
    cr_assert_eq(ev_loop_new(&l), TRELLIS_OK);
    side srv = {0}, cli = {0};
    srv.echo = 1;
    cli.rx = malloc(BULK);
    conn_opts o = {0};
    cr_assert_eq(tls_session(sc, sv[0], &o.transport, &o.transport_arg), TRELLIS_OK);
    cr_assert_eq(conn_new(l, sv[0], &proto, &srv, &o, &srv.c), TRELLIS_OK);
    o = (conn_opts){0};
    cr_assert_eq(tls_session(cc, sv[1], &o.transport, &o.transport_arg), TRELLIS_OK);
    cr_assert_eq(conn_new(l, sv[1], &proto, &cli, &o, &cli.c), TRELLIS_OK);
    uint8_t *tx = malloc(BULK);
    for (size_t i = 0; i < BULK; i++)
        tx[i] = (uint8_t)(i * 131 + (i >> 9));
    int sent = 0;
    uint64_t end = clock_mono_ms() + 20000;
    while (clock_mono_ms() < end && !srv.closed && !cli.closed) {
        if (cli.ready && srv.ready && !bulk)
            break;
        if (cli.ready && bulk && !sent) {
            /* In pieces of every size, as callers write. */
            for (size_t at = 0, n = 1; at < BULK; at += n, n = n * 3 % 70001 + 1)
                conn_write(cli.c, tx + at, n < BULK - at ? n : BULK - at);
            sent = 1;
        }
        if (bulk && cli.got >= BULK)
            break;
        ev_loop_poll(l, 100);
    }
    int ok = cli.ready && srv.ready && !cli.closed && !srv.closed;
    if (bulk) {
        cr_assert(ok, "the session closed: client %s, server %s", trellis_status_name(cli.status),
                  trellis_status_name(srv.status));
        cr_assert_eq(cli.got, BULK, "%zu of %u bytes came back", cli.got, BULK);
        cr_assert(memcmp(cli.rx, tx, BULK) == 0, "the bytes came back changed");
        cr_assert_eq(srv.got, BULK);
    }
    if (srv.c)
        conn_close(srv.c, TRELLIS_OK);
    if (cli.c)
        conn_close(cli.c, TRELLIS_OK);
    for (int i = 0; i < 10 && (!srv.closed || !cli.closed); i++)
        ev_loop_poll(l, 10);
    cr_assert(srv.closed && cli.closed);
    ev_loop_free(l);
    free(tx);
    free(cli.rx);
    tls_ctx_free(sc);
    tls_ctx_free(cc);
    return ok;
}

Test(tls, a_megabyte_each_way)
{
    make_files();
    tls_opts so = {NULL, leaf_path, NULL, 0, 1};
    tls_opts co = {ca_path, NULL, "localhost", 0, 0};
    cr_assert(run_pair(&so, &co, 1));
    /* The chain alone when no name is expected. */
    co.server_name = NULL;
    cr_assert(run_pair(&so, &co, 1));
    /* Mutual: a client with a certificate from the CA. */
    tls_opts mso = {ca_path, leaf_path, NULL, 1, 1};
    tls_opts mco = {ca_path, client_path, "localhost", 0, 0};
    cr_assert(run_pair(&mso, &mco, 1));
    remove_files();
}

Test(tls, handshakes_that_must_fail)
{
    make_files();
    tls_opts so = {NULL, leaf_path, NULL, 0, 1};
    tls_opts wrong_name = {ca_path, NULL, "elsewhere.example", 0, 0};
    cr_assert_not(run_pair(&so, &wrong_name, 0), "a server name the certificate lacks");
    tls_opts wrong_ca = {other_ca_path, NULL, NULL, 0, 0};
    cr_assert_not(run_pair(&so, &wrong_ca, 0), "a server signed by another CA");
    tls_opts mso = {ca_path, leaf_path, NULL, 1, 1};
    tls_opts no_cert = {ca_path, NULL, NULL, 0, 0};
    cr_assert_not(run_pair(&mso, &no_cert, 0), "a client without a certificate (mutual)");
    tls_opts co = {ca_path, NULL, NULL, 0, 0};
    cr_assert(run_pair(&so, &co, 0), "the same server without mutual");
    remove_files();
}
