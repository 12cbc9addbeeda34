# volley - high-throughput bulk email engine
#
#   make            build build/volley and build/volley-sink
#   make test       install missing Debian packages, build, run unit + integration tests
#   make asan       the same suite under AddressSanitizer and UBSan (build-asan/)
#   make demo       install, build, start Redis + sink, send the sample campaign, print the report
#   make bench      throughput benchmarks (see README "Benchmarks")
#   make deps       install missing Debian packages only
#   make format     clang-format every C file
#
# Sources are found by folder: every .c under lib/ queue/ throttle/ templates/
# engine/ goes into that layer's archive build/lib<layer>.a (engine/main.c is the
# volley entry point); bench/sink/*.c builds volley-sink; tests/<layer>/test_*.c
# are cmocka binaries linked against their layer and lib/ only.

BUILD   ?= build
CC      ?= gcc
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
override CFLAGS += -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wno-unused-parameter -Wformat=2 -fno-strict-aliasing -I. -MMD -MP
LDLIBS  += -luring -lssl -lcrypto -lhiredis -lcares -lpthread -lm
JEMALLOC ?= -ljemalloc
PYTHON  ?= /usr/bin/python3

# One archive per layer so a module's tests link only what that module may use.
MODULES   := lib queue throttle templates engine
src_of     = $(filter-out engine/main.c,$(wildcard $(1)/*.c))
obj_of     = $(patsubst %.c,$(BUILD)/%.o,$(call src_of,$(1)))
ARCHIVES  := $(foreach m,$(MODULES),$(BUILD)/lib$(m).a)
# link order: engine depends on everything, everything depends on lib
ALL_LIBS  := $(BUILD)/libengine.a $(BUILD)/libqueue.a $(BUILD)/libthrottle.a $(BUILD)/libtemplates.a $(BUILD)/liblib.a
MAIN_OBJ  := $(BUILD)/engine/main.o
SINK_SRC  := $(wildcard bench/sink/*.c)
SINK_OBJ  := $(SINK_SRC:%.c=$(BUILD)/%.o)
TEST_SRC  := $(wildcard tests/*/test_*.c)
TEST_BIN  := $(TEST_SRC:%.c=$(BUILD)/%)
TOOL_SRC  := $(wildcard bench/tools/*.c tests/tools/*.c)
TOOL_BIN  := $(patsubst %.c,$(BUILD)/tools/%,$(notdir $(TOOL_SRC)))

.PHONY: all deps test unit integration asan demo bench chaos clean format
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

$(BUILD)/volley: $(MAIN_OBJ) $(ALL_LIBS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.a %.o,$^) $(LDLIBS) $(JEMALLOC)

$(BUILD)/volley-sink: $(SINK_OBJ) $(BUILD)/liblib.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.a %.o,$^) $(LDLIBS) $(JEMALLOC)

# helper programs for tests and benchmarks: bench/tools/x.c and tests/tools/x.c -> build/tools/x
$(BUILD)/tools/%: bench/tools/%.c $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.a %.o,$^) $(LDLIBS) $(JEMALLOC)
$(BUILD)/tools/%: tests/tools/%.c $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.a %.o,$^) $(LDLIBS) $(JEMALLOC)

# tests/<module>/test_x.c links that module and the common layer (engine tests link everything)
$(BUILD)/tests/lib/%: tests/lib/%.c $(BUILD)/liblib.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.a %.o,$^) $(LDLIBS) -lcmocka $(JEMALLOC)
$(BUILD)/tests/queue/%: tests/queue/%.c $(BUILD)/libqueue.a $(BUILD)/liblib.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.a %.o,$^) $(LDLIBS) -lcmocka $(JEMALLOC)
$(BUILD)/tests/throttle/%: tests/throttle/%.c $(BUILD)/libthrottle.a $(BUILD)/liblib.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.a %.o,$^) $(LDLIBS) -lcmocka $(JEMALLOC)
$(BUILD)/tests/templates/%: tests/templates/%.c $(BUILD)/libtemplates.a $(BUILD)/liblib.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.a %.o,$^) $(LDLIBS) -lcmocka $(JEMALLOC)
$(BUILD)/tests/engine/%: tests/engine/%.c $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.a %.o,$^) $(LDLIBS) -lcmocka $(JEMALLOC)
$(BUILD)/tests/bench/%: tests/bench/%.c $(BUILD)/liblib.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c %.a %.o,$^) $(LDLIBS) -lcmocka $(JEMALLOC)

deps:
	@scripts/deps.sh

test: deps
	@$(MAKE) --no-print-directory all $(TEST_BIN)
	@BUILD=$(BUILD) PYTHON=$(PYTHON) scripts/run-tests.sh

unit: all $(TEST_BIN)
	@BUILD=$(BUILD) PYTHON=$(PYTHON) scripts/run-tests.sh unit

integration: all $(TEST_BIN)
	@BUILD=$(BUILD) PYTHON=$(PYTHON) scripts/run-tests.sh integration

# jemalloc is left out under ASan: the sanitizer brings its own allocator.
asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan OPT=-O1 JEMALLOC= \
	    CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	    LDFLAGS="-fsanitize=address,undefined" all $(TEST_SRC:%.c=build-asan/%)
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    BUILD=build-asan PYTHON=$(PYTHON) scripts/run-tests.sh

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
	rm -rf build build-asan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
