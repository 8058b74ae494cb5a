# Two entry points for a newcomer: `make demo` (main job) and `make test` (the suite CI runs).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo demo-lm demo-keyframe-detokenizer demo-generate extract-demo test test-demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/lightning fit -c configs/motion_vqvae/demo.yaml

demo-lm: $(STAMP)
	test -f outputs/motion_vqvae_demo/checkpoints/last.ckpt || $(BIN)/lightning fit -c configs/motion_vqvae/demo.yaml
	test -f outputs/keyframe_tokenizer_demo/checkpoints/last.ckpt || $(BIN)/lightning fit -c configs/keyframe_tokenizer/demo.yaml
	$(BIN)/lightning fit -c configs/multimodal_lm/demo.yaml

demo-keyframe-detokenizer: $(STAMP)
	test -f outputs/keyframe_tokenizer_demo/checkpoints/last.ckpt || $(BIN)/lightning fit -c configs/keyframe_tokenizer/demo.yaml
	$(BIN)/lightning fit -c configs/keyframe_detokenizer/demo.yaml

# Train each missing demo checkpoint (configs/pipelines/demo.yaml names them), then generate a 2-clip video (47 frames).
demo-generate: $(STAMP)
	test -f outputs/motion_vqvae_demo/checkpoints/last.ckpt || $(BIN)/lightning fit -c configs/motion_vqvae/demo.yaml
	test -f outputs/keyframe_tokenizer_demo/checkpoints/last.ckpt || $(BIN)/lightning fit -c configs/keyframe_tokenizer/demo.yaml
	test -f outputs/keyframe_detokenizer_demo/checkpoints/last.ckpt || $(MAKE) demo-keyframe-detokenizer
	test -f outputs/video_detokenizer_demo/checkpoints/last.ckpt || $(BIN)/lightning fit -c configs/video_detokenizer/demo.yaml
	test -f outputs/multimodal_lm_demo/checkpoints/last.ckpt || $(BIN)/lightning fit -c configs/multimodal_lm/demo.yaml
	$(BIN)/lavit generate "a textured block moves up while the camera pans left" -o outputs/generated.mp4 --clips 2 -c configs/pipelines/demo.yaml

extract-demo: $(STAMP)
	$(BIN)/lavit demo-data outputs/demo_data --num-videos 8
	$(BIN)/lavit extract outputs/demo_data/videos -o outputs/demo_extract

# the embedded default sweep (needs the demo pipeline checkpoints that configs/pipelines/demo.yaml names)
.PHONY: demo-sweep
demo-sweep: $(STAMP)
	$(BIN)/lavit demo-data outputs/demo_sweep/data --num-videos 4 --duration 3
	$(BIN)/lavit sweep -c configs/sweeps/demo.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist worksteal --durations=15 -m "not demo" tests

test-demo: $(STAMP)
	$(BIN)/python -m pytest -s -m demo tests

bench: $(STAMP)
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python benchmarks/motion_extraction.py

clean:
	rm -rf outputs lightning_logs
