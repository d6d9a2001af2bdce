"""manage.py corral_stats: hit rate per key prefix of every corral cache in CACHES.

    prefix             hits   misses  hit rate   items     bytes
    featured_products  1998        3     99.9%       2       382

Prefixes under --threshold (default 90%) are flagged, as `corral stats` flags them. --prometheus
prints the Prometheus text instead (what the metrics view serves).
"""
from django.core.management.base import BaseCommand

from corral.django import _corral_caches, metrics_text


class Command(BaseCommand):
    help = "Hit rate per key prefix of the corral caches in CACHES"

    def add_arguments(self, parser):
        parser.add_argument("--prometheus", action="store_true",
                            help="print the Prometheus text exposition instead")
        parser.add_argument("--threshold", type=float, default=90.0,
                            help="flag prefixes under this hit rate (percent)")

    def handle(self, *args, **options):
        if options["prometheus"]:
            self.stdout.write(metrics_text(), ending="")
            return
        for alias, backend in _corral_caches():
            s = backend.stats()
            self.stdout.write("cache %s (%s)" % (alias, backend._url))
            self.stdout.write("%-32s %8s %8s %9s %7s %9s" % (
                "prefix", "hits", "misses", "hit rate", "items", "bytes"))
            for p in s["prefixes"]:
                looked = p["hits"] + p["misses"]
                rate = 100.0 * p["hits"] / looked if looked else 0.0
                flag = "  <- under %g%%" % options["threshold"] if (
                    looked and rate < options["threshold"]) else ""
                self.stdout.write("%-32s %8d %8d %8.1f%% %7d %9d%s" % (
                    p["prefix"][:32], p["hits"], p["misses"], rate, p["items"], p["bytes"], flag))
