"""endpoint-picker: an LLM-aware Endpoint Picker (EPP) for the Gateway API Inference Extension."""

__version__ = "0.1.0"
