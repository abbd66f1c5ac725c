# SPDX-License-Identifier: MIT
# Makefile for the tensorial project (GNU make).
#   make                 library, programs (build/kqeq, build/eann), tests, benchmarks
#   make test            build and run every test; last line "total: N passed, N failed"
#   make demo            the README's main demo
#   make bench           benchmarks (prints ratios against measured peers)
#   make install PREFIX=/usr/local
#   make CC=clang        any C11 compiler that takes gcc-style flags
#   make OPT=-O0 B=build-O0   another optimisation level in another build folder

ifeq ($(origin CC),default)
CC = gcc
endif
OPT  ?= -O2
B    ?= build
PREFIX ?= /usr/local
AR   ?= ar

# Non-negotiable: C11, no contraction of a*b+c into FMA, never -ffast-math.
STDFLAGS = -std=c11 -ffp-contract=off
WARN     = -Wall -Wextra -Werror
ALL_CFLAGS = $(STDFLAGS) $(OPT) $(WARN) $(SAN) $(CFLAGS)
# make PORTABLE=1: compile out the hand-written SIMD copies (portable C only; same bits).
ifeq ($(PORTABLE),1)
ALL_CFLAGS += -DTENSORIAL_NO_SIMD
endif
# Files outside the model libraries (I/O, programs, tests) may use POSIX.
POSIX = -D_POSIX_C_SOURCE=200809L
LDLIBS = -lm

# The model libraries (pure C11, libc + libm); xyz.c is the I/O library (POSIX).
MODELSRC = $(wildcard linalg.c soap.c kqeq.c kqeq_kernels.c kqeq_model.c eann.c eann_kernels.c eann_train.c spectra.c)
LIBSRC  = $(MODELSRC) xyz.c
LIBHDR  = $(wildcard $(LIBSRC:.c=.h))
# what `make install` puts in include/tensorial: the public headers (the
# *_kernels.h headers are private to the files that vendor them)
PUBHDR  = $(filter-out %_kernels.h,$(LIBHDR))
LIBOBJ  = $(LIBSRC:%.c=$(B)/%.o)
LIB     = $(B)/libtensorial.a
# The same library as a shared object for python/tensorial (ctypes): the same
# sources and flags, compiled position-independent into $(B)/pic/.
SO      = $(B)/libtensorial.so
PICOBJ  = $(LIBSRC:%.c=$(B)/pic/%.o)
# cli/common.c is shared; cli/kqeq*.c make build/kqeq, cli/eann*.c make build/eann.
KQEQ_CLIOBJ = $(patsubst %.c,$(B)/%.o,$(wildcard cli/kqeq*.c) cli/common.c)
EANN_CLIOBJ = $(patsubst %.c,$(B)/%.o,$(wildcard cli/eann*.c) cli/common.c)
SPECTRUM_CLIOBJ = $(patsubst %.c,$(B)/%.o,$(wildcard cli/spectrum*.c) cli/common.c)
PROGS   = $(patsubst cli/%.c,$(B)/%,$(wildcard cli/kqeq.c cli/eann.c cli/spectrum.c))
TESTS   = $(patsubst tests/%.c,$(B)/tests/%,$(wildcard tests/test_*.c))
BENCHES = $(patsubst bench/%.c,$(B)/bench/%,$(wildcard bench/bench_*.c))

.PHONY: all lib test demo bench install clean sanitize fuzz valgrind
all: $(LIB) $(SO) $(PROGS) $(TESTS) $(BENCHES)
lib: $(LIB) $(SO)

$(MODELSRC:%.c=$(B)/%.o): $(B)/%.o: %.c $(LIBHDR) | $(B)
	$(CC) $(ALL_CFLAGS) -c $< -o $@
$(B)/xyz.o: xyz.c xyz.h | $(B)
	$(CC) $(ALL_CFLAGS) $(POSIX) -c $< -o $@
$(LIB): $(LIBOBJ)
	rm -f $@ && $(AR) rcs $@ $^
$(MODELSRC:%.c=$(B)/pic/%.o): $(B)/pic/%.o: %.c $(LIBHDR) | $(B)
	@mkdir -p $(B)/pic
	$(CC) $(ALL_CFLAGS) -fPIC -c $< -o $@
$(B)/pic/xyz.o: xyz.c xyz.h | $(B)
	@mkdir -p $(B)/pic
	$(CC) $(ALL_CFLAGS) $(POSIX) -fPIC -c $< -o $@
