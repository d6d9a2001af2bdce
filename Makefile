# corral: the two commands of the README, and the rest.
#   make run     bootstrap, build, start corral-proxy in front of the shop example
#                (examples/shop, scripts/run-shop) on the embedded memory store; Ctrl-C stops
#   make demo    bootstrap, build, run `corral demo` (the guide's scenarios on the library)
#   make test    bootstrap, build with ASan+UBSan and -Werror, run every test (ctest); then the
#                memory store's RSS bound test in the release build (glibc's allocator)
#   make bench   build optimised, run every benchmark (bench/bench_*, bench/bench_django.py)
#   make bench-proxy   corral-proxy vs nginx proxy_cache vs Varnish (bench/proxy.sh), one table
#   make bench-fleet   fleets of 2 and 4: corral-proxy on one Redis (with the near cache and
#                without) and on a Redis Cluster vs Varnish and nginx (bench/fleet.sh;
#                BENCH_SECONDS, FLEET_SIZES, FLEET_KINDS), one table
#   make soak    corral-proxy under wrk load and injected faults, memory store then Redis
#                (bench/soak.sh; SOAK_SECONDS, default 300); not part of make test
#   make tsan    build with ThreadSanitizer, run the unit tests
#   make fuzz    build the libFuzzer targets with clang-14, run each for FUZZ_SECONDS
#   make format-check / make format
#   make install PREFIX=/usr/local
JOBS         ?= $(shell nproc)
PREFIX       ?= /usr/local
FUZZ_SECONDS ?= 20
CMAKE        := cmake
CFG_COMMON   := -DCORRAL_WERROR=ON

.PHONY: all bootstrap run demo test bench bench-proxy bench-fleet soak tsan fuzz format format-check install clean

all: build/release/.built

bootstrap:
	@scripts/bootstrap

build/release/.built: bootstrap FORCE
	$(CMAKE) -S . -B build/release -DCMAKE_BUILD_TYPE=Release $(CFG_COMMON) >/dev/null
	$(CMAKE) --build build/release -j$(JOBS)
	@touch $@

# Builds only what it runs: the proxy, the shop and the CLI its banner names (no test, benchmark
# or fuzz binary). Ports: PROXY_PORT (8080), ADMIN_PORT (8081), SHOP_PORT (a free one); see
# scripts/run-shop. A port already taken: run-shop exits 1, so make exits 2.
run: bootstrap
	$(CMAKE) -S . -B build/release -DCMAKE_BUILD_TYPE=Release $(CFG_COMMON) >/dev/null
	$(CMAKE) --build build/release -j$(JOBS) --target corral-proxy corral-shop corral_cli
	@CORRAL_PROXY=build/release/corral-proxy CORRAL_SHOP=build/release/corral-shop \
	    CORRAL_CLI=build/release/corral scripts/run-shop

demo: build/release/.built
	./build/release/corral demo

test: bootstrap
	$(CMAKE) -S . -B build/asan -DCMAKE_BUILD_TYPE=Debug $(CFG_COMMON) \
	    -DCORRAL_SANITIZE=address,undefined -DCORRAL_BUILD_BENCH=OFF >/dev/null
	$(CMAKE) --build build/asan -j$(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    ctest --test-dir build/asan --output-on-failure -j$(JOBS)
	@# The memory store's bound in RSS needs glibc's own allocator, which the sanitizers replace
	@# (the test skips itself there): test_memory_block again, in the release build.
	$(CMAKE) -S . -B build/release -DCMAKE_BUILD_TYPE=Release $(CFG_COMMON) >/dev/null
	$(CMAKE) --build build/release -j$(JOBS) --target test_memory_block
	ctest --test-dir build/release --output-on-failure -R '^test_memory_block$$'

tsan: bootstrap
	$(CMAKE) -S . -B build/tsan -DCMAKE_BUILD_TYPE=Debug $(CFG_COMMON) \
	    -DCORRAL_SANITIZE=thread -DCORRAL_BUILD_BENCH=OFF >/dev/null
	$(CMAKE) --build build/tsan -j$(JOBS)
	TSAN_OPTIONS="halt_on_error=1 die_after_fork=0 suppressions=$(CURDIR)/scripts/tsan.supp" \
	    ctest --test-dir build/tsan --output-on-failure -j$(JOBS) -L unit

bench: build/release/.built
	@for b in build/release/bench_*; do echo "== $$b"; $$b || exit 1; done
	@echo "== bench/bench_django.py"
	@PYTHONPATH=build/release/python /usr/bin/python3 bench/bench_django.py

# corral-proxy beside nginx proxy_cache and Varnish (installs them and wrk when missing).
bench-proxy: build/release/.built
	bench/proxy.sh build/release/corral-proxy

# Fleets of proxies on a shared store, beside Varnish and nginx (installs them and wrk).
bench-fleet: build/release/.built
	bench/fleet.sh build/release/corral-proxy

# Faults on a schedule under load; a table at the end, exit 0 only when clean.
soak: build/release/.built
	bench/soak.sh build/release/corral-proxy

fuzz: bootstrap
	scripts/fuzz $(FUZZ_SECONDS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')

# Configured for PREFIX, so corral.pc and the CMake package name the right paths.
install: bootstrap
	$(CMAKE) -S . -B build/install -DCMAKE_BUILD_TYPE=Release $(CFG_COMMON) \
	    -DCMAKE_INSTALL_PREFIX=$(PREFIX) -DCORRAL_BUILD_TESTS=OFF -DCORRAL_BUILD_BENCH=OFF >/dev/null
	$(CMAKE) --build build/install -j$(JOBS)
	$(CMAKE) --install build/install

clean:
	rm -rf build

FORCE:
