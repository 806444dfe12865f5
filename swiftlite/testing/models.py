"""Tiny model factories for the conformance kit and the tests (random init, no downloads).

Every factory is deterministic (it seeds its own init) — it stands in for "the pretrained base" —
and returns (model, inputs) where `inputs` is a dict of keyword arguments for `model(**inputs)`.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(16, 12)
        self.fc1 = nn.Linear(12, 24)
        self.norm = nn.LayerNorm(24)
        self.fc2 = nn.Linear(24, 24)
        self.head = nn.Linear(24, 4)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(input_ids)  # (B, T, 12)
        h = torch.relu(self.fc1(h))
        h = self.norm(h + self.fc2(h))
        return self.head(h)  # (B, T, 4)


class CNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.norm = nn.GroupNorm(2, 8)
        self.head = nn.Linear(8, 5)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(pixel_values))
        h = self.norm(h + self.conv2(h))
        return self.head(h.mean(dim=(2, 3)))  # (B, 5)


def _seeded(seed: int = 0) -> torch.Generator:
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed + 1)


def mlp():
    g = _seeded()
    return MLP().eval(), {"input_ids": torch.randint(0, 16, (2, 5), generator=g)}


def cnn():
    g = _seeded()
    return CNN().eval(), {"pixel_values": torch.randn(2, 3, 8, 8, generator=g)}


def bert():
    from transformers import BertConfig, BertModel

    g = _seeded()
    cfg = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=48, max_position_embeddings=32)
    ids = torch.randint(0, 64, (2, 6), generator=g)
    mask = torch.ones_like(ids)
    mask[1, -2:] = 0  # one padded sequence, so attention-mask handling is exercised
    return BertModel(cfg).eval(), {"input_ids": ids, "attention_mask": mask}


def llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    g = _seeded()
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    ids = torch.randint(0, 64, (2, 6), generator=g)
    return LlamaForCausalLM(cfg).eval(), {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    g = _seeded()
    cfg = GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=32,
                     bos_token_id=0, eos_token_id=0)
    ids = torch.randint(0, 64, (2, 6), generator=g)
    return GPT2LMHeadModel(cfg).eval(), {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def vit():
    from transformers import ViTConfig, ViTForImageClassification

    g = _seeded()
    cfg = ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2,
                    num_attention_heads=4, intermediate_size=48, num_labels=5)
    return ViTForImageClassification(cfg).eval(), {"pixel_values": torch.randn(2, 3, 16, 16, generator=g)}


def unet():
    from diffusers import UNet2DConditionModel

    g = _seeded()
    model = UNet2DConditionModel(
        sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, attention_head_dim=4, norm_num_groups=8,
    )
    inputs = {"sample": torch.randn(2, 3, 8, 8, generator=g), "timestep": torch.tensor([10, 500]),
              "encoder_hidden_states": torch.randn(2, 4, 16, generator=g)}
    return model.eval(), inputs


def llava():
    """A real ``LlavaForConditionalGeneration`` at the size of transformers' own tiny LLaVA test
    (8-px images, patch 2, hidden 32): ViT vision tower, 2-layer GELU projector, Llama LM.
    Token 63 is the image placeholder; the prompt holds its 16 copies (one per patch)."""
    from transformers import LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, ViTConfig

    g = _seeded()
    vision = ViTConfig(image_size=8, patch_size=2, num_channels=3, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=4, intermediate_size=48)
    text = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    cfg = LlavaConfig(vision_config=vision, text_config=text, image_token_index=63, image_seq_length=16,
                      vision_feature_layer=-2, projector_hidden_act="gelu")
    ids = torch.cat([torch.randint(0, 63, (2, 2), generator=g), torch.full((2, 16), 63),
                     torch.randint(0, 63, (2, 4), generator=g)], dim=1)  # (2, 22): text, image, text
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
              "pixel_values": torch.randn(2, 3, 8, 8, generator=g)}
    return LlavaForConditionalGeneration(cfg).eval(), inputs


def qwen2_vl():
    """A real ``Qwen2VLForConditionalGeneration`` (random init, tiny): its aligner (``merger``) sits
    *inside* the vision tower (``model.visual``). Returned without inputs (only its modules are used)."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    _seeded()
    cfg = Qwen2VLConfig(
        text_config=dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, bos_token_id=0, eos_token_id=1,
                         rope_scaling={"type": "mrope", "mrope_section": [2, 1, 1]}),
        vision_config=dict(depth=2, embed_dim=32, hidden_size=32, num_heads=4, mlp_ratio=2, patch_size=2,
                           spatial_merge_size=1, temporal_patch_size=2, in_chans=3))
    return Qwen2VLForConditionalGeneration(cfg).eval(), {}


# multimodal models: not in MODELS (the conformance table), used by tests/test_multimodal.py
MULTIMODAL = {"llava": llava, "qwen2_vl": qwen2_vl}

MODELS = {"mlp": mlp, "cnn": cnn, "bert": bert, "llama": llama, "gpt2": gpt2, "vit": vit, "unet": unet}
