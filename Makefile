# rtsync build. `make` builds build/rtsync; `make test` builds everything and
# runs every test (unit, fuzz corpora, integration and interop, under ASan+UBSan).

PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= cc
BUILD   ?= build

# Debian packages the build and the tests need (checked with dpkg by `make deps`).
DEB_PKGS := build-essential pkg-config clang libclang-rt-14-dev \
	libuv1-dev libhttp-parser-dev libssl-dev libjansson-dev libjwt-dev \
	libunistring-dev uthash-dev libcmocka-dev libsqlite3-dev sqlite3 curl liburing-dev \
	libcurl4-openssl-dev

WARN    := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wstrict-prototypes \
	-Wmissing-prototypes -Wformat=2
CFLAGS  ?= -O2 -g
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) -fvisibility=hidden -Isrc -Iinclude \
	-MMD -MP $(CFLAGS) $(EXTRA_CFLAGS)
LIBS    := -luv -luring -lhttp_parser -ljansson -ljwt -lcurl -lunistring -lsqlite3 -lssl -lcrypto -lpthread -lm

SAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=undefined

# Server library: every module but the CLI entry point.
SRV_DIRS := common proto net auth flags realtime live notify store collab locks activity cluster web api
SRV_SRC  := $(foreach d,$(SRV_DIRS),$(wildcard src/$(d)/*.c)) $(filter-out src/cli/main.c,$(wildcard src/cli/*.c))
SRV_OBJ  := $(SRV_SRC:%.c=$(BUILD)/obj/%.o)
MAIN_OBJ := $(BUILD)/obj/src/cli/main.o
# librtsync, which the CLI's client commands use (see the block at the end).
CLIENT_SRC := $(wildcard src/client/*.c)
CLIENT_OBJ := $(CLIENT_SRC:%.c=$(BUILD)/obj/%.o)

UNIT_SRC := $(wildcard tests/unit/*/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRC := $(filter-out fuzz/replay.c,$(wildcard fuzz/*.c))
FUZZ_REPLAY := $(FUZZ_SRC:fuzz/%.c=$(BUILD)/fuzz/replay_%)

.PHONY: all asan test unit unit-bins fuzz-replay fuzz-bins interop integration deps run clean \
	install fuzz fuzz-campaign format help

ASAN_VARS := BUILD=build-asan EXTRA_CFLAGS="$(SAN_FLAGS)" LDFLAGS="-fsanitize=address,undefined"

all: $(BUILD)/rtsync

help:
	@echo "make            build build/rtsync"
	@echo "make run        build and start the server with the embedded defaults"
	@echo "make test       install missing packages, build, run every test (also under ASan+UBSan)"
	@echo "make asan       build build-asan/rtsync with AddressSanitizer and UBSan"
	@echo "make fuzz       build libFuzzer targets into build-fuzz/ (clang)"
	@echo "make fuzz-campaign  run every target 10M executions (or FUZZ_SECONDS), merge the corpora"
	@echo "make deps       install missing Debian packages"
	@echo "make install    install into \$$(DESTDIR)\$$(PREFIX)"
	@echo "make browser-test  the dashboard and rtsync.js in headless Chromium (tests/browser)"

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/libsrv.a: $(SRV_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/rtsync: $(MAIN_OBJ) $(CLIENT_OBJ) $(BUILD)/libsrv.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LIBS) $(LDFLAGS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libsrv.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Wno-missing-prototypes -o $@ $< $(BUILD)/libsrv.a -lcmocka $(LIBS)

$(BUILD)/fuzz/replay_%: fuzz/%.c fuzz/replay.c $(BUILD)/libsrv.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Wno-missing-prototypes -o $@ $< fuzz/replay.c $(BUILD)/libsrv.a $(LIBS)

asan:
	$(MAKE) $(ASAN_VARS) all

# libFuzzer builds (clang); run e.g. build-fuzz/fuzz_ws_frame fuzz/corpus/ws_frame
fuzz:
	$(MAKE) BUILD=build-fuzz CC=clang CFLAGS="-O1 -g" \
		EXTRA_CFLAGS="-fsanitize=fuzzer-no-link,address,undefined" build-fuzz/libsrv.a
	@for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
		echo "clang $$f -> build-fuzz/fuzz_$$n"; \
		clang -std=c11 -D_GNU_SOURCE -Isrc -Iinclude -O1 -g -fsanitize=fuzzer,address,undefined \
			-o build-fuzz/fuzz_$$n $$f build-fuzz/libsrv.a $(LIBS) || exit 1; done

# docs/fuzzing.md: each target up to 10,000,000 runs or FUZZ_SECONDS, niced, one after another
FUZZ_SECONDS ?= 3600
fuzz-campaign: fuzz
	fuzz/campaign.sh -t $(FUZZ_SECONDS)

unit-bins: $(UNIT_BIN)
fuzz-bins: $(FUZZ_REPLAY)

unit: $(UNIT_BIN)
	@tests/run-unit.sh $(UNIT_BIN)

fuzz-replay: $(FUZZ_REPLAY)
	@tests/run-fuzz-replay.sh $(FUZZ_REPLAY)

integration interop: all
	@tests/$@/run.sh $(abspath $(BUILD)/rtsync)

# The whole suite: the unit tests, fuzz corpora and real-process tests all run
# against the sanitizer build, which is where memory errors and leaks show.
test: deps
	$(MAKE) all bench
	$(MAKE) $(ASAN_VARS) all unit-bins fuzz-bins bench
	@tests/run-all.sh build-asan

deps:
	@missing=""; for p in $(DEB_PKGS); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	command -v node >/dev/null && command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

run: deps all
	$(BUILD)/rtsync serve --data-dir .rtsync --schema examples/schema.sql

install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(BUILD)/rtsync $(DESTDIR)$(PREFIX)/bin/rtsync

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find build build-asan -name '*.d' 2>/dev/null)

# ---- Benchmark load generator (bench/README.md) --------------------------------
# `make bench` builds $(BUILD)/rtbench, a WebSocket client load generator.
BENCH_SRC := $(wildcard bench/*.c)

.PHONY: bench
bench: $(BUILD)/rtbench $(BUILD)/rtfloor $(BUILD)/rttlsfan

# rttlsfan: the fan-out over wss:// against ws:// (bench/README.md, "TLS")
$(BUILD)/rttlsfan: bench/tls/tlsfan.c $(BUILD)/libsrv.a
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libsrv.a $(LIBS) $(LDFLAGS)

# rtfloor: the kernel's own cost of a fan-out, the floor of rtsync's latency
$(BUILD)/rtfloor: bench/floor/floor.c
	$(CC) $(ALL_CFLAGS) -o $@ $< -luring -lpthread $(LDFLAGS)

$(BUILD)/rtbench: $(BENCH_SRC) $(BUILD)/libsrv.a
	$(CC) $(ALL_CFLAGS) -o $@ $(BENCH_SRC) $(BUILD)/libsrv.a $(LIBS) $(LDFLAGS)

# ---- PostgreSQL store ----
# `rtsync serve --postgres URL` (docs/store.md): libpq for reads, writes and
# logical replication; `make test` also runs tests/postgres/ against a private
# cluster (Debian's postgresql server binaries).
DEB_PKGS += libpq-dev postgresql
ALL_CFLAGS += -I$(shell pg_config --includedir 2>/dev/null || echo /usr/include/postgresql)
LIBS += -lpq

# ---- librtsync and CLI ----------------------------------------------------------
# librtsync (include/rtsync/, src/client/): a static and a shared library built
# from position-independent objects, with the WebSocket engine and the common
# helpers it needs; only RT_API symbols are exported from the shared one.
# `make lib` builds them and librtsync.pc; `make install` also installs them.
LIB_SRC     := $(CLIENT_SRC) src/net/ws.c src/common/err.c src/common/alloc.c \
	src/common/buf.c src/common/rand.c
LIB_PIC_OBJ := $(LIB_SRC:%.c=$(BUILD)/pic/%.o)
# libcurl: the inbox's REST calls (src/client/notify.c; docs/client.md says why)
LIB_LIBS    := -ljansson -lsqlite3 -lcurl -lhttp_parser -lunistring -lssl -lcrypto -lpthread -lm
LIB_SOVER   := 0
LIB_VERSION := 0.1.0
CLIENT_TEST_SRC := $(wildcard tests/client/test_*.c)
CLIENT_TEST_BIN := $(CLIENT_TEST_SRC:tests/client/%.c=$(BUILD)/client-tests/%)
EXAMPLE_SRC := $(wildcard examples/c/*.c)
EXAMPLE_BIN := $(EXAMPLE_SRC:examples/c/%.c=$(BUILD)/examples/%)

.PHONY: lib install-lib client-bins examples lib-check

lib: $(BUILD)/librtsync.a $(BUILD)/librtsync.so $(BUILD)/librtsync.pc

$(BUILD)/pic/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fPIC -c $< -o $@

$(BUILD)/librtsync.a: $(LIB_PIC_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/librtsync.so.$(LIB_VERSION): $(LIB_PIC_OBJ)
	$(CC) $(ALL_CFLAGS) -shared -Wl,-soname,librtsync.so.$(LIB_SOVER) -Wl,--no-undefined \
		-o $@ $^ $(LIB_LIBS) $(LDFLAGS)

$(BUILD)/librtsync.so: $(BUILD)/librtsync.so.$(LIB_VERSION)
	ln -sf librtsync.so.$(LIB_VERSION) $(BUILD)/librtsync.so.$(LIB_SOVER)
	ln -sf librtsync.so.$(LIB_VERSION) $@

$(BUILD)/librtsync.pc: librtsync.pc.in Makefile
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(LIB_VERSION)|g' $< > $@

install: install-lib
install-lib: lib
	install -d $(DESTDIR)$(PREFIX)/include/rtsync $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 include/rtsync/*.h $(DESTDIR)$(PREFIX)/include/rtsync/
	install -m 644 $(BUILD)/librtsync.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/librtsync.so.$(LIB_VERSION) $(DESTDIR)$(PREFIX)/lib/
	ln -sf librtsync.so.$(LIB_VERSION) $(DESTDIR)$(PREFIX)/lib/librtsync.so.$(LIB_SOVER)
	ln -sf librtsync.so.$(LIB_VERSION) $(DESTDIR)$(PREFIX)/lib/librtsync.so
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(LIB_VERSION)|g' librtsync.pc.in \
		> $(DESTDIR)$(PREFIX)/lib/pkgconfig/librtsync.pc

# Unit tests of src/client and the tests against a real server link the client.
$(BUILD)/tests/client/%: tests/unit/client/%.c $(LIB_PIC_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Wno-missing-prototypes -o $@ $^ -lcmocka $(LIB_LIBS) $(LDFLAGS)

$(BUILD)/client-tests/%: tests/client/%.c tests/client/harness.h $(LIB_PIC_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Wno-missing-prototypes -Wl,--wrap=json_loadb,--wrap=json_loads -o $@ $< $(LIB_PIC_OBJ) \
		-lcmocka $(LIB_LIBS) $(LDFLAGS)

client-bins: $(CLIENT_TEST_BIN)

# The examples compile against an installed copy (make install into a staging
# DESTDIR, then pkg-config), so the headers, pc file and libraries are checked
# the way a user builds.
LIB_STAGE := $(abspath $(BUILD))/stage
examples: $(EXAMPLE_BIN)
$(BUILD)/examples/%: examples/c/%.c $(BUILD)/stage.stamp
	@mkdir -p $(dir $@)
	PKG_CONFIG_SYSROOT_DIR=$(LIB_STAGE) PKG_CONFIG_PATH=$(LIB_STAGE)/usr/lib/pkgconfig \
		$(CC) -std=c11 -Wall -Wextra -Werror $(CFLAGS) -o $@ $< \
		$$(PKG_CONFIG_SYSROOT_DIR=$(LIB_STAGE) PKG_CONFIG_PATH=$(LIB_STAGE)/usr/lib/pkgconfig \
		pkg-config --cflags --libs librtsync) -Wl,-rpath,$(LIB_STAGE)/usr/lib

$(BUILD)/stage.stamp: $(BUILD)/librtsync.a $(BUILD)/librtsync.so $(BUILD)/librtsync.pc \
		$(wildcard include/rtsync/*.h)
	rm -rf $(LIB_STAGE)
	$(MAKE) --no-print-directory install-lib DESTDIR=$(LIB_STAGE) PREFIX=/usr
	touch $@

# Exported symbols of the shared library: only rt_client_*, rt_channel_*, rt_lq_*, rt_table_*,
# rt_inbox_*, rt_lock_*, rt_strerror, rt_err_name.
lib-check: $(BUILD)/librtsync.so
	@bad=$$(nm -D --defined-only $(BUILD)/librtsync.so | awk '{print $$3}' | \
		grep -v -E '^(rt_client_|rt_channel_|rt_lq_|rt_table_|rt_inbox_|rt_lock_|rt_strerror$$|rt_err_name$$)' || true); \
	if [ -n "$$bad" ]; then echo "librtsync exports more than its API: $$bad"; exit 1; fi; \
	echo "librtsync exports $$(nm -D --defined-only $(BUILD)/librtsync.so | wc -l) API symbols"

test: client-test-prep
.PHONY: client-test-prep
client-test-prep: deps
	$(MAKE) lib lib-check examples
	$(MAKE) $(ASAN_VARS) client-bins

# ---- shared documents (src/collab, docs/collab.md) ----
# ymerge: the C merge of Yjs updates as a filter, for the differential test
# against the yjs npm package (tests/collab/differential.mjs).
$(BUILD)/tests/collab/ymerge: tests/collab/ymerge.c $(BUILD)/libsrv.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libsrv.a $(LIBS) $(LDFLAGS)
unit-bins: $(BUILD)/tests/collab/ymerge

# ---- the dashboard and the browser client (web/, src/web, docs/dashboard.md) ----
# web/ is bundled with esbuild from its pinned lock file (npm ci, which works
# offline from npm's cache once it has run); web/embed.sh turns web/dist into
# an assembler file (.incbin) and the asset table src/web/web.h declares, both
# rewritten only when the bundle changes. Node is needed to build, never to run.
WEB_SRC  := web/package.json web/package-lock.json web/build.mjs $(wildcard web/src/*)
WEB_GEN  := $(BUILD)/gen/web
WEB_OBJ  := $(WEB_GEN)/web_assets.o $(WEB_GEN)/web_assets_data.o
$(BUILD)/libsrv.a: $(WEB_OBJ)

web/node_modules/.rtsync-stamp: web/package.json web/package-lock.json
	@command -v npm >/dev/null || { echo "the web bundle needs node and npm (make deps)"; exit 1; }
	cd web && npm ci --prefer-offline --no-audit --no-fund --loglevel=error
	@touch $@

web/dist/.stamp: $(WEB_SRC) web/node_modules/.rtsync-stamp
	cd web && node build.mjs
	@touch $@

$(WEB_GEN)/web_assets.c: web/dist/.stamp web/embed.sh
	web/embed.sh web/dist $(WEB_GEN)
$(WEB_GEN)/web_assets.S: $(WEB_GEN)/web_assets.c
	@:

$(WEB_GEN)/web_assets.o: $(WEB_GEN)/web_assets.c
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(WEB_GEN)/web_assets_data.o: $(WEB_GEN)/web_assets.S web/dist/.stamp
	$(CC) -c $< -o $@

.PHONY: web browser-test clean-web
web: web/dist/.stamp
clean: clean-web
clean-web:
	rm -rf web/dist

# tests/browser/: headless Chromium (Debian's chromium) with playwright-core
DEB_PKGS += chromium
browser-test: all
	@tests/browser/run.sh $(abspath $(BUILD)/rtsync)

# ---- scale-out over Redis (src/cluster, docs/cluster.md) ----
# hiredis (its libuv adapter) for the bus between nodes; redis-server for
# tests/cluster/.
DEB_PKGS += libhiredis-dev redis-server
LIBS += -lhiredis
