/*
 * demo.c - `corral demo`: the guide's low-level scenarios on the embedded memory store.
 *
 * A tiny shop with 50 products. Page views read the featured list (cached under
 * `featured_products:v3`, busted when a featured product is saved, then moved to `:v4` as a
 * deploy would) and product cards (fragment keys that include `updated_at`, so a save changes
 * the key and the stale card is simply never read again). At the end: hits, misses and hit rate
 * per key prefix, and the Prometheus text. Deterministic: a fixed seed, no clock reads that
 * change the output.
 */
#include "cli.h"
#include "net.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define N_PRODUCTS 50
#define N_VIEWS    2000

typedef struct product {
    int id;
    char title[32];
    int price_cents;
    bool featured;
    int64_t updated_at; /* seconds; part of the card's fragment key */
} product;

typedef struct shop {
    corral *cache;
    product products[N_PRODUCTS];
    unsigned db_queries; /* how often the "database" was asked */
    uint64_t rng;
    const char *featured_key; /* featured_products:v3, later :v4 */
} shop;

static uint32_t next_rand(shop *s) {
    /* xorshift64*: deterministic, good enough for picking pages. */
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return (uint32_t)((s->rng * 2685821657736338717ull) >> 32);
}

/* Picks a product, skewed toward low ids as real traffic is. */
static int pick_product(shop *s) {
    uint32_t r = next_rand(s) % 1000;
    return r < 700 ? (int)(r % 5) : (int)(r % N_PRODUCTS);
}

/* The guide's featured_products(): get, else compute and set for 600 s. */
static int featured_products(shop *s, char *out, size_t cap) {
    size_t len;
    int rc =
        corral_get_into(s->cache, s->featured_key, strlen(s->featured_key), NULL, out, cap, &len);
    if (rc == CORRAL_OK) return CORRAL_OK;
    if (rc != CORRAL_MISS) return rc;
    s->db_queries++; /* Product.objects.filter(is_featured=True)[:12] */
    len = 0;
    out[0] = '\0';
    for (int i = 0; i < N_PRODUCTS; i++) {
        if (!s->products[i].featured) continue;
        int n = snprintf(out + len, cap - len, "%s%d", len ? "," : "", s->products[i].id);
        if (n < 0 || (size_t)n >= cap - len) return CORRAL_ENOSPC;
        len += (size_t)n;
    }
    return corral_set(s->cache, s->featured_key, strlen(s->featured_key), out, len, 600 * 1000,
                      NULL);
}

/* {% cache 600 product_card product.id product.updated_at %} */
static int product_card(shop *s, const product *p) {
    char id[24], upd[24];
    snprintf(id, sizeof id, "%d", p->id);
    snprintf(upd, sizeof upd, "%" PRId64, p->updated_at);
    corral_buf vary[2] = { { id, strlen(id) }, { upd, strlen(upd) } };
    char key[128];
    size_t klen;
    int rc = corral_fragment_key("product_card", 12, vary, 2, key, sizeof key, &klen);
    if (rc != CORRAL_OK) return rc;
    char html[256];
    size_t hlen;
    rc = corral_get_into(s->cache, key, klen, NULL, html, sizeof html, &hlen);
    if (rc != CORRAL_MISS) return rc;
    s->db_queries++;
    int n = snprintf(html, sizeof html, "<article class=\"card\">%s - EUR %d.%02d</article>",
                     p->title, p->price_cents / 100, p->price_cents % 100);
    if (n < 0 || (size_t)n >= sizeof html) return CORRAL_ENOSPC;
    return corral_set(s->cache, key, klen, html, (size_t)n, 600 * 1000, NULL);
}

/* The guide's receiver condition: `if instance.is_featured or kwargs.get("created")`. */
static int featured_or_created(void *arg, const char *event, const corral_field *fields, size_t n) {
    (void)arg;
    (void)event;
    for (size_t i = 0; i < n; i++) {
        if ((strcmp(fields[i].name, "featured") == 0 || strcmp(fields[i].name, "created") == 0) &&
            strcmp(fields[i].value, "1") == 0)
            return 1;
    }
    return 0;
}

/* Registers the guide's post_save receiver as an event rule: the featured list goes when a
 * featured product is saved. The card needs nothing: its key changes with updated_at. */
static int register_rules(shop *s) {
    static const char *const keys[] = { "featured_products:v3", "featured_products:v4" };
    corral_rule r = { .keys = keys, .n_keys = 2, .when = featured_or_created };
    return corral_on(s->cache, "product.saved", &r);
}

/* post_save: the signal. */
static int save_product(shop *s, product *p, int new_price) {
    p->price_cents = new_price;
    p->updated_at += 60;
    char id[16];
    snprintf(id, sizeof id, "%d", p->id);
    corral_field f[] = { { "id", id }, { "featured", p->featured ? "1" : "0" } };
    return corral_emit(s->cache, "product.saved", f, 2, NULL);
}

/* One page: the featured list and one product's card. */
static int page_view(shop *s, const product *p) {
    char list[512];
    int rc = featured_products(s, list, sizeof list);
    return rc < 0 ? rc : product_card(s, p);
}

static int page_views(shop *s, int n) {
    for (int i = 0; i < n; i++) {
        int rc = page_view(s, &s->products[pick_product(s)]);
        if (rc < 0) return rc;
    }
    return CORRAL_OK;
}

