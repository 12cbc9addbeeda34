# volley - high-throughput bulk email engine
#
#   make            build build/volley and build/volley-sink
#   make test       install missing Debian packages, build, run unit + integration tests
#   make asan       the same suite under AddressSanitizer and UBSan (build-asan/);
#                   ASAN_PYTEST="tests/integration/test_engine_*.py ..." picks the pytest part
#   make chaos      a fleet under faults (kills, Redis restart, sink faults), then a ledger check
#   make fuzz       every tests/fuzz/fuzz_*.c under clang libFuzzer + ASan + UBSan,
#                   FUZZ_SECONDS (60) each, new inputs in build-fuzz/ (docs/testing.md)
#   make demo       install, build, start Redis + sink, send the sample campaign, print the report
#   make bench      throughput benchmarks (see README "Benchmarks")
#   make deps       install missing Debian packages only
#   make format     clang-format every C file
#   make install    PREFIX, DESTDIR: volley, man pages, the example config, systemd units (see below)
#   make deb        a Debian package (make deb-check: lintian, dpkg -i, volley check, dpkg -r)
#   make docs       README's configuration reference and config/volley.conf.example from lib/config.c
#                   (make docs-check, run by make test, fails when they are stale)
#
# Sources are found by folder: every .c under lib/ queue/ throttle/ templates/
# engine/ cli/ goes into that layer's archive build/lib<layer>.a (cli/main.c is the
# volley entry point); bench/sink/*.c builds volley-sink; tests/<layer>/test_*.c
# are cmocka binaries linked against their layer and lib/ only.

BUILD   ?= build
CC      ?= gcc
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
override CFLAGS += -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wno-unused-parameter -Wformat=2 -fno-strict-aliasing -I. -MMD -MP
LDLIBS  += -luring -lssl -lcrypto -lhiredis -lcares -lpthread -lm $(shell pkg-config --libs libmicrohttpd)
JEMALLOC ?= -ljemalloc
PYTHON  ?= /usr/bin/python3

