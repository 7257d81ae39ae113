"""What a run loads and saves: our GPT, Hugging Face and GGUF students, tokenizers, checkpoints."""
