/*
 * glob.c - Redis-style glob patterns (glob.h).
 */
#include "base/glob.h"

static uint8_t fold(uint8_t c, int nocase)
{
    return nocase && c >= 'A' && c <= 'Z' ? (uint8_t)(c - 'A' + 'a') : c;
}

/* Matches one pattern element at p[*pi] against byte c; moves *pi past the
 * element. 1 on a match. A `[` without its `]` takes the rest of the
 * pattern as its class, as Redis does. */
static int match_one(const uint8_t *p, size_t plen, size_t *pi, uint8_t c, int nocase)
{
    size_t i = *pi;
    uint8_t pc = p[i];
    if (pc == '?') {
        *pi = i + 1;
        return 1;
    }
    if (pc == '\\' && i + 1 < plen) {
        *pi = i + 2;
        return fold(p[i + 1], nocase) == fold(c, nocase);
    }
    if (pc != '[') {
        *pi = i + 1;
        return fold(pc, nocase) == fold(c, nocase);
    }
    i++;
    int neg = i < plen && p[i] == '^';
    if (neg)
        i++;
    int hit = 0;
    uint8_t fc = fold(c, nocase);
    while (i < plen && p[i] != ']') {
        if (p[i] == '\\' && i + 1 < plen) {
            hit |= fold(p[i + 1], nocase) == fc;
            i += 2;
        } else if (i + 2 < plen && p[i + 1] == '-' && p[i + 2] != ']') {
            uint8_t a = fold(p[i], nocase), b = fold(p[i + 2], nocase);
            if (a > b) {
                uint8_t t = a;
                a = b;
                b = t;
            }
            hit |= fc >= a && fc <= b;
            i += 3;
        } else {
            hit |= fold(p[i], nocase) == fc;
            i++;
        }
    }
    *pi = i < plen ? i + 1 : i;
    return neg ? !hit : hit;
}

int glob_match(const uint8_t *p, size_t plen, const uint8_t *s, size_t slen, int nocase)
{
    size_t pi = 0, si = 0;
    size_t star_p = (size_t)-1, star_s = 0;
    while (si < slen) {
        if (pi < plen && p[pi] == '*') {
            while (pi < plen && p[pi] == '*')
                pi++;
            if (pi == plen)
                return 1;
            star_p = pi;
            star_s = si;
            continue;
        }
        size_t next = pi;
        if (pi < plen && match_one(p, plen, &next, s[si], nocase)) {
            pi = next;
            si++;
            continue;
        }
        if (star_p == (size_t)-1)
            return 0;
        /* Let the last star take one more byte and try again from there. */
        pi = star_p;
        si = ++star_s;
    }
    while (pi < plen && p[pi] == '*')
        pi++;
    return pi == plen;
}
