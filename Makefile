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
# engine/ goes into libvolley.a (engine/main.c is the volley entry point);
# bench/sink/*.c builds volley-sink; every tests/<module>/test_*.c is one
# cmocka test binary linked against libvolley.a.

BUILD   ?= build
CC      ?= gcc
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wno-unused-parameter -Wformat=2 -fno-strict-aliasing -I. -MMD -MP
LDLIBS  += -luring -lssl -lcrypto -lhiredis -lcares -lpthread -lm
JEMALLOC ?= -ljemalloc
PYTHON  ?= /usr/bin/python3

LIB_SRC   := $(wildcard lib/*.c queue/*.c throttle/*.c templates/*.c engine/*.c)
LIB_SRC   := $(filter-out engine/main.c,$(LIB_SRC))
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o)
MAIN_OBJ  := $(BUILD)/engine/main.o
SINK_SRC  := $(wildcard bench/sink/*.c)
SINK_OBJ  := $(SINK_SRC:%.c=$(BUILD)/%.o)
TEST_SRC  := $(wildcard tests/*/test_*.c)
TEST_BIN  := $(TEST_SRC:%.c=$(BUILD)/%)
TOOL_SRC  := $(wildcard bench/tools/*.c)
TOOL_BIN  := $(TOOL_SRC:bench/tools/%.c=$(BUILD)/%)

.PHONY: all deps test unit integration asan demo bench clean format
all: $(BUILD)/volley $(BUILD)/volley-sink $(TOOL_BIN)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libvolley.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/volley: $(MAIN_OBJ) $(BUILD)/libvolley.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(JEMALLOC)

$(BUILD)/volley-sink: $(SINK_OBJ) $(BUILD)/libvolley.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(JEMALLOC)

$(BUILD)/%: bench/tools/%.c $(BUILD)/libvolley.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(JEMALLOC)

$(BUILD)/tests/%: tests/%.c $(BUILD)/libvolley.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka $(JEMALLOC)

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

demo: deps all
	@BUILD=$(BUILD) PYTHON=$(PYTHON) scripts/demo.sh

bench: deps all
	@BUILD=$(BUILD) PYTHON=$(PYTHON) bench/run.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
