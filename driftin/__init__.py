"""driftin: one-step image generation by drifting, side by side with diffusion."""
from .config import PRESETS, UNetConfig, preset
from .generate import generate
from .hub import load_pretrained, save_pretrained
from .unet import UNet

__all__ = ["PRESETS", "UNetConfig", "preset", "UNet", "generate", "load_pretrained", "save_pretrained"]
__version__ = "0.1.0"
