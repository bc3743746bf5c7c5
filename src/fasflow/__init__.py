"""fasflow: identity-aware face anti-spoofing on CelebA-Spoof, reproducibly."""

__version__ = "0.2.0"

# Spoof is the positive class throughout (ISO/IEC 30107-3 convention used here).
LIVE, SPOOF = 0, 1
# The one decision threshold (imported as fasflow.metrics.DECISION_THRESHOLD): spoof when
# P(spoof) >= 0.5, the paper's argmax of the two-class softmax. Defined here, beside the class
# codes, so that light modules (the CLI) need not import the metrics stack.
DECISION_THRESHOLD = 0.5

# CelebA-Spoof label vector index 40: presentation-attack instrument species.
SPOOF_TYPES = {
    0: "live",
    1: "photo",
    2: "poster",
    3: "a4",
    4: "face_mask",
    5: "upper_body_mask",
    6: "region_mask",
    7: "pc",
    8: "pad",
    9: "phone",
    10: "3d_mask",
}
# name -> code of the spoof types (the names config keys and tables use).
SPOOF_TYPE_CODES = {name: code for code, name in SPOOF_TYPES.items() if code != 0}

# The files of one trained model, by role: written by training, read by prediction, export and
# latency (fasflow.models.load_trained); the workflow names its outputs from this mapping.
MODEL_FILES = {"weights": "weights.safetensors", "history": "history.csv", "summary": "summary.json"}
