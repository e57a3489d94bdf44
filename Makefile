# mmdet-c: one entry point.
#   make            build libmmdet.so, every plugin, every tool
#   make test       build and run the whole suite (SANITIZE=1 for ASan+UBSan)
#   make demo       the main job on the embedded synthetic dataset
#   make bench      benchmarks against the PyTorch peer
#   make fuzz       libFuzzer targets for every parser of outside input,
#                   FUZZ_SECONDS (30) each; not part of `make test`
#   make install    PREFIX=/usr/local
#
# Sources are found by convention, so adding a file needs no Makefile edit:
#   core/<layer>/*.c core/backends/cpu/*.c -> lib/libmmdet.so
#                                      (docs/ARCHITECTURE.md maps the layers)
#   plugins/<cat>/<name>.c             -> plugins/<cat>/<name>.so
#   plugins/<cat>/<name>/*.c           -> plugins/<cat>/<name>.so
#   tests/plugins/<name>.c             -> tests/plugins/<name>.so
#   tools/<name>.c, tools/<name>/*.c   -> bin/<name>
#   tests/unit/test_<name>.c           -> build/tests/test_<name> (Criterion)
#   bench/bench_<name>.c               -> build/bench/bench_<name>
#   fuzz/<name>.c                      -> build/fuzz/<name> (clang, libFuzzer)
#   proto/<name>.proto                 -> build/proto/<name>.pb-c.o (protoc-c),
#                                         linked into targets that list it in PROTO_<key>

CC      ?= cc
PREFIX  ?= /usr/local
OPT     ?= -O2
SANITIZE ?=
VERSION := 0.1.0
comma := ,
ABI_MAJOR := 1

DEPS_OK := build/.deps-ok
CPPFLAGS := -Icore/include -Icore -DMD_VERSION=\"$(VERSION)\"
# -Wno-missing-field-initializers: key schemas written positionally leave
# md_key's optional fields (MD_AT, bounds, choices) to their zero defaults.
CFLAGS   := -std=gnu11 $(OPT) -g -fPIC -fopenmp -Wall -Wextra -Werror -Wno-format-truncation -Wno-missing-field-initializers -MMD -MP
LDFLAGS  := -fopenmp
ifeq ($(SANITIZE),1)
  CFLAGS  += -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
  LDFLAGS += -fsanitize=address,undefined
endif
CORE_LIBS := -lltdl -lconfig -lopenblas -ljpeg -lpng -lyajl $(shell pkg-config --libs libxml-2.0 2>/dev/null) -lpthread -lm
CPPFLAGS += $(shell pkg-config --cflags libxml-2.0 2>/dev/null)
# MPI (distributed training, core/dist/dist_mpi.c): Debian's OpenMPI; without it
# the library builds and --launcher mpi|slurm says how to get it.
MPI_LIBS := $(shell pkg-config --libs ompi-c 2>/dev/null)
ifneq ($(MPI_LIBS),)
CPPFLAGS  += -DMD_HAVE_MPI $(shell pkg-config --cflags ompi-c 2>/dev/null)
CORE_LIBS += $(MPI_LIBS)
endif
# Drawing (core/visualization/draw.c) goes through cairo and pango; only it sees their headers.
CORE_LIBS += $(shell pkg-config --libs pangocairo cairo 2>/dev/null)
DRAW_CPPFLAGS := $(shell pkg-config --cflags pangocairo cairo 2>/dev/null)
build/core/visualization/draw.o build/fuzz/obj/core/visualization/draw.o: CPPFLAGS += $(DRAW_CPPFLAGS)
LINK_MMDET := -Llib -lmmdet -lm
# Plugins that call a library libmmdet links name it too.
LIBS_plugins_datasets_coco := -lyajl
LIBS_plugins_datasets_voc := $(shell pkg-config --libs libxml-2.0 2>/dev/null)
LIBS_tool_mmdet-analyze-logs := -lyajl
# Protocol buffers: proto/<name>.proto is compiled by protoc-c into
# build/proto/<name>.pb-c.{c,h,o}; a target names the messages it uses as
# PROTO_<key> := <name> ... (key as for LIBS_: plugins_<cat>_<name>,
# tool_<name>, test_<name>) and gets them linked with -lprotobuf-c.
PROTO_plugins_hooks_tensorboard_logger := tensorboard_event
PROTO_test_tensorboard := tensorboard_event
PROTO_tool_mmdet-export-onnx := onnx