static void print_table(corral *c) {
    corral_stats_snapshot *st;
    if (corral_stats(c, &st) != CORRAL_OK) return;
    printf("\n%-28s %8s %8s %9s %7s %9s\n", "prefix", "hits", "misses", "hit rate", "items",
           "bytes");
    for (size_t i = 0; i < st->n_prefixes; i++) {
        const corral_prefix_stats *p = &st->prefixes[i];
        uint64_t total = p->hits + p->misses;
        double rate = total ? 100.0 * (double)p->hits / (double)total : 0.0;
        /* A prefix that saw no hit and no miss has no hit rate: "-", not 0.0%. */
        char hr[16] = "-";
        if (total) snprintf(hr, sizeof hr, "%.1f%%", rate);
        printf("%-28s %8" PRIu64 " %8" PRIu64 " %9s %7" PRId64 " %9" PRId64 "%s\n", p->prefix,
               p->hits, p->misses, hr, p->items, p->bytes,
               total && rate < 90.0 ? "  <- under 90%" : "");
    }
    printf("%-28s %8" PRIu64 " %8" PRIu64 "\n", "total", st->total.hits, st->total.misses);
    printf("store: %zu of %zu bytes used\n", st->used_bytes, st->max_memory_bytes);
    corral_stats_free(c, st);
}

/* A step's outcome: CORRAL_OK, or its error; a read the store failed (a Redis read that failed is
 * a miss, which would count as a database query) is CORRAL_ESTORE, so no wrong number is shown. */
static int checked(shop *s, int rc) {
    if (rc == CORRAL_OK && cli_read_failed(s->cache)) return CORRAL_ESTORE;
    return rc;
}

/* Ends the demo at the first failed step, with the step and the reason. */
static int stop(shop *s, const char *step, int rc) {
    fprintf(stderr, "corral demo: %s: %s\n", step,
            rc == CORRAL_ESTORE && cli_read_failed(s->cache) ? "the store failed a read"
                                                             : corral_strerror(rc));
    corral_close(s->cache);
    return CLI_FAIL;
}

int cli_demo(int argc, char **argv) {
    const char *url = argc > 1 ? argv[1] : "mem://?max_memory=64MB&key_prefix=shop&timeout=300";
    shop s = { .rng = 0x9e3779b97f4a7c15ull, .featured_key = "featured_products:v3" };
    char shown[1024]; /* the URL as every line shows it: its credentials hidden */
    corral_url_redact(url, shown, sizeof shown);
    corral_error err;
    int rc = corral_open(&s.cache, url, &err);
    if (rc != CORRAL_OK) {
        fprintf(stderr, "corral demo: %s: %s\n", shown, err.msg);
        return rc == CORRAL_EBADURL || rc == CORRAL_EINVAL ? CLI_USAGE : CLI_FAIL;
    }
    if (strncmp(url, "redis", 5) == 0) {
        /* The library makes a dead Redis a miss: ask it directly first, for the reason. */
        char why[256];
        redisContext *probe = cli_redis_connect(url, 0, why, sizeof why);
        if (!probe) {
            fprintf(stderr, "corral demo: %s: %s\n", shown, why);
            corral_close(s.cache);
            return CLI_FAIL;
        }
        redisFree(probe);
    }
    for (int i = 0; i < N_PRODUCTS; i++) {
        product *p = &s.products[i];
        p->id = i + 1;
        snprintf(p->title, sizeof p->title, "Product %d", i + 1);
        p->price_cents = 990 + 100 * i;
        p->featured = i % 4 == 0;
        p->updated_at = 1767225600; /* 2026-01-01 */
    }
    if ((rc = register_rules(&s)) != CORRAL_OK) return stop(&s, "the event rules", rc);
    printf("corral %s demo on %s\n\n", corral_version(), shown);
    if ((rc = checked(&s, page_views(&s, N_VIEWS / 2))) != CORRAL_OK)
        return stop(&s, "1. page views", rc);
    printf("1. %d page views: the database was asked %u times (featured list + %d cards)\n",
           N_VIEWS / 2, s.db_queries, (int)s.db_queries - 1);

    unsigned before = s.db_queries;
    rc = save_product(&s, &s.products[0], 1290);
    if (rc == CORRAL_OK) rc = page_view(&s, &s.products[0]);
    if ((rc = checked(&s, rc)) != CORRAL_OK) return stop(&s, "2. a product saved", rc);
    printf(
        "2. product 1 (featured) saved: corral_emit(\"product.saved\") busted the featured list,\n"
        "   its card's key changed; viewing product 1 again asked the database %u times\n",
        s.db_queries - before);

    before = s.db_queries;
    s.featured_key = "featured_products:v4";
    if ((rc = checked(&s, page_views(&s, N_VIEWS / 2))) != CORRAL_OK)
        return stop(&s, "3. a deploy's new key", rc);
    unsigned q = s.db_queries - before;
    printf("3. deploy bumps the key to featured_products:v4: %d more views, %u database %s\n",
           N_VIEWS / 2, q, q == 1 ? "query" : "queries");

    char pk[256];
    size_t pklen;
    rc = corral_make_key(s.cache, "featured_products:v4", 20, NULL, pk, sizeof pk, &pklen);
    if (rc != CORRAL_OK) return stop(&s, "3. the physical key", rc);
    printf("   (physical key: \"%s\")\n", pk);
    if (demo_herd(s.cache) != 0 || demo_tags(s.cache) != 0) {
        corral_close(s.cache);
        return CLI_FAIL;
    }
    print_table(s.cache);

    char *text;
    size_t len;
    if (corral_metrics_write(s.cache, &text, &len) == CORRAL_OK) {
        printf("\nPrometheus text (what /metrics serves):\n%s", text);
        corral_free(s.cache, text);
    }
    corral_close(s.cache);
    return CLI_OK;
}
