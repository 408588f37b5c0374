# Slipway: `make help` lists the targets.
GO          ?= go
BIN         := $(CURDIR)/bin
STATICCHECK := $(BIN)/staticcheck
STATICCHECK_VERSION := v0.8.2
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -X main.version=$(VERSION)
TEST_TIMEOUT ?= 45m
# Helm's Kubernetes client (k8s.io/cli-runtime) links kustomize, whose Go
# plugin loader imports package plugin: the linker then exports every symbol
# (+26 MB on the provisioner) and binds them all at load time (a binary that
# also links go-nvml would not start without libnvidia-ml). The tag drops
# kustomize's Go plugin support, which nothing here uses.
TAGS        := kustomize_disable_go_plugin_support
export GOFLAGS := $(strip $(GOFLAGS) -tags=$(TAGS))
# A -tags flag on the command line replaces the one in GOFLAGS: e2e builds name both.
E2E_TAGS    := -tags=$(TAGS),e2e

.PHONY: help build test unit e2e lint bench fuzz demo-soak tools kernel node-image image-bundle clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/provisioner and bin/device-plugin
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/provisioner ./cmd/provisioner
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/device-plugin ./cmd/device-plugin

test: unit e2e ## run every test (SLIPWAY_E2E=1 turns missing system packages into failures)

unit: ## unit and integration tests of the module
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

e2e: ## end-to-end tests with real peers (QEMU PXE firmware; needs root)
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(E2E_TAGS) ./test/e2e/...

lint: $(STATICCHECK) ## gofmt, go vet, staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet $(E2E_TAGS) ./test/e2e/...
	$(STATICCHECK) ./...
	$(STATICCHECK) $(E2E_TAGS) ./test/e2e/...

$(STATICCHECK):
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

bench: ## benchmarks that compare against a peer in the same run and print the ratio (the QEMU boot one needs root)
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./...
	$(GO) test $(E2E_TAGS) -run '^$$' -bench RealBoot -benchtime 3x -timeout 30m ./test/e2e/

DEMO_RUNS ?= 10
demo-soak: build ## provisioner demo --nodes 1000, DEMO_RUNS (10) times in a row; the first failure stops it and prints its log
	@for i in $$(seq $(DEMO_RUNS)); do \
		log=$$(mktemp); \
		if ! $(BIN)/provisioner demo --nodes 1000 -o plain >$$log 2>&1; then \
			tail -n 300 $$log; rm -f $$log; echo "demo-soak: run $$i of $(DEMO_RUNS) failed"; exit 1; \
		fi; \
		echo "demo-soak: run $$i of $(DEMO_RUNS): $$(grep -E '^[0-9]+ nodes: ' $$log) ($$(grep -E '^demo: wall' $$log | sed 's/^demo: //'))"; \
		rm -f $$log; \
	done

FUZZTIME ?= 30s
fuzz: ## run each fuzz test for FUZZTIME (default 30s)
	$(GO) test -run '^$$' -fuzz FuzzResolve -fuzztime $(FUZZTIME) ./pkg/inventory
	$(GO) test -run '^$$' -fuzz FuzzHandle -fuzztime $(FUZZTIME) ./pkg/pxe/dhcp
	$(GO) test -run '^$$' -fuzz FuzzParseConfig -fuzztime $(FUZZTIME) ./pkg/devices

tools: ## build kubeadm, kube-apiserver, kube-controller-manager, kube-scheduler and etcd for the control-plane tests
	test/tools/build.sh

kernel: ## fetch Debian's kernel for the e2e node image (needs apt-get update)
	test/e2e/fetch-kernel.sh

NODE_CACHE := $(CURDIR)/images/node/.cache
node-image: ## build the node image as root: images/node/.cache/out/{vmlinuz,initrd.img} (images/node/README.md)
	images/node/build.sh

image-bundle: ## the offline image bundle from local builds (needs node-image and tools): images/node/.cache/out/bundle
	$(GO) run ./cmd/provisioner images build --from binaries --kubeadm $(NODE_CACHE)/bin/kubeadm \
		--kubernetes-version $$($(NODE_CACHE)/bin/kubeadm version -o short) --root $(NODE_CACHE)/root \
		--bin-dir $(NODE_CACHE)/bin --bin-dir $(CURDIR)/test/tools/bin --out $(NODE_CACHE)/out/bundle \
		--add localhost/slipway/busybox:1.35=/bin/busybox --epoch $$(git log -1 --format=%ct -- images/node 2>/dev/null || echo 0)

clean: ## remove built binaries
	rm -rf $(BIN)
