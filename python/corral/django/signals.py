"""bust_on: a Django signal wired to a corral rule, the guide's receivers in one line.

    bust_on(post_save, Product, keys=["product:{pk}", "featured_products"],
            tags=["category:{category_id}"], when=lambda p, created=False, **kw:
            p.is_featured or created)

Each call registers a corral rule (corral_on) for an event of its own, and connects a receiver
that emits it (corral_emit) with the instance's concrete fields as the template's fields (by
attname: ``{category_id}``; also ``{pk}``). The deletes and busts happen in C, on the shared
store: on Redis every process sees them at once.
"""
import itertools

_ids = itertools.count(1)


def instance_fields(instance):
    """The fields a template may name: every concrete field's attname, and pk."""
    fields = {}
    meta = getattr(instance, "_meta", None)
    if meta is not None:
        for f in meta.concrete_fields:
            fields[f.attname] = getattr(instance, f.attname)
    fields["pk"] = getattr(instance, "pk", None)
    return fields


def bust_on(signal, sender, keys=(), tags=(), namespaces=(), when=None, cache="default"):
    """Busts `keys` (deleted), `tags` and `namespaces` of cache alias `cache` whenever `signal`
    is sent by `sender` and `when(instance, **signal_kwargs)` (if given) is true. Templates
    name fields in braces. Returns the receiver (connected strongly; disconnect it with
    signal.disconnect(receiver, sender=sender))."""
    from django.core.cache import caches

    backend = caches[cache]
    event = "django.bust_on.%d" % next(_ids)
    backend.corral.on(event, keys=list(keys), tags=list(tags), namespaces=list(namespaces))

    def receiver(sender, instance=None, **kwargs):
        if when is not None and not when(instance, **kwargs):
            return
        caches[cache].corral.emit(event, **instance_fields(instance))

    signal.connect(receiver, sender=sender, weak=False, dispatch_uid=event)
    return receiver
