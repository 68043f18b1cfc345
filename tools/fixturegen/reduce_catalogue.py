"""The token-reduction fixture: model shape, sparse_config, predictor seed and the cases it covers."""

import torch

from .catalogue import IMAGE, Fixture, _text, _user
from .models import ModelSpec
from .templates import CHAT_TEMPLATE_JSON_STYLE

MODEL_NAME = "tiny-llava-reduce"
# The tokenizer seed of tools/make_fixtures.py: every fixture model shares one tokenizer.
TOKENIZER_SEED = 1234
LM_LAYERS = 20
VISION_LAYERS = 4

# The model seed is fixed, not searched at generation time: the case knobs below (merge threshold,
# drop thresholds, eviction share, rank scale) were chosen for this model so that every decision
# clears the margin check, and the generator fails rather than silently move to another seed.
MODEL_SEED = 5000

REDUCE_FIXTURE = Fixture(
    name=MODEL_NAME,
    first_seed=MODEL_SEED,
    spec=ModelSpec(num_key_value_heads=2, storage_dtype=torch.bfloat16),
    images=["shapes-64x40.png"],
    messages=[_user(IMAGE, _text("What colour is the circle? Describe the shapes."))],
    chat_template=CHAT_TEMPLATE_JSON_STYLE,
    chat_template_file="chat_template.json",
    processor_files="split",
)

# LM hidden width; the predictors read rows of this width.
HIDDEN_SIZE = 64

# Written into config.json as `sparse_config` (the Dynamic-LLaVA spelling).
SPARSE_CONFIG = {
    "sparse_layer": 2,
    "vision_keep_rate": 0.2,
    "d_model": 32,
    "nhead": 2,
    "dim_feedforward": 64,
    "num_layers": 2,
    "use_output_text_predictor": True,
}

# Fixed, not searched: the predictor weights are shared by predictors.json and the model directory,
# and other tests rely on them staying the same.
PREDICTOR_SEED = 100
PREDICTOR_FILE = "predictors.safetensors"

# Greedy tokens per case (the first from the prefill logits, then one decode step each).
NEW_TOKENS = 8

# expected/reduce-<name>.json for each spec. tau=0.58 merges 4 of the 16 windows of this image.
CASES = {
    "none": "none",
    "mustdrop-budget": "mustdrop:keep=24,tau=0.58",
    "mustdrop-threshold": "mustdrop:g=0.004,i=0.03,tau=0.58",
    "mustdrop-reference-order": "mustdrop:keep=24,tau=0.58,order=reference",
    "mustdrop-reference-compact": "mustdrop:keep=24,tau=0.58,order=reference,positions=compact",
    "mustdrop-evict": "mustdrop:keep=32,tau=0.58,evict=0.3,warmup=2",
    "fastv": "fastv:k=2,keep=36",
    "fastv-rate": "fastv:k=4,r=0.5",
    "sparsevlm-budget": "sparsevlm:keep=24",
    "sparsevlm-reference": "sparsevlm:scale=8,bias=0",
    "sparsevlm-compact-no-recycle": "sparsevlm:keep=24,recycle=off,positions=compact",
    "dynamic": "dynamic",  # keep_rate 0.2 and the sparse layer come from sparse_config
    "dynamic-no-text-compact": "dynamic:text=off,positions=compact",
}
