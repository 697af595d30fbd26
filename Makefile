# MemoBuild. `make demo` and `make test` work on a fresh Debian machine with Node and npm:
# bun comes from the npm registry when it is not on PATH; system tools from apt (as root).

BUN_VERSION := 1.4.5
LOCAL_BUN := $(CURDIR)/.tools/node_modules/.bin/bun
BUN ?= $(or $(shell command -v bun 2>/dev/null),$(LOCAL_BUN))
BINARY := dist/memobuild
# Worker scripts are separate entry points of the compiled binary.
WORKERS := src/hash/hash-worker.ts
SOURCES := $(shell find src bin -name '*.ts' -not -name '*.test.ts' 2>/dev/null) package.json bun.lock

# Extra arguments for `bun test`, e.g. TEST_ARGS="--reporter=junit --reporter-outfile=junit.xml".
TEST_ARGS ?=

.PHONY: install system-deps build test demo bench clean

$(LOCAL_BUN):
	npm install --prefix .tools --no-save --no-audit --no-fund --loglevel=error bun@$(BUN_VERSION)

node_modules/.installed: package.json bun.lock | $(BUN)
	$(BUN) install --frozen-lockfile
	@touch $@

install: node_modules/.installed

system-deps:
	@bash scripts/install-system-deps.sh

$(BINARY): $(SOURCES) node_modules/.installed
	$(BUN) build --compile --minify --sourcemap bin/memobuild.ts $(WORKERS) --outfile $(BINARY)

build: $(BINARY)

test: system-deps build
	$(BUN) test $(TEST_ARGS)

# Until the build engine lands, the demo shows the plan of the example build.
demo: build
	./$(BINARY) graph examples/hello
	@echo
	@echo "The same graph as Graphviz dot, Mermaid or JSON: ./$(BINARY) graph examples/hello --format dot|mermaid|json"

bench: build
	@bash scripts/install-system-deps.sh b3sum
	$(BUN) run bench/parse-plan.ts
	$(BUN) run bench/context-digest.ts

clean:
	rm -rf dist .tools node_modules
