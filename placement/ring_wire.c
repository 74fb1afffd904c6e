/*
 * ring_wire.c - conversions between rings and protocol messages.
 */
#include "placement/ring_wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ring_node_from_info(const Trellis__NodeInfo *ni, ring_node *rn)
{
    memset(rn, 0, sizeof(*rn));
    if (!ni || !ni->id || !ni->endpoint || strlen(ni->id) > RING_MAX_NODE_ID ||
        strlen(ni->endpoint) > RING_MAX_URL ||
        (ni->admin_url && strlen(ni->admin_url) > RING_MAX_URL))
        return TRELLIS_INVALID;
    snprintf(rn->id, sizeof(rn->id), "%s", ni->id);
    rn->tier = (int)ni->tier;
    rn->state = (int)ni->state;
    rn->generation = ni->generation;
    rn->shards = ni->shards;
    snprintf(rn->endpoint, sizeof(rn->endpoint), "%s", ni->endpoint);
    snprintf(rn->admin_url, sizeof(rn->admin_url), "%s", ni->admin_url ? ni->admin_url : "");
    rn->data_port = ni->data_port;
    return ring_node_validate(rn);
}

void ring_node_to_info(const ring_node *rn, Trellis__NodeInfo *ni)
{
    trellis__node_info__init(ni);
    ni->id = (char *)rn->id;
    ni->tier = (Trellis__Tier)rn->tier;
    ni->state = (Trellis__NodeState)rn->state;
    ni->generation = rn->generation;
    ni->shards = rn->shards;
    ni->endpoint = (char *)rn->endpoint;
    ni->admin_url = (char *)rn->admin_url;
    ni->data_port = rn->data_port;
}

int ring_from_snapshot(const Trellis__RingSnapshot *rs, ring **out)
{
    size_t nn = rs->n_nodes;
    if (nn > RING_MAX_NODES || rs->n_overrides > RING_MAX_OVERRIDES)
        return TRELLIS_TOO_LARGE;
    ring_node *nodes = calloc(nn ? nn : 1, sizeof(*nodes));
    ring_override *ov = calloc(rs->n_overrides ? rs->n_overrides : 1, sizeof(*ov));
    if (!nodes || !ov) {
        free(nodes);
        free(ov);
        return TRELLIS_INTERNAL;
    }
    size_t k = 0;
    for (size_t i = 0; i < nn; i++)
        if (ring_node_from_info(rs->nodes[i], &nodes[k]) == TRELLIS_OK)
            k++;
    for (size_t i = 0; i < rs->n_overrides; i++) {
        ov[i].key = rs->overrides[i]->key.data;
        ov[i].klen = rs->overrides[i]->key.len;
        ov[i].memory = rs->overrides[i]->memory;
        ov[i].disk = rs->overrides[i]->disk;
        ov[i].version = rs->overrides[i]->version;
    }
    ring_params p = {rs->vnodes, rs->memory_replicas, rs->disk_replicas};
    int rc = ring_build(nodes, k, ov, rs->n_overrides, &p, rs->epoch, out);
    free(nodes);
    free(ov);
    return rc;
}
