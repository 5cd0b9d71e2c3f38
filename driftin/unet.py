"""The UNet: DDPM-style (Ho et al.) with AdaGN conditioning (Dhariwal & Nichol).

One network for both objectives: DDPM calls it as eps(x_t, t, y); drift calls it as
x = f(noise, t=0, y, alpha). Conditioning = time + optional class label + optional guidance scale,
summed into one embedding that scales and shifts every residual block's GroupNorm.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import UNetConfig


def sinusoidal(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=-1)


def norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, ch // 4), ch)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout)  # AdaGN: per-channel scale and shift
        self.norm2, self.drop, self.conv2 = norm(cout), nn.Dropout(dropout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    def __init__(self, ch: int, heads: int):
        super().__init__()
        self.heads, self.norm = heads, norm(ch)
        self.qkv, self.proj = nn.Conv2d(ch, 3 * ch, 1), nn.Conv2d(ch, ch, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)  # [B, heads, HW, c/heads]
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class Level(nn.Module):
    """Res blocks (+ attention) at one resolution; holds blocks in order."""

    def __init__(self, chans: list[tuple[int, int]], emb_dim, dropout, attn: bool, heads: int):
        super().__init__()
        self.res = nn.ModuleList(ResBlock(a, b, emb_dim, dropout) for a, b in chans)
        self.attn = nn.ModuleList(Attention(b, heads) if attn else nn.Identity() for _, b in chans)


class UNet(nn.Module):
    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = c = config
        ch, emb_dim = c.base_channels, 4 * c.base_channels
        self.time_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        # label K is the "no label" token used for classifier-free guidance
        self.label_emb = nn.Embedding(c.num_classes + 1, emb_dim) if c.num_classes else None
        self.alpha_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)) if c.guidance_input else None
        self.style_emb = None
        if c.style_tokens:
            self.style_emb = nn.Embedding(c.style_codebook, emb_dim)
            # a sum of style_tokens entries: std 1/sqrt(tokens) gives the sum the scale of one label embedding
            nn.init.normal_(self.style_emb.weight, std=c.style_tokens ** -0.5)
        self.stem = nn.Conv2d(c.in_channels, ch, 3, padding=1)

        widths = [ch * m for m in c.channel_mult]
        self.down, self.downsample, skips, cur, res = nn.ModuleList(), nn.ModuleList(), [ch], ch, c.image_size
        for i, w in enumerate(widths):
            chans = []
            for _ in range(c.num_res_blocks):
                chans.append((cur, w))
                cur = w
                skips.append(cur)
            self.down.append(Level(chans, emb_dim, c.dropout, res in c.attn_resolutions, c.num_heads))
            last = i == len(widths) - 1
            self.downsample.append(nn.Identity() if last else nn.Conv2d(cur, cur, 3, stride=2, padding=1))
            if not last:
                skips.append(cur)
                res //= 2
        self.mid1, self.mid_attn = ResBlock(cur, cur, emb_dim, c.dropout), Attention(cur, c.num_heads)
        self.mid2 = ResBlock(cur, cur, emb_dim, c.dropout)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, w in reversed(list(enumerate(widths))):
            chans = []
            for _ in range(c.num_res_blocks + 1):
                chans.append((cur + skips.pop(), w))
                cur = w
            self.up.append(Level(chans, emb_dim, c.dropout, res in c.attn_resolutions, c.num_heads))
            self.upsample.append(nn.Conv2d(cur, cur, 3, padding=1) if i > 0 else nn.Identity())
            if i > 0:
                res *= 2
        self.out_norm, self.out = norm(cur), nn.Conv2d(cur, c.in_channels, 3, padding=1)
        if c.zero_init_out:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def random_style(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """Style indices [n, style_tokens] uniform in [0, style_codebook) drawn from `generator` (on its device)."""
        c = self.config
        if not c.style_tokens:
            raise ValueError("this model has no style embeddings (style_tokens=0)")
        device = device if device is not None else (generator.device if generator is not None else self.stem.weight.device)
        return torch.randint(c.style_codebook, (n, c.style_tokens), generator=generator, device=device)

    def _style(self, style, batch: int, device) -> torch.Tensor:
        c = self.config
        if style is None:
            raise ValueError(f"this model uses random style embeddings (style_tokens={c.style_tokens}): pass "
                             f"style=model.random_style(n, generator) (a LongTensor [n, {c.style_tokens}] in "
                             f"[0, {c.style_codebook})) or style=<torch.Generator> to draw them")
        if isinstance(style, torch.Generator):
            style = self.random_style(batch, style)
        style = torch.as_tensor(style, device=device).long()
        if style.shape != (batch, c.style_tokens):
            raise ValueError(f"style must be [{batch}, {c.style_tokens}] indices, got {tuple(style.shape)}")
        return self.style_emb(style).sum(1)

    def embed(self, t, y, alpha, batch: int, device, style=None) -> torch.Tensor:
        c = self.config
        t = torch.zeros(batch, device=device) if t is None else torch.as_tensor(t, device=device).float().expand(batch)
        dtype = self.stem.weight.dtype  # a model cast to bf16/fp16 gets its embeddings in that dtype
        emb = self.time_mlp(sinusoidal(t, c.base_channels).to(dtype))
        if self.label_emb is not None:
            y = torch.full((batch,), c.num_classes, device=device) if y is None else torch.as_tensor(y, device=device).long().expand(batch)
            emb = emb + self.label_emb(y)
        if self.alpha_mlp is not None:
            alpha = torch.ones(batch, device=device) if alpha is None else torch.as_tensor(alpha, device=device).float().expand(batch)
            # alpha in [1, ~4]: spread it over the sinusoid's range like a timestep
            emb = emb + self.alpha_mlp(sinusoidal(alpha * 100.0, c.base_channels).to(dtype))
        if self.style_emb is not None:
            emb = emb + self._style(style, batch, device).to(emb.dtype)
        elif style is not None:
            raise ValueError("style given, but this model has no style embeddings (style_tokens=0)")
        return emb

    def forward(self, x: torch.Tensor, t=None, y=None, alpha=None, style=None) -> torch.Tensor:
        """x [B,C,H,W]; t: timesteps [B] or scalar (None = 0, the drift generator);
        y: labels [B] (None or K = unconditional); alpha: guidance scale [B] (drift models only);
        style: models with style_tokens only (required there): indices [B, style_tokens] or a
        torch.Generator to draw them from (random_style)."""
        emb = self.embed(t, y, alpha, x.shape[0], x.device, style)
        h = self.stem(x)
        hs = [h]
        for level, down in zip(self.down, self.downsample):
            for res, attn in zip(level.res, level.attn):
                h = attn(res(h, emb))
                hs.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)
                hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for level, up in zip(self.up, self.upsample):
            for res, attn in zip(level.res, level.attn):
                h = attn(res(torch.cat([h, hs.pop()], dim=1), emb))
            if not isinstance(up, nn.Identity):
                h = up(F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.out(F.silu(self.out_norm(h)))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
