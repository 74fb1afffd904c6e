/*
 * memtable.c - open-addressing hash table of key -> value bytes.
 */
#include "kvs/memtable.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "placement/ring.h"

#define MT_MIN_CAP         16
#define MT_MALLOC_OVERHEAD 16         /* glibc's per-chunk header, counted in bytes */
#define MT_HUGE_BYTES      (2u << 20) /* slot arrays from this size ask for huge pages */

typedef struct mt_entry {
    uint32_t klen;
    uint32_t vlen;
    uint32_t vcap;
    uint32_t atime;
    uint32_t sidx;  /* slotted tables: the entry's index in its key slot's list */
    uint8_t data[]; /* key, then value (vcap bytes) */
} mt_entry;

typedef struct mt_slot {
    uint64_t hash;
    mt_entry *e; /* NULL: empty */
} mt_slot;

/* The entries of one key slot (slot.h), in no order. */
typedef struct mt_list {
    mt_slot *v;
    uint32_t n, cap;
} mt_list;

struct memtable {
    mt_slot *slots;
    size_t cap;     /* power of two */
    unsigned shift; /* 64 - log2(cap): home slot = mixed hash >> shift */
    size_t count;
    size_t entry_bytes;
    mt_list *lists; /* slotted tables: SLOT_COUNT lists, else NULL */
    size_t list_bytes;
};

static unsigned shift_for(size_t cap)
{
    return 64u - (unsigned)__builtin_ctzll(cap);
}

/* The home slot: the top bits of the hash times an odd constant (the
 * golden ratio's), so every bit of the hash counts. A ring position's top
 * bits are its key slot, shared by every key of the slot; mixing spreads
 * the keys of one slot over the whole table. */
static size_t home_of(const memtable *t, uint64_t h)
{
    return (size_t)(((h ^ (h >> 29)) * UINT64_C(0x9e3779b97f4a7c15)) >> t->shift);
}

static size_t entry_size(uint32_t klen, uint32_t vcap)
{
    return sizeof(mt_entry) + klen + vcap;
}

static size_t entry_cost(const mt_entry *e)
{
    return entry_size(e->klen, e->vcap) + MT_MALLOC_OVERHEAD;
}

/* A zeroed slot array. Large ones ask for transparent huge pages: lookups
 * land anywhere in the array, and with 4 KiB pages nearly every one also
 * misses the TLB (a page walk costs more in a virtual machine). */
static mt_slot *slots_alloc(size_t cap)
{
    mt_slot *v = calloc(cap, sizeof(mt_slot));
    size_t bytes = cap * sizeof(mt_slot);
    if (v && bytes >= MT_HUGE_BYTES) {
        uintptr_t lo = ((uintptr_t)v + 4095) & ~(uintptr_t)4095;
        uintptr_t hi = ((uintptr_t)v + bytes) & ~(uintptr_t)4095;
        if (hi > lo)
            madvise((void *)lo, hi - lo, MADV_HUGEPAGE); /* a hint: failure is harmless */
    }
    return v;
}

static memtable *mt_new(size_t hint, int slotted)
{
    memtable *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    size_t cap = MT_MIN_CAP;
    while (cap * 3 / 4 < hint)
        cap *= 2;
    t->slots = slots_alloc(cap);
    if (slotted)
        t->lists = calloc(SLOT_COUNT, sizeof(mt_list));
    if (!t->slots || (slotted && !t->lists)) {
        free(t->slots);
        free(t);
        return NULL;
    }
    t->cap = cap;
    t->shift = shift_for(cap);
    return t;
}

memtable *memtable_new(size_t hint)
{
    return mt_new(hint, 0);
}

memtable *memtable_new_slotted(size_t hint)
{
    return mt_new(hint, 1);
}

void memtable_clear(memtable *t)
{
    for (size_t i = 0; i < t->cap; i++) {
        free(t->slots[i].e);
        t->slots[i].e = NULL;
    }
    if (t->lists) {
        for (size_t i = 0; i < SLOT_COUNT; i++) {
            free(t->lists[i].v);
            t->lists[i] = (mt_list){0};
        }
    }
    t->count = 0;
    t->entry_bytes = 0;
    t->list_bytes = 0;
}

void memtable_free(memtable *t)
{
    if (!t)
        return;
    memtable_clear(t);
    free(t->lists);
    free(t->slots);
    free(t);
}

size_t memtable_count(const memtable *t)
{
    return t->count;
}

size_t memtable_bytes(const memtable *t)
{
    size_t lists = t->lists ? SLOT_COUNT * sizeof(mt_list) + t->list_bytes : 0;
    return t->entry_bytes + t->cap * sizeof(mt_slot) + sizeof(*t) + lists;
}

/* ---- the lists of key slots (slotted tables) ------------------------------------------------ */

static mt_list *list_of(const memtable *t, uint64_t h)
{
    return &t->lists[ring_hash_slot(h)];
}