# One archive per layer so a module's tests link only what that module may use.
MODULES   := lib queue throttle templates engine inbound cli
src_of     = $(filter-out cli/main.c,$(wildcard $(1)/*.c))
obj_of     = $(patsubst %.c,$(BUILD)/%.o,$(call src_of,$(1)))
ARCHIVES  := $(foreach m,$(MODULES),$(BUILD)/lib$(m).a)
# link order: engine depends on everything, everything depends on lib; cli (the commands) sits
# above engine and links only into volley, so the runtime, its tests and tools cannot reach it;
# inbound (`volley inbound`: queue, throttle and lib below it) links only into volley, its tests and fuzz harnesses
ALL_LIBS  := $(BUILD)/libengine.a $(BUILD)/libqueue.a $(BUILD)/libthrottle.a $(BUILD)/libtemplates.a $(BUILD)/liblib.a
MAIN_OBJ  := $(BUILD)/cli/main.o
SINK_SRC  := $(wildcard bench/sink/*.c)
SINK_OBJ  := $(SINK_SRC:%.c=$(BUILD)/%.o)
TEST_SRC  := $(wildcard tests/*/test_*.c)
TEST_BIN  := $(TEST_SRC:%.c=$(BUILD)/%)
# tests/fuzz/fuzz_x.c: a libFuzzer harness (make fuzz); make test replays its corpus through
# build/tests/fuzz/test_fuzz_x (the same harness + tests/fuzz/replay_main.c, any CC). Only $<
# is compiled: a harness may #include the .c file it reaches into, and its .d file lists it.
FUZZ_SRC  := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_NAMES := $(patsubst tests/fuzz/fuzz_%.c,%,$(FUZZ_SRC))
FUZZ_REPLAY := $(FUZZ_NAMES:%=$(BUILD)/tests/fuzz/test_fuzz_%)
TEST_BIN  += $(FUZZ_REPLAY)
SINK_LIB  := $(BUILD)/libsink.a
TOOL_SRC  := $(wildcard bench/tools/*.c tests/tools/*.c)
TOOL_BIN  := $(patsubst %.c,$(BUILD)/tools/%,$(notdir $(TOOL_SRC)))

.PHONY: all deps test unit integration asan demo bench chaos clean format fuzz fuzz-bins fuzz-replay
.PHONY: docs docs-check
all: $(BUILD)/volley $(BUILD)/volley-sink $(TOOL_BIN)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

define archive_rule
$(BUILD)/lib$(1).a: $(call obj_of,$(1))
	@mkdir -p $$(dir $$@)
	@rm -f $$@
	ar rcs $$@ $$^
endef
$(foreach m,$(MODULES),$(eval $(call archive_rule,$(m))))

# libcurl: only the cli layer uses it (volley events --webhook), so only volley links it
CURL_LIBS := $(shell pkg-config --libs libcurl)
$(BUILD)/volley: $(MAIN_OBJ) $(BUILD)/libcli.a $(BUILD)/libinbound.a $(ALL_LIBS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.a %.o,$^) $(LDLIBS) $(CURL_LIBS) $(JEMALLOC)

$(BUILD)/volley-sink: $(SINK_OBJ) $(BUILD)/liblib.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.a %.o,$^) $(LDLIBS) $(JEMALLOC)

# helper programs for tests and benchmarks: bench/tools/x.c and tests/tools/x.c -> build/tools/x
$(BUILD)/tools/%: bench/tools/%.c $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.a %.o,$^) $(LDLIBS) $(JEMALLOC)
$(BUILD)/tools/%: tests/tools/%.c $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.a %.o,$^) $(LDLIBS) $(JEMALLOC)
# no-uring installs a seccomp filter (the epoll fallback's test)
$(BUILD)/tools/no-uring: LDLIBS += $(shell pkg-config --libs libseccomp)

# make docs: README.md's configuration reference and config/volley.conf.example from lib/config.c's key
# table (scripts/config_doc.c links lib/ only); make docs-check (part of make test) fails when either is stale
CONFIG_DOC := $(BUILD)/tools/config_doc
$(CONFIG_DOC): scripts/config_doc.c $(BUILD)/liblib.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.a %.o,$^) $(LDLIBS) $(JEMALLOC)
docs: $(CONFIG_DOC)
	@$(CONFIG_DOC) README.md config/volley.conf.example docs/feedback.md
docs-check: $(CONFIG_DOC)
	@$(CONFIG_DOC) --check README.md config/volley.conf.example docs/feedback.md

# tests/<layer>/test_x.c links that layer's archive and the common layer (engine tests link everything,
# tests/bench the common layer only): one rule, the archives looked up by the folder's name
TEST_LIBS_lib       := $(BUILD)/liblib.a
TEST_LIBS_queue     := $(BUILD)/libqueue.a $(BUILD)/liblib.a
TEST_LIBS_throttle  := $(BUILD)/libthrottle.a $(BUILD)/liblib.a
TEST_LIBS_templates := $(BUILD)/libtemplates.a $(BUILD)/liblib.a
TEST_LIBS_engine    := $(ALL_LIBS)
TEST_LIBS_bench     := $(BUILD)/liblib.a
TEST_LIBS_inbound   := $(BUILD)/libinbound.a $(BUILD)/libqueue.a $(BUILD)/libthrottle.a $(BUILD)/liblib.a
.SECONDEXPANSION:
$(BUILD)/tests/%: tests/%.c $$(TEST_LIBS_$$(firstword $$(subst /, ,$$*)))
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.a %.o,$^) $(LDLIBS) -lcmocka $(JEMALLOC)

# the decision a job gets is captured instead of written to Redis (LDLIBS, not LDFLAGS: `make asan` sets LDFLAGS on
# its command line, which would drop a target-specific LDFLAGS +=)
$(BUILD)/tests/engine/test_prepare_fence: LDLIBS += -Wl,--wrap=worker_finish_cause

# volley-sink's objects without its main(), for the fuzz harness of its parser
$(SINK_LIB): $(filter-out $(BUILD)/bench/sink/main.o,$(SINK_OBJ))
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/tests/fuzz/test_fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/replay_main.c $(SINK_LIB) $(BUILD)/libinbound.a $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DFUZZ_CORPUS='"$(CURDIR)/tests/fuzz/corpus/$*"' $(LDFLAGS) -o $@ $< tests/fuzz/replay_main.c \
	    $(filter %.a,$^) $(LDLIBS) $(JEMALLOC)

fuzz-replay: $(FUZZ_REPLAY)

# libFuzzer binaries; only built by `make fuzz` (BUILD=build-fuzz, CC=clang, CFLAGS with -fsanitize=fuzzer-no-link)
$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(SINK_LIB) $(BUILD)/libinbound.a $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fsanitize=fuzzer $(LDFLAGS) -o $@ $< $(filter %.a,$^) $(LDLIBS)

fuzz-bins: $(FUZZ_NAMES:%=$(BUILD)/fuzz/fuzz_%)

deps:
	@scripts/deps.sh

test: deps
	@$(MAKE) --no-print-directory all $(TEST_BIN) docs-check
	@BUILD=$(BUILD) PYTHON=$(PYTHON) scripts/run-tests.sh

unit: all $(TEST_BIN)
	@BUILD=$(BUILD) PYTHON=$(PYTHON) scripts/run-tests.sh unit

integration: all $(TEST_BIN)
	@BUILD=$(BUILD) PYTHON=$(PYTHON) scripts/run-tests.sh integration

# jemalloc is left out under ASan: the sanitizer brings its own allocator.
asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan OPT=-O1 JEMALLOC= \
	    CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	    LDFLAGS="-fsanitize=address,undefined" all $(TEST_SRC:%.c=build-asan/%) fuzz-replay
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    BUILD=build-asan PYTHON=$(PYTHON) PYTEST_PATHS="$(ASAN_PYTEST)" scripts/run-tests.sh

# the pytest part of `make asan` (default: all of tests/)
ASAN_PYTEST ?= tests
FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
fuzz:
	@command -v $(FUZZ_CC) >/dev/null || { echo "make fuzz needs $(FUZZ_CC) with libFuzzer (Debian: apt-get install clang)"; exit 2; }
	@$(MAKE) --no-print-directory BUILD=build-fuzz CC=$(FUZZ_CC) JEMALLOC= \
	    CFLAGS="-O1 -g -fsanitize=fuzzer-no-link $(FUZZ_SAN)" LDFLAGS="$(FUZZ_SAN)" fuzz-bins
	@FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh build-fuzz $(FUZZ_NAMES)

# a fleet under faults, then a ledger (tests/integration/chaos_ledger.py); CHAOS_RECIPIENTS=N to change the size
chaos: all
	@CHAOS_RECIPIENTS=$${CHAOS_RECIPIENTS:-200000} VOLLEY_BUILD=$(BUILD) $(PYTHON) tests/integration/chaos_ledger.py

demo: deps all
	@BUILD=$(BUILD) PYTHON=$(PYTHON) scripts/demo.sh

bench: deps all
	@BUILD=$(BUILD) PYTHON=$(PYTHON) bench/run.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-fuzz build-deb

# ---- version, install, man pages, systemd units, Debian package (packaging/, systemd/) ----
#   make install [PREFIX=/usr/local] [DESTDIR=] [SYSCONFDIR=/etc] [UNITDIR=$(PREFIX)/lib/systemd/system]
#   make man        build/man/volley.1 and build/man/volley.conf.5 (scripts/config_doc.c --man1/--man5)
#   make deb        build/deb/volley_<VERSION>_<arch>.deb (packaging/mkdeb.sh: dpkg-deb from a staged install)
#   make deb-check  make deb, then lintian (no errors), dpkg -i, volley --version, volley check, dpkg -r (root)
# The version is the VERSION file's, everywhere: volley --version, the man pages, the package.
VOLLEY_VERSION := $(shell cat VERSION)
$(BUILD)/cli/main.o: VERSION
$(BUILD)/cli/main.o: override CFLAGS += -DVOLLEY_VERSION='"$(VOLLEY_VERSION)"'
# sd_notify (cli/notify.c): only the volley binary links libsystemd
$(BUILD)/cli/notify.o: override CFLAGS += $(shell pkg-config --cflags libsystemd)
$(BUILD)/volley: LDLIBS += $(shell pkg-config --libs libsystemd)

PREFIX     ?= /usr/local
SYSCONFDIR ?= /etc
UNITDIR    ?= $(PREFIX)/lib/systemd/system
BINDIR     := $(PREFIX)/bin
PKGLIBDIR  := $(PREFIX)/lib/volley
MANDIR     := $(PREFIX)/share/man
MAN_PAGES  := $(BUILD)/man/volley.1 $(BUILD)/man/volley.conf.5
UNITS      := volley-worker@.service volley-inbound.service
INSTALL    ?= install

.PHONY: man install deb deb-check
man: $(MAN_PAGES)
$(BUILD)/man/volley.conf.5: $(CONFIG_DOC) VERSION
	@mkdir -p $(dir $@)
	$(CONFIG_DOC) --man5 $(VOLLEY_VERSION) $@
$(BUILD)/man/volley.1: $(CONFIG_DOC) README.md VERSION
	@mkdir -p $(dir $@)
	$(CONFIG_DOC) --man1 README.md $(VOLLEY_VERSION) $@

# the example config goes to /etc/volley/volley.conf unless one is there already (an operator's file is kept);
# units name the installed binary and config, so they are written from systemd/*.in at install time
install: all man
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(PKGLIBDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 \
	    $(DESTDIR)$(SYSCONFDIR)/volley $(DESTDIR)$(UNITDIR) $(DESTDIR)$(PREFIX)/lib/sysusers.d
	$(INSTALL) -m 0755 $(BUILD)/volley $(DESTDIR)$(BINDIR)/volley
	$(INSTALL) -m 0755 $(BUILD)/volley-sink $(DESTDIR)$(PKGLIBDIR)/volley-sink
	$(INSTALL) -m 0644 $(BUILD)/man/volley.1 $(DESTDIR)$(MANDIR)/man1/volley.1
	$(INSTALL) -m 0644 $(BUILD)/man/volley.conf.5 $(DESTDIR)$(MANDIR)/man5/volley.conf.5
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/volley/volley.conf ]; then \
	    echo "install: keeping $(DESTDIR)$(SYSCONFDIR)/volley/volley.conf"; \
	else \
	    echo "$(INSTALL) -m 0644 config/volley.conf.example $(DESTDIR)$(SYSCONFDIR)/volley/volley.conf"; \
	    $(INSTALL) -m 0644 config/volley.conf.example $(DESTDIR)$(SYSCONFDIR)/volley/volley.conf; \
	fi
	for u in $(UNITS); do \
	    sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' systemd/$$u.in \
	        >$(DESTDIR)$(UNITDIR)/$$u && chmod 0644 $(DESTDIR)$(UNITDIR)/$$u || exit 1; \
	done
	$(INSTALL) -m 0644 systemd/volley.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/volley.conf

deb:
	@BUILD=$(BUILD) VERSION=$(VOLLEY_VERSION) MAKE="$(MAKE)" packaging/mkdeb.sh

deb-check: deb
	@BUILD=$(BUILD) VERSION=$(VOLLEY_VERSION) packaging/deb-check.sh

-include $(shell find $(BUILD) -name '*.d' -type f 2>/dev/null)
