"""What can embed: the model registry, weights (local or from the Hugging Face hub), image
preprocessing, the encoders over open_clip and timm, and the ONNX text tower used by text queries."""