# Objects depend on the flags they were built with: changing SANITIZE or OPT
# rebuilds everything (plugins live next to their sources, not per-flavour).
FLAGS_STAMP := build/flags
$(shell mkdir -p build; echo '$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS)' > build/flags.new; \
  cmp -s build/flags.new build/flags || mv build/flags.new build/flags; rm -f build/flags.new)

CORE_SRC  := $(wildcard core/*.c core/*/*.c core/backends/cpu/*.c)
CORE_OBJ  := $(CORE_SRC:%.c=build/%.o)
LIBMMDET  := lib/libmmdet.so

PLUGIN_SINGLE := $(patsubst %.c,%.so,$(wildcard plugins/*/*.c tests/plugins/*.c))
PLUGIN_DIRS   := $(patsubst %/,%,$(sort $(dir $(wildcard plugins/*/*/*.c))))
PLUGIN_MULTI  := $(addsuffix .so,$(PLUGIN_DIRS))
PLUGINS       := $(PLUGIN_SINGLE) $(PLUGIN_MULTI)

TOOL_SINGLE := $(patsubst tools/%.c,bin/%,$(wildcard tools/*.c))
TOOL_DIRS   := $(patsubst tools/%/,%,$(sort $(dir $(wildcard tools/*/*.c))))
TOOL_MULTI  := $(addprefix bin/,$(TOOL_DIRS))
TOOLS       := $(TOOL_SINGLE) $(TOOL_MULTI)

