# manning — every set-up step is a make target; `make test` and `make demo` install what is
# missing first (`make deps`), so a fresh Debian 12 machine needs nothing else.

CARGO        ?= cargo
MUSL_TARGET  := x86_64-unknown-linux-musl
STATIC_BIN   := target/$(MUSL_TARGET)/release/manning

# Debian packages: build (protoc and its well-known .proto files for etcd-client;
# --no-install-recommends leaves libprotobuf-dev out otherwise, musl for the static binary), test (etcd,
# PostgreSQL 15, iproute2 for network namespaces) and benchmarks (HAProxy, socat, pgbench).
APT_PACKAGES := protobuf-compiler libprotobuf-dev etcd-server etcd-client postgresql-15 postgresql-client-15 \
                iproute2 haproxy socat musl-tools file procps util-linux python3-venv openssl
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
# Patroni from PyPI in its own venv, for compatibility tests against patronictl and
# Patroni's own DCS code (tests/dcs_patroni.rs; harness `patronictl()`).
PATRONI_VENV := /opt/manning-test/patroni
PATRONI_PIP  := 'patroni[etcd3]==4.1.*' psycopg2-binary
# Debian's python, not a per-user one (pyenv under /root): the bench runs Patroni as the
# `postgres` user, which must be able to execute the venv's interpreter.
VENV_PYTHON  := $(shell [ -x /usr/bin/python3 ] && echo /usr/bin/python3 || echo python3)

.PHONY: all deps build static test lint bench demo clean

all: build

## deps: install missing Debian packages and the musl Rust target (idempotent).
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "make deps: all Debian packages present"; fi
	@rustup target list --installed 2>/dev/null | grep -q $(MUSL_TARGET) || rustup target add $(MUSL_TARGET)
	@if [ -x $(PATRONI_VENV)/bin/patronictl ] && \
	   [ "$$(readlink -f $(PATRONI_VENV)/bin/python3)" = "$$(readlink -f $$(command -v $(VENV_PYTHON)))" ]; then \
	  echo "make deps: Patroni present in $(PATRONI_VENV)"; \
	else echo "make deps: installing Patroni into $(PATRONI_VENV)"; \
	  $(SUDO) mkdir -p $(dir $(PATRONI_VENV)) && $(SUDO) $(VENV_PYTHON) -m venv --clear $(PATRONI_VENV) && \
	  $(SUDO) $(PATRONI_VENV)/bin/pip install -q $(PATRONI_PIP); fi

## build: optimised binary for this machine (target/release/manning).
build:
	$(CARGO) build --release

## static: fully static x86_64 musl binary (mimalloc as the allocator).
static: deps
	$(CARGO) build --release --target $(MUSL_TARGET)
	@file $(STATIC_BIN) | tee /dev/stderr | grep -Eq 'statically linked|static-pie linked' \
	  || { echo "make static: $(STATIC_BIN) is not statically linked" >&2; exit 1; }
	@ls -l $(STATIC_BIN) | awk '{printf "make static: %s is %.1f MB\n", $$9, $$5/1048576}'

## test: unit and integration tests against real etcd and PostgreSQL 15.
test: deps
	$(CARGO) test --locked -- --test-threads=2

## demo: a local cluster (etcd, postgres, proxy, forwarder) on loopback; Ctrl-C stops it.
demo: deps build
	./target/release/manning demo

## bench: benchmarks against their references in the same run (socat, HAProxy, Patroni).
bench: deps build
	python3 bench/forward.py
	python3 bench/proxy.py --no-build
	python3 bench/supervise.py --no-build
	python3 bench/cluster.py --no-build

## lint: formatting and clippy with warnings as errors.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

clean:
	$(CARGO) clean
