"""URLs of the tests' views (cache_page, {% cache %}, surrogate keys, metrics)."""
import itertools

from django.http import HttpResponse
from django.template import Context, Template
from django.urls import path
from django.views.decorators.cache import cache_page

import corral.django

calls = itertools.count()
rendered = {"page": 0, "fragment": 0}


@cache_page(60, cache="redis")
def page(request):
    rendered["page"] += 1
    return HttpResponse("page %d" % rendered["page"])


class Counter:
    def __str__(self):
        rendered["fragment"] += 1
        return "made %d" % rendered["fragment"]


def fragment(request, pk):
    t = Template("{% load cache %}{% cache 600 product_card pk using='redis' %}"
                 "[{{ made }}]{% endcache %}")
    return HttpResponse(t.render(Context({"pk": pk, "made": Counter()})))


@corral.django.surrogate_keys("product:{pk}", "products")
def product(request, pk):
    return HttpResponse("product %d" % pk)


urlpatterns = [
    path("page/", page),
    path("fragment/<int:pk>/", fragment),
    path("product/<int:pk>/", product),
    path("metrics", corral.django.metrics),
]
