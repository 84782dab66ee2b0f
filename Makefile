# canopy: kubebuilder's targets, plus the test bed built from pinned Go module sources.

# Tools and components are built into bin/ (git-ignored) and reused.
LOCALBIN ?= $(shell pwd)/bin
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint
CONTROLLER_TOOLS_VERSION ?= v0.21.0
GOLANGCI_LINT_VERSION ?= v2.15.0
KUBECTL ?= kubectl
# The manager's image and the container tool that builds it (not available on canopy's own
# build machines, which have no Docker engine).
IMG ?= ghcr.io/canopy-dev/canopy:latest
CONTAINER_TOOL ?= docker
# Where `make run` keeps the embedded local cluster's kubeconfig and state.
STATE_DIR ?= $(shell pwd)/.canopy
# Extra arguments to go test, e.g. make test TEST_ARGS='-run TestCanary -v'.
TEST_ARGS ?=
# Go test timeout for the whole suite.
TEST_TIMEOUT ?= 40m
# How long `make test` fuzzes each target after the tests (0 skips; `make fuzz` explores longer).
FUZZTIME_TEST ?= 5s
# The packages with concurrency, which make test runs under the race detector: the
# controllers and internal packages, and the suites that run the manager in process (the
# restarts suite builds its manager binary with -race too). Under -race on 2 cores they
# take about 5 minutes more than without.
RACE_PACKAGES ?= ./controllers/... ./internal/... ./test/e2e/... ./test/hostile/... ./test/meshsim/...
# The race detector needs cgo, so a C compiler: without one (a machine with only Go, where
# go turns cgo off) the same packages run without -race, and make test says so.
RACE ?= $(shell [ "$$(go env CGO_ENABLED)" = 1 ] && echo -race)

SHELL = /usr/bin/env bash -o pipefail
.SHELLFLAGS = -ec

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Display this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate CRDs, RBAC and webhook manifests, copy them into charts/canopy, write docs/reference.md.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd:allowDangerousTypes=true webhook paths="./api/..." paths="./controllers/..." paths="./internal/..." output:crd:artifacts:config=config/crd/bases
	hack/sync-chart.sh
	go run ./hack/crdref

.PHONY: docs
docs: ## Write docs/reference.md from the CRDs (hack/crdref).
	go run ./hack/crdref

