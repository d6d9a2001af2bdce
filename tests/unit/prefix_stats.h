/*
 * prefix_stats.h - the tests' check of one prefix's counters through corral_stats: the hits and
 * misses counted under `prefix`, which must have a row. Include after <cmocka.h>.
 */
#ifndef CORRAL_TEST_PREFIX_STATS_H
#define CORRAL_TEST_PREFIX_STATS_H

#include "corral/corral.h"

#include <stdint.h>
#include <string.h>

static void expect_prefix_counts(corral *c, const char *prefix, uint64_t hits, uint64_t misses) {
    corral_stats_snapshot *s = NULL;
    assert_int_equal(corral_stats(c, &s), CORRAL_OK);
    const corral_prefix_stats *p = NULL;
    for (size_t i = 0; i < s->n_prefixes; i++)
        if (strcmp(s->prefixes[i].prefix, prefix) == 0) p = &s->prefixes[i];
    assert_non_null(p);
    assert_int_equal(p->hits, hits);
    assert_int_equal(p->misses, misses);
    corral_stats_free(c, s);
}

#endif /* CORRAL_TEST_PREFIX_STATS_H */
