/*
 * _corral.h - what the files of the CPython extension share (python/corral/_corral.c: the
 * module, the Cache type and its plain operations; _corral_load.c: get_or_set, events, stats;
 * _corral_django.c: the Django backend's fast path).
 *
 * The extension is a thin skin over libcorral: every semantic lives in C. Each method converts
 * its arguments with the GIL held, releases the GIL around the corral call (which may block on
 * the store, a lock or another caller's producer), and converts the result with the GIL again.
 * User code called back from C (a producer, a rule's `when`, a key function) takes the GIL
 * with PyGILState_Ensure: it may run on any thread that is inside a corral call.
 *
 * An exception raised by user code cannot cross C frames, so it is kept in a ring of the
 * Cache (EXC_RING slots, under the GIL) and its slot's sequence number travels as the negative
 * return code EXC_BASE - seq: corral hands a producer's error to its caller and to every waiter
 * of the flight, and each of them raises the same exception object.
 */
#ifndef CORRAL_PY_CORRAL_H
#define CORRAL_PY_CORRAL_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <corral/corral.h>

#define EXC_RING    256
#define EXC_BASE    (-1000) /* codes at or below it name a kept exception */
#define EXC_SEQ_MAX (1 << 20)

typedef struct rule_ctx rule_ctx;
typedef struct producer_ctx producer_ctx;

typedef struct CacheObject {
    PyObject_HEAD corral *c; /* NULL once closed */
    long active;             /* calls in progress (under the GIL): close refuses while > 0 */
    PyObject *key_function;  /* the Python key function, or NULL */
    struct {
        unsigned seq;
        PyObject *exc;
    } ring[EXC_RING]; /* under the GIL */
    unsigned next_seq;
    rule_ctx *rules; /* the `when` contexts of corral_on, freed at dealloc */
    /* Background refreshes (get_or_set(background=True)): corral keeps a producer's context
     * until corral_close, so there is one per (key, version, ns), holding the latest caller's
     * producer, found through `bg_index` ({(key, version, ns): capsule}) and freed at dealloc. */
    PyObject *bg_index;
    producer_ctx *bg;
    size_t n_bg, max_bg; /* contexts made, and the most allowed (max_background_keys) */
    struct CacheObject *bg_exit_next; /* in the list closed at exit (corral_py_bg_listed) */
    bool bg_listed;
} CacheObject;

/* The context of a producer: the Cache (borrowed: it outlives the call, or corral_close joins
 * the refresh workers before it is freed) and the callable (a reference, under the GIL). */
struct producer_ctx {
    CacheObject *self;
    PyObject *fn;
    producer_ctx *next; /* in self->bg */
};

/* The arguments of one call, converted once: the call's version, namespace and tags. */
typedef struct {
    corral_call call;
    const char *tags[32];
    PyObject *tags_fast; /* keeps the tag strings alive */
} call_args;

extern PyObject *corral_py_error;
extern PyTypeObject corral_py_cache_type;

/* Raises corral.Error(code, reason) and returns NULL. */
PyObject *corral_py_raise(int rc);

/* Keeps the current exception in the ring; returns the code that names it. GIL held. */
int corral_py_keep_exception(CacheObject *self);
/* Raises the kept exception a code names (or corral.Error when it is gone); returns NULL. */
PyObject *corral_py_raise_kept(CacheObject *self, int rc);

/* A key (str as UTF-8, or bytes). Borrowed: valid while `obj` lives. Returns 0 or -1 (raised). */
int corral_py_key(PyObject *obj, const char **p, Py_ssize_t *n);
/* Fills `a` from version (None: default), ns (None or str), tags (None or an iterable of str).
 * Returns 0 or -1 (raised). Release with call_args_done. */
int corral_py_call_args(call_args *a, PyObject *version, PyObject *ns, PyObject *tags);
void corral_py_call_args_done(call_args *a);
/* A TTL in seconds: NULL (not given) is the handle's default, None forever, <= 0 expires at
 * once. Returns 0 or -1 (raised). */
int corral_py_ttl(PyObject *obj, int64_t *ttl_ms);
/* Checks that the Cache is open and counts a call in progress; returns NULL (raised) when
 * closed. Pair with corral_py_end. */
corral *corral_py_begin(CacheObject *self);
void corral_py_end(CacheObject *self);

/* _corral_load.c */
PyObject *corral_py_get_or_set(CacheObject *self, PyObject *args, PyObject *kw);
PyObject *corral_py_on(CacheObject *self, PyObject *args, PyObject *kw);
PyObject *corral_py_emit(CacheObject *self, PyObject *args, PyObject *kw);
PyObject *corral_py_stats(CacheObject *self, PyObject *unused);
PyObject *corral_py_metrics(CacheObject *self, PyObject *unused);
void corral_py_rules_free(CacheObject *self);
void corral_py_bg_free(CacheObject *self);

/* Puts a Cache with background refreshes on the list closed at interpreter exit (atexit, while
 * the refresh workers can still take the GIL to run a producer), once. GIL held. */
void corral_py_bg_listed(CacheObject *self);

/* _corral_django.c: adds the DjangoOps type to the module. Returns 0 or -1 (raised). */
int corral_py_django_add(PyObject *module);

#endif /* CORRAL_PY_CORRAL_H */