TEST_SRC  := $(wildcard tests/unit/test_*.c)
TEST_BIN  := $(TEST_SRC:tests/unit/%.c=build/tests/%)
TEST_HELPERS := $(filter-out $(TEST_SRC),$(wildcard tests/unit/*.c))
BENCH_SRC := $(wildcard bench/bench_*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=build/bench/%)

# CUDA is optional: built into lib/libmmdet-cuda.so when nvcc is found.
NVCC      := $(shell command -v nvcc 2>/dev/null)
CUDA_SRC  := $(wildcard core/backends/cuda/*.cu)
CUDA_OBJ  := $(CUDA_SRC:%.cu=build/%.o)
# SASS for Hopper and Ampere, PTX for the rest (the driver compiles it).
CUDA_ARCH ?= -gencode arch=compute_90,code=sm_90 -gencode arch=compute_80,code=sm_80 \
             -gencode arch=compute_75,code=compute_75
NVCCFLAGS := -O2 -std=c++17 $(CUDA_ARCH) -Xcompiler -fPIC,-Wall,-Wextra,-Werror -Werror all-warnings \
             -Icore/include -Icore
ifneq ($(NVCC),)
ifneq ($(CUDA_SRC),)
CUDA_LIB  := lib/libmmdet-cuda.so
endif
endif
# The NCCL transport (lib/libmmdet-nccl.so) with CUDA, when the toolkit (or
# the system) has nccl.h; plain C against the CUDA runtime and NCCL.
CUDA_HOME ?= $(if $(NVCC),$(patsubst %/bin/nvcc,%,$(realpath $(NVCC))))
NCCL_H    := $(if $(NVCC),$(firstword $(wildcard $(CUDA_HOME)/include/nccl.h /usr/include/nccl.h /usr/local/include/nccl.h)))
ifneq ($(NCCL_H),)
NCCL_LIB  := lib/libmmdet-nccl.so
NCCL_DIR  := $(firstword $(wildcard $(CUDA_HOME)/lib64/libnccl.so $(CUDA_HOME)/lib/libnccl.so))
endif

.PHONY: all deps test demo bench install clean fuzz memcheck
all: $(LIBMMDET) $(PLUGINS) $(TOOLS) $(CUDA_LIB) $(NCCL_LIB)

# Plain `make` only checks the Debian packages and names what is missing;
# `make deps`, `make test` and `make demo` install them.
$(DEPS_OK): scripts/deps.sh
	@mkdir -p build
	scripts/deps.sh build --check
	@touch $@
deps:
	scripts/deps.sh build
	@mkdir -p build && touch $(DEPS_OK)

build/%.o: %.c $(FLAGS_STAMP) | $(DEPS_OK)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(LIBMMDET): $(CORE_OBJ)
	@mkdir -p lib
	$(CC) -shared -Wl,-soname,libmmdet.so.$(ABI_MAJOR) -Wl,--no-undefined $(LDFLAGS) -o $@.$(ABI_MAJOR) $^ $(CORE_LIBS)
	ln -sf libmmdet.so.$(ABI_MAJOR) $@

# The backend library: static CUDA runtime, shared cuBLAS and cuDNN; it calls
# nothing in libmmdet (core/backends/backend.h is the whole contract).
# The headers of per-element math shared with the CPU kernels are prerequisites too.
CUDA_HDRS := core/backends/cuda/cuda_internal.h core/backends/cuda/kernel_util.cuh $(wildcard core/backends/*.h) \
             core/backends/cpu/elementwise_math.h
build/core/backends/cuda/%.o: core/backends/cuda/%.cu $(CUDA_HDRS)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@
$(CUDA_LIB): $(CUDA_OBJ)
	@mkdir -p lib
	$(NVCC) -shared -cudart static $(CUDA_ARCH) -o $@ $(CUDA_OBJ) -lcublas -lcudnn

$(NCCL_LIB): core/backends/nccl/nccl.c core/include/mmdet/dist.h $(FLAGS_STAMP)
	@mkdir -p lib build
	$(CC) $(CPPFLAGS) -I$(dir $(NCCL_H)) -I$(CUDA_HOME)/include $(CFLAGS) -MF build/nccl.d -shared -o $@ $< \
	  $(if $(NCCL_DIR),-L$(dir $(NCCL_DIR)) -Wl$(comma)-rpath$(comma)$(dir $(NCCL_DIR))) -lnccl \
	  -L$(CUDA_HOME)/lib64 -l:libcudart_static.a -ldl -lrt -lpthread
# Generated protocol buffer code (protoc-c), kept for the headers targets include.
PROTOC_C ?= protoc-c
.PRECIOUS: build/proto/%.pb-c.c build/proto/%.pb-c.h
build/proto/%.pb-c.c build/proto/%.pb-c.h: proto/%.proto | $(DEPS_OK)
	@mkdir -p build/proto
	$(PROTOC_C) --proto_path=proto --c_out=build/proto $<
build/proto/%.pb-c.o: build/proto/%.pb-c.c $(FLAGS_STAMP)
	$(CC) $(CPPFLAGS) -Ibuild/proto $(CFLAGS) -c $< -o $@
# The objects of a key's PROTO_ list, and the flags a target using them adds.
proto_objs = $(patsubst %,build/proto/%.pb-c.o,$(PROTO_$(1)))
proto_flags = $(if $(PROTO_$(1)),-Ibuild/proto $(call proto_objs,$(1)) -lprotobuf-c)

# Single-file plugins.
%.so: %.c $(LIBMMDET) $(FLAGS_STAMP)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MF build/$(subst /,_,$*).d -shared $(LDFLAGS) -o $@ $< $(LINK_MMDET) $(LIBS_$(subst /,_,$*)) $(call proto_flags,$(subst /,_,$*))

# Multi-file plugins: every .c of the folder.
define multi_plugin
$(1).so: $(wildcard $(1)/*.c) $(wildcard $(1)/*.h) $(LIBMMDET) $(FLAGS_STAMP)
	$(CC) $(CPPFLAGS) -I$(1) $(CFLAGS) -MF build/$(subst /,_,$(1)).d -shared $(LDFLAGS) -o $$@ $(wildcard $(1)/*.c) $(LINK_MMDET) $(LIBS_$(subst /,_,$(1))) $(call proto_flags,$(subst /,_,$(1)))
endef
$(foreach d,$(PLUGIN_DIRS),$(eval $(call multi_plugin,$(d))))

bin/%: tools/%.c $(LIBMMDET) $(FLAGS_STAMP)
	@mkdir -p bin
	$(CC) $(CPPFLAGS) $(CFLAGS) -MF build/tool_$*.d $(LDFLAGS) -o $@ $< -Wl,-rpath,'$$ORIGIN/../lib' $(LINK_MMDET) $(LIBS_tool_$*) $(call proto_flags,tool_$*)

define multi_tool
bin/$(1): $(wildcard tools/$(1)/*.c) $(wildcard tools/$(1)/*.h) $(LIBMMDET) $(FLAGS_STAMP)
	@mkdir -p bin
	$(CC) $(CPPFLAGS) -Itools/$(1) $(CFLAGS) -MF build/tool_$(1).d $(LDFLAGS) -o $$@ $(wildcard tools/$(1)/*.c) -Wl,-rpath,'$$$$ORIGIN/../lib' $(LINK_MMDET) $(LIBS_tool_$(1)) $(call proto_flags,tool_$(1))
endef
$(foreach t,$(TOOL_DIRS),$(eval $(call multi_tool,$(t))))

build/tests/%: tests/unit/%.c $(TEST_HELPERS) $(LIBMMDET) $(FLAGS_STAMP)
	@mkdir -p build/tests
	$(CC) $(CPPFLAGS) -Itests/unit $(CFLAGS) -MF build/tests/$*.d $(LDFLAGS) -o $@ $< $(TEST_HELPERS) -Wl,-rpath,'$$ORIGIN/../../lib' $(LINK_MMDET) -lcriterion $(CORE_LIBS) $(call proto_flags,$*)

build/bench/%: bench/%.c $(LIBMMDET) $(FLAGS_STAMP)
	@mkdir -p build/bench
	$(CC) $(CPPFLAGS) $(CFLAGS) -MF build/bench/$*.d $(LDFLAGS) -o $@ $< -Wl,-rpath,'$$ORIGIN/../../lib' $(LINK_MMDET) $(CORE_LIBS)

# Targets wait for the protocol buffer objects they name.
$(foreach t,$(PLUGINS),$(eval $(t): $(call proto_objs,$(subst /,_,$(t:.so=)))))
$(foreach t,$(TOOLS),$(eval $(t): $(call proto_objs,tool_$(notdir $(t)))))
$(foreach t,$(TEST_BIN),$(eval $(t): $(call proto_objs,$(notdir $(t)))))

# Deliberately broken plugins for the loader's tests, one folder per case so
# no normal plugin directory ever holds them.
BAD_PLUGINS := $(patsubst %.c,%.so,$(wildcard tests/bad_plugins/*/*.c))
$(TEST_BIN): $(BAD_PLUGINS)

