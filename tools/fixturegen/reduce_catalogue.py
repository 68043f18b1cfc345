"""The token-reduction fixture: model shape, sparse_config, predictor seed and the cases it covers."""

MODEL_NAME = "tiny-llava-reduce"

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
