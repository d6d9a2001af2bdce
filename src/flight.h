/*
 * flight.h - the single-flight table of a handle (flight.c): one leader per physical key.
 *
 * The public face is corral_flight_join / corral_flight_finish / corral_flight_cancel
 * (corral.h), for callers that wait with a callback. The loader (loader.c) also leads without
 * queueing anyone (a refresh) and blocks callers on a flight, with the calls below.
 *
 * Threads: every call is thread-safe.
 */
#ifndef CORRAL_FLIGHT_H
#define CORRAL_FLIGHT_H

#include "handle.h"

/* The callers blocked on one flight: the leader's result reaches them all with one broadcast. */
typedef struct corral__flight_group corral__flight_group;

/* Creates the table of a handle (c->flights) / finishes every flight still led with
 * CORRAL_ETIMEDOUT and frees the table. corral__flights_free accepts a handle without one. */
int corral__flights_new(corral *c);
void corral__flights_free(corral *c);

/* Leads the flight of a built key only if there is none: CORRAL_OK with `*lead`, CORRAL_EXISTS
 * when another caller leads (nothing queued), or CORRAL_ENOMEM. */
int corral__flight_try_lead(corral *c, const corral__skey *sk, corral_flight **lead);

/* Joins the flight of `sk` as a blocked caller. Returns CORRAL_OK with `*lead` when the caller
 * leads, CORRAL_WAITING with `*group` (a reference the caller drops in corral__flight_wait) when
 * another caller does, or CORRAL_ENOMEM. Allocations happen before the shard lock. */
int corral__flight_join_blocking(corral *c, const corral__skey *sk, corral_flight **lead,
                                 corral__flight_group **group);

/* Waits on a group until its flight finishes or `timeout_ms` of real time passes. Returns the
 * leader's code with `*v` a new reference (NULL on error), or CORRAL_ETIMEDOUT. Drops the
 * caller's reference to the group. */
int corral__flight_wait(corral *c, corral__flight_group *g, int64_t timeout_ms, corral_value **v);

#endif /* CORRAL_FLIGHT_H */