build/.test-deps-ok: scripts/deps.sh
	@mkdir -p build
	scripts/deps.sh test
	@touch $@

test: build/.test-deps-ok
	$(MAKE) all
	$(MAKE) $(TEST_BIN)
	scripts/run-tests.sh $(TEST_BIN)

# The demo trains on the CPU: it needs no CUDA library (minutes of nvcc).
demo: build/.demo-deps-ok
	$(MAKE) $(LIBMMDET) $(PLUGINS) $(TOOLS)
	scripts/demo.sh

build/.demo-deps-ok: scripts/deps.sh
	@mkdir -p build
	scripts/deps.sh demo
	@touch $@ $(DEPS_OK)

# Leak check of full forward/backward/reset cycles (a ResNet block, training
# loops with hooks and checkpoints) under valgrind; not part of `make test`
# because valgrind is slow.
memcheck: build/.test-deps-ok
	$(MAKE) all build/tests/test_ops_resblock build/tests/test_runner
	for t in build/tests/test_ops_resblock build/tests/test_runner; do \
	  valgrind -q --leak-check=full --errors-for-leak-kinds=definite --trace-children=yes \
	    --error-exitcode=9 $$t --jobs 1 || exit 1; done

bench:
	scripts/deps.sh build
	$(MAKE) all $(BENCH_BIN)
	scripts/deps.sh bench || echo "bench: PyTorch peer unavailable; printing ours only"
	scripts/bench.sh $(BENCH_BIN)