.PHONY: generate
generate: controller-gen ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: fmt
fmt: ## Run go fmt.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: tidy
tidy: ## Tidy go.mod of the operator and of every tool module.
	go mod tidy
	@for d in hack/tools/*/; do (cd $$d && if [ "$$d" = "hack/tools/prometheus/" ]; then go mod tidy -e >/dev/null 2>&1; else go mod tidy; fi); done

.PHONY: components
components: ## Build the test bed (kube-apiserver, etcd, controller-manager, scheduler, kwok, Prometheus, cert-manager, helm, kustomize) into bin/.
	hack/build-components.sh

.PHONY: browser
browser: ## Install Debian's chromium for the dashboard's browser tests when it is missing (hack/install-chromium.sh).
	hack/install-chromium.sh

.PHONY: test
test: manifests generate fmt vet components browser ## Run every test (RACE_PACKAGES under the race detector): unit, envtest and local-cluster end to end; then every fuzz target for FUZZTIME_TEST.
	@if [ -z "$(RACE)" ]; then echo "make test: no C compiler (go env CGO_ENABLED is 0): RACE_PACKAGES run without the race detector"; fi
	go test $(RACE) $(RACE_PACKAGES) -timeout $(TEST_TIMEOUT) $(TEST_ARGS)
	go test $$(go list ./... | grep -v -x -F "$$(go list $(RACE_PACKAGES))") -timeout $(TEST_TIMEOUT) $(TEST_ARGS)
	@if [ "$(FUZZTIME_TEST)" != "0" ]; then hack/fuzz.sh $(FUZZTIME_TEST); fi

.PHONY: dashboard-screenshots
dashboard-screenshots: components browser ## Regenerate the dashboard's screenshots in docs/dashboard (a local cluster and chromium).
	CANOPY_SCREENSHOTS=$(CURDIR)/docs/dashboard go test ./test/browser -run '^TestScreenshots$$' -count=1 $(TEST_ARGS)

.PHONY: test-short
test-short: manifests generate fmt vet ## Run the pure unit tests only (no cluster).
	go test -short ./... $(TEST_ARGS)

.PHONY: fuzz
fuzz: ## Run every fuzz target briefly (FUZZTIME per target).
	hack/fuzz.sh $(or $(FUZZTIME),10s)

.PHONY: bench
bench: components ## Run the benchmarks and write docs/benchmarks.md.
	go test ./test/bench/... -run '^$$' -bench . -benchtime 1x -timeout 150m $(TEST_ARGS)

.PHONY: lint
lint: golangci-lint ## Run golangci-lint.
	$(GOLANGCI_LINT) run

.PHONY: lint-fix
lint-fix: golangci-lint ## Run golangci-lint and fix what it can.
	$(GOLANGCI_LINT) run --fix

.PHONY: verify
verify: manifests generate fmt tidy ## Fail if generation, formatting or tidying leaves the tree dirty.
	@if [ -n "$$(git status --porcelain)" ]; then echo "verify: the tree is dirty after manifests generate fmt tidy:"; git status --porcelain; git --no-pager diff --stat; exit 1; fi

##@ Build

.PHONY: build
build: manifests generate fmt vet ## Build the manager and the kubectl plugin.
	go build -o $(LOCALBIN)/manager .
	go build -o $(LOCALBIN)/kubectl-canopy ./cmd/kubectl-canopy

.PHONY: docker-build
docker-build: ## Build the manager's image IMG with CONTAINER_TOOL (needs a Docker or Podman engine).
	$(CONTAINER_TOOL) build -t $(IMG) .

.PHONY: docker-push
docker-push: ## Push the manager's image IMG.
	$(CONTAINER_TOOL) push $(IMG)

.PHONY: run
# Outside the cluster no webhook configuration points at this process (make install
# installs the CRDs only), so it serves none; make deploy runs them.
run: manifests generate fmt vet ## Run canopy: against $KUBECONFIG if set, else on the embedded local cluster with the demo.
	@if [ -n "$$KUBECONFIG" ]; then \
		$(MAKE) install && go run . --enable-webhooks=false $(RUN_ARGS); \
	else \
		$(MAKE) components && go run ./test/demo $(RUN_ARGS); \
	fi

.PHONY: demo
demo: run ## The same as run without KUBECONFIG.

##@ Deployment

ifndef ignore-not-found
  ignore-not-found = false
endif

.PHONY: install
install: manifests ## Install the CRDs into the cluster of $KUBECONFIG.
	$(KUBECTL) apply --server-side -k config/crd

.PHONY: uninstall
uninstall: manifests ## Remove the CRDs from the cluster of $KUBECONFIG.
	$(KUBECTL) delete --ignore-not-found=$(ignore-not-found) -k config/crd

.PHONY: deploy
deploy: manifests ## Deploy the manager to the cluster of $KUBECONFIG (the image of config/manager/kustomization.yaml).
	$(KUBECTL) apply --server-side -k config/default

.PHONY: undeploy
undeploy: ## Remove the manager from the cluster of $KUBECONFIG.
	$(KUBECTL) delete --ignore-not-found=$(ignore-not-found) -k config/default

##@ Tools

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN) ## Build controller-gen into bin/.
$(CONTROLLER_GEN):
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)

.PHONY: golangci-lint
golangci-lint: $(GOLANGCI_LINT) ## Build golangci-lint into bin/.
$(GOLANGCI_LINT):
	GOBIN=$(LOCALBIN) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
