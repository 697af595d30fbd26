# MemoBuild. `make demo` and `make test` work on a fresh Debian machine with Node and npm:
# bun comes from the npm registry when it is not on PATH; system tools from apt (as root).

BUN_VERSION := 1.4.5
LOCAL_BUN := $(CURDIR)/.tools/node_modules/.bin/bun
BUN ?= $(or $(shell command -v bun 2>/dev/null),$(LOCAL_BUN))
BINARY := dist/memobuild
# Worker scripts are separate entry points of the compiled binary.
WORKERS := src/hash/hash-worker.ts
SOURCES := $(shell find src bin \( -name '*.ts' -o -name '*.css' \) -not -name '*.test.ts' 2>/dev/null) package.json bun.lock

# Extra arguments for `bun test`, e.g. TEST_ARGS="--reporter=junit --reporter-outfile=junit.xml".
TEST_ARGS ?=

.PHONY: install system-deps build test demo bench clean audit mutation

$(LOCAL_BUN):
	npm install --prefix .tools --no-save --no-audit --no-fund --loglevel=error bun@$(BUN_VERSION)

node_modules/.installed: package.json bun.lock | $(BUN)
	$(BUN) install --frozen-lockfile
	@touch $@

install: node_modules/.installed

system-deps:
	@bash scripts/install-system-deps.sh

# Compile flags, measured side by side (CPU medians; the README's Performance section has the table):
# --splitting keeps each lazily imported command in its own module, so its Node built-ins load
#   only with it (without it, --version costs ~50 ms CPU instead of ~5);
# --bytecode (needs --format esm: the entry awaits at top level) skips parsing: ~55 ms off every
#   command (no-op build ~92 -> ~39 ms, --help ~87 -> ~35 ms) for ~4.6 MB more binary;
# --minify saves ~0.6 MB, --sourcemap costs ~0.9 MB; neither changes start-up measurably, and
#   the source map keeps internal errors' stack traces and CPU profiles readable: both stay.
COMPILE_FLAGS := --splitting --minify --sourcemap --bytecode --format esm

$(BINARY): $(SOURCES) node_modules/.installed
	$(BUN) build --compile $(COMPILE_FLAGS) bin/memobuild.ts $(WORKERS) --outfile $(BINARY)
	@# The source maps are inside the binary; the copies written beside it (one per chunk) are not needed.
	@rm -f $(dir $(BINARY))*.map

build: $(BINARY)

test: system-deps build
	$(BUN) test $(TEST_ARGS)

# The demo: build MemoBuild's own busybox base image offline, build the example project on it,
# run the result with the OCI runtime, then rebuild to show every step cached.
DEMO_CACHE ?= $(HOME)/.cache/memobuild
demo: system-deps build
	@bash scripts/prepare-base-rootfs.sh
	./$(BINARY) build examples/base -t memobuild/busybox:latest --cache-dir $(DEMO_CACHE)
	./$(BINARY) build examples/hello -t hello:latest --cache-dir $(DEMO_CACHE) --output type=oci,dest=dist/hello-oci
	@echo "--- running hello:latest"
	./$(BINARY) run hello:latest --cache-dir $(DEMO_CACHE)
	./$(BINARY) run hello:latest --cache-dir $(DEMO_CACHE) -- Alice Bob
	@echo "--- rebuilding: nothing should run"
	./$(BINARY) build examples/hello -t hello:latest --cache-dir $(DEMO_CACHE)

# Mutation testing of the modules that protect users (not in CI: it takes a while).
# MODULES="stat-cache root-resolver" limits it; reports in reports/mutation/.
MODULES ?=
mutation: install
	$(BUN) scripts/mutation.ts $(MODULES)

# A benchmark, not a test: nothing fails on timing and CI never runs it. This build against the
# binary of BASELINE, a git ref (default: the last release tag v*, else HEAD~20), compiled by its
# own `make build` in a scratch clone ($TMPDIR/memobuild-bench-baselines, kept per commit), and
# against BuildKit where dockerd is installed; interleaved in one run, one table of ratios
# (start-up, the example project and a generated COPY context: cold, no-op, one file edited;
# context digest beside b3sum). As root. E.g. make bench BASELINE=v0.1.0 BENCH_ARGS="--runs 5 --files 20000 --mb 500".
# Each peer's own benchmark runs alone: bun run bench/{parse-plan,context-digest,build-vs-buildkit,server,server-mixed-load,registry,run-overhead}.ts
BASELINE ?=
BENCH_ARGS ?=
# Then, each beside its peer tool on this machine: per-RUN overhead against `crun run` of the
# same bundle, and a registry pull against `skopeo copy` + `umoci unpack` (a 50 MB image).
bench: build
	@bash scripts/install-system-deps.sh b3sum umoci crun skopeo docker-registry
	$(BUN) run bench/ab-binaries.ts $(if $(BASELINE),--baseline $(BASELINE)) $(BENCH_ARGS)
	$(BUN) run bench/run-overhead.ts
	$(BUN) run bench/registry.ts --mb 50

clean:
	rm -rf dist .tools node_modules

# Dependency advisories, and no secret of the test suite in any file the tests leave behind.
audit: system-deps build
	BUN=$(BUN) bash scripts/audit.sh
