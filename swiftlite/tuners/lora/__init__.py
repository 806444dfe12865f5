"""The LoRA family, one package with one-way imports (each file imports only those above it):

    lora.py            LoRAConfig, LoRALayer, LoRALinear: the paper, its equation, rsLoRA, DoRA
    lora_layers.py     the same update on Conv1D (GPT-2), Conv2d and Embedding            <- lora.py
    lora_merged.py     ms-swift's use_merged_linear: LoRA on chosen chunks of a fused qkv <- lora.py, lora_layers.py
    lora_plus.py       LoRA+ optimizer groups                                             <- lora.py
    lora_weighted.py   PEFT's add_weighted_adapter ("linear", "svd")                      <- lora.py
    quantized.py       QLoRA: LoRA beside bitsandbytes / torchao / hqq quantized layers   <- lora.py
    tuner.py           LoRATuner (registered): picks a layer class, uses the three above  <- all of them
"""
from .lora import PEFT_UNSUPPORTED, LoRAConfig, LoRALayer, LoRALinear
from .tuner import LoRATuner

__all__ = ["PEFT_UNSUPPORTED", "LoRAConfig", "LoRALayer", "LoRALinear", "LoRATuner"]
