"""Flax causal LMs (OPT/Galactica, Llama, Mistral) with HF/GGUF loading, LoRA and PEFT interop."""
