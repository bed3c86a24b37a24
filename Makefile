# gridgate — one non-recursive Makefile; every output goes to build/.
#   make            build everything           make test      the whole suite
#   make run        demo: gridgate + sims      make bench     benchmarks (not tests)
#   make fuzz       libFuzzer targets          make format / check / clean
#   SAN=1           ASan + UBSan               V=1            show commands
# Sources are found by directory, so a new .c file in a room needs no edit here.

B        := build
CC       ?= gcc
CLANG    ?= clang
SAN      ?= 0
V        ?= 0
Q        := $(if $(filter 1,$(V)),,@)

WARN     := -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare
OPT      ?= -O2 -g
CFLAGS   := $(OPT) -std=gnu11 $(WARN) -DH2O_USE_LIBUV=0 -D_GNU_SOURCE -Iinclude -I. -I$(B) -MMD -MP
LDLIBS   := -lh2o-evloop -lssl -lcrypto -lz -ljansson -lbpf -lelf -lwslay -lpthread -lm
ifeq ($(SAN),1)
CFLAGS   += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS  += -fsanitize=address,undefined
endif

# What the objects were built with; a change of flags rebuilds everything.
FLAGS_ID := $(CC) $(CFLAGS) $(LDFLAGS) SAN=$(SAN)

COMMON_SRC   := $(wildcard common/*.c)
GATEWAY_SRC  := $(filter-out control/main.c,$(wildcard control/*.c control/adapters/*.c dataplane/*.c))
ENGINESIM_SRC:= $(wildcard tools/enginesim/*.c)
GRIDLOAD_SRC := $(wildcard tools/gridload/*.c)
GRIDCTL_SRC  := $(wildcard tools/gridctl/*.c)
BPF_SRC      := $(wildcard bpf/*.bpf.c)
UNIT_SRC     := $(wildcard tests/unit/*.c)
FUZZ_SRC     := $(wildcard tests/fuzz/*.c)

obj = $(patsubst %.c,$(B)/obj/%.o,$(1))

BINS := $(B)/enginesim $(B)/gridload
ifneq ($(wildcard control/main.c),)
BINS += $(B)/gridgate
endif
ifneq ($(GRIDCTL_SRC),)
BINS += $(B)/gridctl
endif
SKELS := $(patsubst bpf/%.bpf.c,$(B)/%.skel.h,$(BPF_SRC))
UNIT_BINS := $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRC))
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(B)/fuzz/%,$(FUZZ_SRC))

# Sub-suites: test-unit, test-integration (TESTS='tests/integration/x.test.mjs' picks files).
.SECONDARY:
.PHONY: all deps test test-unit test-integration test-valgrind soak run bench fuzz format check clean FORCE
all: $(BINS)

$(B)/.deps-ok: tools/deps.sh
	$(Q)tools/deps.sh ensure build
	$(Q)mkdir -p $(B) && touch $@

$(B)/.flags: FORCE
	$(Q)mkdir -p $(B); echo '$(FLAGS_ID)' | cmp -s - $@ || echo '$(FLAGS_ID)' > $@

$(B)/obj/%.o: %.c $(B)/.flags | $(B)/.deps-ok $(SKELS)
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

# The status page is embedded into admin.o with .incbin, which -MMD does not see.
$(B)/obj/control/admin.o: control/status_page.html

# Everything gridgate is made of but main(), so unit tests link against the real modules.
$(B)/libgridgate.a: $(call obj,$(COMMON_SRC) $(GATEWAY_SRC))
	$(Q)rm -f $@ && ar rcs $@ $^

$(B)/gridgate: $(call obj,control/main.c) $(B)/libgridgate.a
	$(if $(Q),@echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(B)/enginesim: $(call obj,$(ENGINESIM_SRC)) $(B)/libgridgate.a
	$(if $(Q),@echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(B)/gridload: $(call obj,$(GRIDLOAD_SRC)) $(B)/libgridgate.a
	$(if $(Q),@echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(B)/gridctl: $(call obj,$(GRIDCTL_SRC)) $(B)/libgridgate.a
	$(if $(Q),@echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# --- BPF: clang -target bpf, then a libbpf skeleton per program -----------------------------
$(B)/vmlinux.h: | $(B)/.deps-ok
	@mkdir -p $(B)
	$(Q)bpftool btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp && mv $@.tmp $@
$(B)/bpf/%.bpf.o: bpf/%.bpf.c $(B)/vmlinux.h $(wildcard bpf/*.h include/gridgate/*.h)
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "  BPF     $<")
	$(Q)$(CLANG) -target bpf -g -O2 -D__TARGET_ARCH_x86 -Iinclude -I$(B) -I/usr/include/x86_64-linux-gnu -c $< -o $@
$(B)/%.skel.h: $(B)/bpf/%.bpf.o
	$(Q)bpftool gen skeleton $< name $(subst -,_,$*) > $@.tmp && mv $@.tmp $@

# --- tests -----------------------------------------------------------------------------------
$(B)/tests/%: $(call obj,tests/unit/%.c) $(B)/libgridgate.a
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

tests/clients/node_modules/.package-lock.json: tests/clients/package.json tests/clients/package-lock.json
	$(Q)cd tests/clients && npm ci --no-audit --no-fund --loglevel=error
	$(Q)touch $@

# One summary line at the end: 'N passed, N failed' over unit and integration tests together.
test: all $(UNIT_BINS)
	$(Q)tools/deps.sh ensure test
	$(Q)$(MAKE) --no-print-directory tests/clients/node_modules/.package-lock.json
	$(Q)GG_BUILD=$(B) tests/run.sh $(UNIT_BINS)

test-unit: $(UNIT_BINS)
	$(Q)GG_BUILD=$(B) GG_ONLY=unit tests/run.sh $(UNIT_BINS)
test-integration: all tests/clients/node_modules/.package-lock.json
	$(Q)GG_BUILD=$(B) GG_ONLY=integration tests/run.sh
# Unit tests under valgrind memcheck (a plain build: valgrind and ASan do not mix); leaks fail the run.
test-valgrind: $(UNIT_BINS)
	$(Q)for t in $(UNIT_BINS); do valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect --suppressions=tests/valgrind.supp \
	    $$t > $$t.vg.log 2>&1 && echo "ok   valgrind $$t" || { tail -40 $$t.vg.log; echo "FAIL valgrind $$t"; exit 1; }; done
# Long run under mixed load and periodic backend faults: flat RSS and fds, no unexpected error lines.
SOAK_MINUTES ?= 5
soak: all
	$(Q)GG_BUILD=$(B) tools/soak.sh $(SOAK_MINUTES)

# --- fuzzing: clang libFuzzer builds of every tests/fuzz/*.c against the real sources ------------
FUZZ_CFLAGS := -g -O1 -std=gnu11 -DH2O_USE_LIBUV=0 -D_GNU_SOURCE -Iinclude -I. -I$(B)
FUZZ_FLAGS := -fsanitize=fuzzer,address,undefined $(FUZZ_CFLAGS)
FUZZ_SECONDS ?= 10
# The sources are compiled once (instrumented, no libFuzzer main) and linked into every target.
FUZZ_OBJS := $(patsubst %.c,$(B)/obj/fuzz/%.o,$(COMMON_SRC) $(GATEWAY_SRC))
$(B)/obj/fuzz/%.o: %.c | $(B)/.deps-ok $(SKELS)
	@mkdir -p $(dir $@)
	$(Q)$(CLANG) -fsanitize=fuzzer-no-link,address,undefined $(FUZZ_CFLAGS) -MMD -MP -c -o $@ $<
$(B)/fuzz/%: tests/fuzz/%.c $(FUZZ_OBJS)
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "  FUZZ    $@")
	$(Q)$(CLANG) $(FUZZ_FLAGS) -MMD -MP -MF $@.d -o $@ $< $(FUZZ_OBJS) $(LDLIBS)
fuzz: $(FUZZ_BINS)
	$(Q)tests/run-fuzz.sh $(FUZZ_SECONDS) $(FUZZ_BINS)

# --- running and measuring ---------------------------------------------------------------------
run: all
	$(Q)tools/run-demo.sh

# make bench runs every tools/bench/*.sh; make bench-NAME runs tools/bench/NAME.sh.
bench: all
	$(Q)tools/deps.sh ensure bench
	$(Q)for b in tools/bench/*.sh; do echo "== $$b"; "$$b" || exit 1; done
bench-%: all
	$(Q)tools/deps.sh ensure bench
	$(Q)tools/bench/$*.sh

# --- hygiene -----------------------------------------------------------------------------------
FMT_SRC = $(shell git ls-files '*.c' '*.h' 2>/dev/null | grep -v '^bpf/')
format:
	$(Q)clang-format -i $(FMT_SRC)
check:
	$(Q)clang-format --dry-run --Werror $(FMT_SRC)
	$(Q)$(MAKE) --no-print-directory OPT="-O2 -g -Werror" all

clean:
	rm -rf $(B)

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null) $(wildcard $(B)/fuzz/*.d)