/* Adds entry e (hash h) to its slot's list. 0, or -1 out of memory. */
static int list_add(memtable *t, uint64_t h, mt_entry *e)
{
    mt_list *l = list_of(t, h);
    if (l->n == l->cap) {
        uint32_t ncap = l->cap ? l->cap * 2 : 4;
        mt_slot *v = realloc(l->v, ncap * sizeof(*v));
        if (!v)
            return -1;
        t->list_bytes += (ncap - l->cap) * sizeof(*v);
        l->v = v;
        l->cap = ncap;
    }
    e->sidx = l->n;
    l->v[l->n++] = (mt_slot){h, e};
    return 0;
}

/* Takes entry e (hash h) off its slot's list: the last entry moves into
 * its place. An emptied list is freed (a slot handed off leaves nothing). */
static void list_del(memtable *t, uint64_t h, const mt_entry *e)
{
    mt_list *l = list_of(t, h);
    uint32_t i = e->sidx;
    l->v[i] = l->v[--l->n];
    l->v[i].e->sidx = i;
    if (l->n == 0) {
        t->list_bytes -= l->cap * sizeof(*l->v);
        free(l->v);
        *l = (mt_list){0};
    }
}

/* Index of the key's slot, or of the empty slot where it would go. */
static size_t mt_find(const memtable *t, uint64_t h, const void *key, size_t klen)
{
    size_t mask = t->cap - 1;
    size_t i = home_of(t, h);
    for (;;) {
        const mt_slot *s = &t->slots[i];
        if (!s->e)
            return i;
        if (s->hash == h && s->e->klen == klen && memcmp(s->e->data, key, klen) == 0)
            return i;
        i = (i + 1) & mask;
    }
}

static int mt_grow(memtable *t)
{
    size_t ncap = t->cap * 2;
    mt_slot *ns = slots_alloc(ncap);
    if (!ns)
        return -1;
    mt_slot *old = t->slots;
    size_t ocap = t->cap;
    t->slots = ns;
    t->cap = ncap;
    t->shift = shift_for(ncap);
    size_t mask = ncap - 1;
    for (size_t i = 0; i < ocap; i++) {
        if (!old[i].e)
            continue;
        size_t j = home_of(t, old[i].hash);
        while (ns[j].e)
            j = (j + 1) & mask;
        ns[j] = old[i];
    }
    free(old);
    return 0;
}

static void view_of(const mt_slot *s, mt_entry_view *out)
{
    const mt_entry *e = s->e;
    out->hash = s->hash;
    out->key = e->data;
    out->klen = e->klen;
    out->val = e->data + e->klen;
    out->vlen = e->vlen;
    out->atime = e->atime;
}

int memtable_get(const memtable *t, uint64_t h, const void *key, size_t klen, mt_entry_view *out)
{
    size_t i = mt_find(t, h, key, klen);
    if (!t->slots[i].e)
        return 0;
    view_of(&t->slots[i], out);
    return 1;
}

int memtable_get_touch(memtable *t, uint64_t h, const void *key, size_t klen, uint32_t atime,
                       mt_entry_view *out)
{
    size_t i = mt_find(t, h, key, klen);
    if (!t->slots[i].e)
        return 0;
    if (atime)
        t->slots[i].e->atime = atime;
    view_of(&t->slots[i], out);
    return 1;
}

void memtable_prefetch(const memtable *t, uint64_t h, int stage)
{
    const mt_slot *s = &t->slots[home_of(t, h)];
    if (stage == 0) {
        __builtin_prefetch(s);
        return;
    }
    /* The key is at its home slot or just after it (the table is at most
     * three quarters full); its entry's header and key share a line. */
    for (int k = 0; k < 2 && s < t->slots + t->cap; k++, s++) {
        if (s->e && s->hash == h) {
            __builtin_prefetch(s->e);
            return;
        }
    }
}

void memtable_touch(memtable *t, uint64_t h, const void *key, size_t klen, uint32_t atime)
{
    size_t i = mt_find(t, h, key, klen);
    if (t->slots[i].e)
        t->slots[i].e->atime = atime;
}

int memtable_put(memtable *t, uint64_t h, const void *key, size_t klen, const void *val,
                 size_t vlen)
{
    if (klen > UINT32_MAX || vlen > UINT32_MAX)
        return -1;
    if ((t->count + 1) * 4 > t->cap * 3 && mt_grow(t) != 0)
        return -1;
    size_t i = mt_find(t, h, key, klen);
    mt_slot *s = &t->slots[i];
    if (s->e && s->e->vcap >= vlen && s->e->vcap <= vlen + vlen / 2 + 32) {
        /* Fits, and does not waste much: overwrite in place. */
        memcpy(s->e->data + klen, val, vlen);
        s->e->vlen = (uint32_t)vlen;
        return 0;
    }
    uint32_t vcap = (uint32_t)vlen;
    mt_entry *e = malloc(entry_size((uint32_t)klen, vcap));
    if (!e)
        return -1;
    e->klen = (uint32_t)klen;
    e->vlen = (uint32_t)vlen;
    e->vcap = vcap;
    e->atime = s->e ? s->e->atime : 0;
    e->sidx = 0;
    memcpy(e->data, key, klen);
    memcpy(e->data + klen, val, vlen);
    if (s->e) {
        if (t->lists) {
            e->sidx = s->e->sidx;
            list_of(t, h)->v[e->sidx].e = e;
        }
        t->entry_bytes -= entry_cost(s->e);
        free(s->e);
    } else {
        if (t->lists && list_add(t, h, e) != 0) {
            free(e);
            return -1;
        }
        t->count++;
        s->hash = h;
    }
    s->e = e;
    t->entry_bytes += entry_cost(e);
    return 0;
}

