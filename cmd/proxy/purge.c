/*
 * purge.c - corral-proxy's purges: of one URL (every variant), of a path prefix and of a
 * surrogate key. Each writes a purge stamp first (object.c, px_stamp_write), so a fill in
 * flight never undoes it, then removes from the store, then marks the busy objects it names
 * (busy.c), so new requests no longer stream them. Prefix and key purges count what they
 * invalidate just before their bust (object.c, px_tag_count): vary records (URLs, every variant
 * of each) for a prefix, objects (variants) for a surrogate key, and the store's entries of the
 * routes for "/".
 *
 * Threads: any thread (the admin listener's, or a worker's after an unsafe method).
 */
#include "proxy.h"

#include <string.h>

int px_purge_url(px_proxy *px, const px_config *cfg, const char *pk, size_t pk_len) {
    const char *path;
    size_t plen;
    px_pk_path(pk, pk_len, &path, &plen);
    const px_route *r = px_route_match(cfg, path, plen);
    char key[PX_KEY_MAX];
    size_t klen = px_key_vary(r, pk, pk_len, key);
    int64_t now = px_now_ms();
    int src = px_stamp_write(px->cache, key, klen, now);
    int rc = corral_delete(px->cache, key, klen, NULL);
    px_busy_purge(px, PX_BUSY_BY_URL, key, klen, now);
    if (rc < 0) return px_from_corral(rc);
    if (src < 0) return src;
    return rc == CORRAL_OK ? 1 : 0;
}

/* The entries the store holds for the routes of `cfg` (objects and vary records, expired ones
 * not yet reclaimed included), or -1 when the store cannot tell. */
static int64_t route_entries(px_proxy *px, const px_config *cfg) {
    corral_stats_snapshot *st = NULL;
    if (corral_stats(px->cache, &st) != CORRAL_OK) return -1;
    int64_t n = 0;
    for (size_t i = 0; i < st->n_prefixes; i++)
        for (size_t k = 0; k < cfg->n_routes; k++)
            if (strcmp(st->prefixes[i].prefix, cfg->routes[k].name) == 0)
                n += st->prefixes[i].items;
    corral_stats_free(px->cache, st);
    return n;
}

/* Counts what busting `tag` now invalidates (px_tag_count) into `*count`. */
static void count_tag(px_proxy *px, const char *tag, px_purge_count *count) {
    int64_t n = px_tag_count(px->cache, tag, &count->at_least);
    count->n = n < 0 ? -1 : n;
}

int px_purge_prefix(px_proxy *px, const px_config *cfg, const char *path, size_t len,
                    px_purge_count *count) {
    const char *tags[PX_MAX_PATH_TAGS];
    char tagstore[PX_MAX_PATH_TAGS * (PX_KEY_MAX + 1)];
    size_t n = px_path_tags(cfg, path, len, tagstore, sizeof tagstore, tags, PX_MAX_PATH_TAGS);
    int64_t now = px_now_ms();
    int rc;
    count->at_least = false;
    if (n == 0) {
        count->n = route_entries(px, cfg);
        /* "/": everything. The clear takes the stamps too, so "*" is written before and after
         * it; a fill that stores and checks between the clear and the second stamp is the one
         * race left. */
        int src = px_stamp_write(px->cache, "*", 1, now);
        rc = corral_clear_prefix(px->cache);
        int again = px_stamp_write(px->cache, "*", 1, now); /* the clear took the first one */
        if (src == 0) src = again;
        px_busy_purge(px, PX_BUSY_BY_ALL, "", 0, now);
        return rc < 0 ? px_from_corral(rc) : src;
    }
    /* The deepest tag a record carries for this prefix; a deeper prefix purges this ancestor. */
    const char *tag = tags[n - 1];
    int src = px_stamp_write(px->cache, tag, strlen(tag), now);
    count_tag(px, tag, count);
    rc = corral_tag_bust(px->cache, tag);
    px_busy_purge(px, PX_BUSY_BY_TAG, tag, strlen(tag), now);
    return rc < 0 ? px_from_corral(rc) : src;
}

int px_purge_key(px_proxy *px, const char *key, size_t len, px_purge_count *count) {
    char tag[PX_KEY_MAX + 1];
    size_t n = px_tag_name('s', key, len, tag);
    tag[n] = '\0';
    int64_t now = px_now_ms();
    int src = px_stamp_write(px->cache, tag, n, now);
    count_tag(px, tag, count);
    int rc = corral_tag_bust(px->cache, tag);
    px_busy_purge(px, PX_BUSY_BY_TAG, tag, n, now);
    return rc < 0 ? px_from_corral(rc) : src;
}
