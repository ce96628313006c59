# CanvasChat developer entry points. See README.md.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/canvaschat/target

.PHONY: run test deps frontend crd

## run: build the frontend and run the chat locally (embedded broker, no Redis needed)
run: frontend
	cargo run --release -p canvaschat-gateway -- --listen $${CANVASCHAT_LISTEN:-127.0.0.1:8080} --admin-listen $${CANVASCHAT_ADMIN_LISTEN:-127.0.0.1:9090}

## test: install what is missing, then run every suite (what CI runs)
test:
	bash scripts/test.sh

## deps: only install what the suites need
deps:
	bash scripts/install-deps.sh

frontend:
	cd frontend && { [ -d node_modules ] || npm ci --no-audit --no-fund; } && npm run build

## crd: regenerate the committed CRD YAML (crds/ and the chart's copy) from the Rust types
crd:
	CANVASCHAT_UPDATE_CRDS=1 cargo test -q -p canvaschat-crds --test crd_drift
