"""torch/peft/optimum code: imported only by the train step and `rag-autotune bootstrap`, never by serving."""
