"""Tiny pretrained backbones, built deterministically on the CPU and saved in Hugging Face format.

    import swiftlite.zoo as zoo
    vit = zoo.load("vit-tiny")                      # transformers ViTForImageClassification
    lm, tokenizer = zoo.load("llama-tiny")          # LlamaForCausalLM + PreTrainedTokenizerFast
    pipe = zoo.load("unet-tiny")                    # TinyDiffusionPipeline(unet, scheduler, text_encoder, tokenizer)
    sd = zoo.load("sd-tiny")                        # diffusers StableDiffusionPipeline (VAE, CLIP, SD-1.5-layout U-Net)
    zoo.path("vit-tiny")                            # directory; ViTForImageClassification.from_pretrained(it)

``zoo.path`` returns the build shipped with the package when its recipe hash matches, else the
user-cache build (building it on first use). With ``SWIFTLITE_QUICK=1`` the seconds-long quick
recipes are used instead (what tests and quick notebook runs use). Command line:
``swiftlite zoo build [NAME] [--quick] [--ship]``, ``swiftlite zoo list``.
"""

from ..settings import quick_mode
from .hub import SHIPPED, build, cache_path, figures, get_recipe, load, path, read_stamp, recipes
from .recipe import Recipe, register


def names() -> list[str]:
    """Names of every registered backbone."""
    return sorted(recipes())


__all__ = ["path", "load", "build", "figures", "names", "recipes", "get_recipe", "register", "Recipe",
           "quick_mode", "read_stamp", "cache_path", "SHIPPED"]