int memtable_del(memtable *t, uint64_t h, const void *key, size_t klen)
{
    size_t i = mt_find(t, h, key, klen);
    if (!t->slots[i].e)
        return 0;
    if (t->lists)
        list_del(t, h, t->slots[i].e);
    t->entry_bytes -= entry_cost(t->slots[i].e);
    free(t->slots[i].e);
    t->slots[i].e = NULL;
    t->count--;
    /* Backward-shift: pull later entries of the probe run into the hole so
     * that lookups never stop early at it. */
    size_t mask = t->cap - 1;
    size_t hole = i;
    size_t j = (i + 1) & mask;
    while (t->slots[j].e) {
        size_t home = home_of(t, t->slots[j].hash);
        /* Move j into the hole unless its home lies cyclically in (hole, j]. */
        int in_range = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!in_range) {
            t->slots[hole] = t->slots[j];
            t->slots[j].e = NULL;
            hole = j;
        }
        j = (j + 1) & mask;
    }
    return 1;
}

int memtable_next(const memtable *t, size_t *cursor, mt_entry_view *out)
{
    for (size_t i = *cursor; i < t->cap; i++) {
        if (t->slots[i].e) {
            view_of(&t->slots[i], out);
            *cursor = i + 1;
            return 1;
        }
    }
    *cursor = t->cap;
    return 0;
}

int memtable_walk(const memtable *t, size_t *cursor, size_t *slots_left, mt_entry_view *out)
{
    while (*slots_left > 0) {
        if (*cursor >= t->cap) {
            *cursor = 0;
            return 0;
        }
        size_t i = (*cursor)++;
        (*slots_left)--;
        if (t->slots[i].e) {
            view_of(&t->slots[i], out);
            return 1;
        }
    }
    return 0;
}

void memtable_range_start(const memtable *t, uint64_t lo, uint64_t hi, mt_range *r)
{
    r->lo = lo;
    r->hi = hi;
    r->slot = t->lists ? ring_hash_slot(lo) : 0;
    r->visited = 0;
}

/* A slotted table walks the lists of the key slots from lo's to hi's; any
 * other walks the whole table. */
int memtable_range_next(const memtable *t, mt_range *r, mt_entry_view *out)
{
    if (!t->lists) {
        for (; r->slot < t->cap; r->slot++) {
            const mt_slot *s = &t->slots[r->slot];
            if (s->e && s->hash >= r->lo && s->hash <= r->hi) {
                view_of(s, out);
                r->slot++;
                return 1;
            }
        }
        return 0;
    }
    for (; r->slot <= ring_hash_slot(r->hi); r->slot++, r->visited = 0) {
        const mt_list *l = &t->lists[r->slot];
        while (r->visited < l->n) {
            const mt_slot *s = &l->v[r->visited++];
            if (s->hash >= r->lo && s->hash <= r->hi) {
                view_of(s, out);
                return 1;
            }
        }
    }
    return 0;
}

/* Entries sit at or after their home slot, in runs that an empty slot
 * ends. So at an empty slot e every entry whose home is below e has been
 * passed: the positions below e << shift are covered. */
int memtable_scan(const memtable *t, uint64_t lo, uint64_t hi, size_t want, mt_scan_fn fn,
                  void *arg, uint64_t *next)
{
    mt_entry_view v;
    if (!t->lists) {
        /* No order to resume in: the whole range at once. */
        for (size_t i = 0; i < t->cap; i++) {
            const mt_slot *s = &t->slots[i];
            if (s->e && s->hash >= lo && s->hash <= hi) {
                view_of(s, &v);
                fn(arg, &v);
            }
        }
        return 1;
    }
    /* Key slot by key slot; a walk stops only between two of them. */
    size_t counted = 0;
    uint32_t last = ring_hash_slot(hi);
    for (uint32_t k = ring_hash_slot(lo); k <= last; k++) {
        if (counted >= want && k > ring_hash_slot(lo)) {
            *next = ring_slot_pos(k);
            return 0;
        }
        const mt_list *l = &t->lists[k];
        for (uint32_t i = 0; i < l->n; i++) {
            const mt_slot *s = &l->v[i];
            if (s->hash >= lo && s->hash <= hi) {
                view_of(s, &v);
                counted += (size_t)fn(arg, &v);
            }
        }
    }
    return 1;
}