$(SO): $(PICOBJ)
	$(CC) $(ALL_CFLAGS) -shared $^ -o $@ $(LDLIBS)

$(B)/cli/%.o: cli/%.c $(wildcard cli/*.h) $(LIBHDR) | $(B)
	@mkdir -p $(B)/cli
	$(CC) $(ALL_CFLAGS) $(POSIX) -I. -c $< -o $@
$(B)/kqeq: $(KQEQ_CLIOBJ) $(LIB)
	$(CC) $(ALL_CFLAGS) $^ -o $@ $(LDLIBS)
$(B)/eann: $(EANN_CLIOBJ) $(LIB)
	$(CC) $(ALL_CFLAGS) $^ -o $@ $(LDLIBS)
$(B)/spectrum: $(SPECTRUM_CLIOBJ) $(LIB)
	$(CC) $(ALL_CFLAGS) $^ -o $@ $(LDLIBS)

$(B)/tests/%: tests/%.c tests/harness.h $(LIBHDR) $(LIB) | $(B)
	@mkdir -p $(B)/tests
	$(CC) $(ALL_CFLAGS) $(POSIX) -I. $< $(LIB) -o $@ $(LDLIBS)
$(B)/bench/%: bench/%.c $(LIBHDR) $(LIB) | $(B)
	@mkdir -p $(B)/bench
	$(CC) $(ALL_CFLAGS) $(POSIX) -I. $< $(LIB) -o $@ $(LDLIBS) $(BENCH_LIBS)

$(B):
	mkdir -p $(B)

# Every test binary and every tests/*.sh; each prints "NAME: N passed, N failed".
test: $(LIB) $(SO) $(PROGS) $(TESTS)
	@B=$(B) CC="$(CC)" sh tests/run.sh

demo: $(PROGS)
	@B=$(B) sh data/demo.sh

bench: all
	@B=$(B) sh bench/run.sh

sanitize:
	$(MAKE) B=build-san OPT="-O1 -g" SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" test

# valgrind memcheck over every test program and a small training and
# prediction of each kind (tests/valgrind.sh), on an -O1 -g build.
valgrind:
	$(MAKE) B=build-vg OPT="-O1 -g" SAN= all
	@B=build-vg sh tests/valgrind.sh

install: $(LIB) $(PROGS)
	mkdir -p $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include/tensorial $(DESTDIR)$(PREFIX)/bin
	cp $(LIB) $(DESTDIR)$(PREFIX)/lib/
	cp $(PUBHDR) $(DESTDIR)$(PREFIX)/include/tensorial/
	cp $(PROGS) $(DESTDIR)$(PREFIX)/bin/
	sed -e 's|@PREFIX@|$(PREFIX)|' tensorial.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/tensorial.pc

clean:
	rm -rf build build-*

# Fuzzing with libFuzzer (clang, plus Debian's libclang-rt-14-dev for the
# sanitizer runtimes). Each target runs FUZZ_SECONDS; new crashing inputs
# land in fuzz-out/; keep them (after the fix) in fuzz/regress/TARGET/, which
# tests/test_fuzz_regress.c replays in every `make test`.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = xyz eann_model kqeq_model
FUZZ_CC ?= clang
fuzz:
	@mkdir -p build-fuzz fuzz-out
	@for t in $(FUZZ_TARGETS); do \
	  $(FUZZ_CC) $(STDFLAGS) -g -O1 -fsanitize=fuzzer,address,undefined $(POSIX) -I. \
	    fuzz/fuzz_$$t.c fuzz/targets.c $(LIBSRC) -o build-fuzz/fuzz_$$t -lm || exit 1; \
	  mkdir -p fuzz-out/$$t fuzz-out/corpus-$$t; \
	  echo "== fuzz_$$t for $(FUZZ_SECONDS) s"; \
	  build-fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 \
	    -dict=fuzz/dict/$$t.dict -artifact_prefix=fuzz-out/$$t/ fuzz-out/corpus-$$t fuzz/seeds/$$t || exit 1; \
	done

# make reproduce [QUICK=1] [ONLY=dft]: rerun every experiment of the README's accuracy
# tables and print ours beside the paper's figure (tools/reproduce.sh; QUICK=1 ~10 min on
# 2 cores; ONLY=dft only the rows with DFT labels, which grow as chunks are added).
.PHONY: reproduce
reproduce: $(PROGS) $(TESTS)
	@B=$(B) sh tools/reproduce.sh $(if $(filter 1,$(QUICK)),--quick) $(if $(ONLY),--only $(ONLY))