# Fuzzing: the core recompiled with clang, libFuzzer, ASan and UBSan into
# build/fuzz (static, no libmmdet.so), one binary per fuzz/<name>.c, each run
# FUZZ_SECONDS on its working corpus build/fuzz/corpus/<name>, seeded from the
# committed fuzz/corpus/<name>. A crash leaves its input as
# build/fuzz/crash-<name>-* and fails the target (docs/testing.md).
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 30
FUZZ_SRC     := $(wildcard fuzz/*.c)
FUZZ_BIN     := $(FUZZ_SRC:fuzz/%.c=build/fuzz/%)
FUZZ_CFLAGS  := -std=gnu11 -g -O1 -fopenmp -Wall -Wextra -Wno-unknown-pragmas -fno-omit-frame-pointer \
  -fsanitize=address,undefined -fno-sanitize-recover=undefined -MMD -MP
FUZZ_CORE_OBJ := $(CORE_SRC:%.c=build/fuzz/obj/%.o)
.SECONDARY: $(FUZZ_CORE_OBJ)

build/.fuzz-deps-ok: scripts/deps.sh
	@mkdir -p build
	scripts/deps.sh fuzz
	@touch $@

build/fuzz/obj/%.o: %.c | build/.fuzz-deps-ok
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

build/fuzz/%: fuzz/%.c fuzz/fuzz_util.h $(FUZZ_CORE_OBJ)
	$(FUZZ_CC) $(CPPFLAGS) -D_GNU_SOURCE -Iplugins/datasets $(FUZZ_CFLAGS) -MF build/fuzz/$*.d -fsanitize=fuzzer -o $@ $< \
	  $(FUZZ_CORE_OBJ) $(CORE_LIBS)

fuzz: build/.fuzz-deps-ok
	$(MAKE) $(FUZZ_BIN)
	scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_BIN)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig \
	  $(DESTDIR)$(PREFIX)/include/mmdet $(DESTDIR)$(PREFIX)/lib/mmdet/plugins
	install -m 755 $(TOOLS) $(DESTDIR)$(PREFIX)/bin/
	install -m 755 lib/libmmdet.so.$(ABI_MAJOR) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libmmdet.so.$(ABI_MAJOR) $(DESTDIR)$(PREFIX)/lib/libmmdet.so
	$(if $(CUDA_LIB),install -m 755 $(CUDA_LIB) $(DESTDIR)$(PREFIX)/lib/)
	$(if $(NCCL_LIB),install -m 755 $(NCCL_LIB) $(DESTDIR)$(PREFIX)/lib/)
	cp -r core/include/mmdet/. $(DESTDIR)$(PREFIX)/include/mmdet/
	for p in $(filter plugins/%,$(PLUGINS)); do \
	  d=$(DESTDIR)$(PREFIX)/lib/mmdet/$$(dirname $$p); install -d $$d; install -m 755 $$p $$d/; done
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' mmdet.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/mmdet.pc

clean:
	rm -rf build bin lib
	find plugins tests/plugins -name '*.so' -delete
	rm -f $(BAD_PLUGINS)

-include $(shell find build -name '*.d' 2>/dev/null)
