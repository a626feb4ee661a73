#!/usr/bin/python3
"""Generate test/fixtures/vit/: tiny random ViTs exported to ONNX + PyTorch references.

Run with Debian's interpreter (torch 1.13, onnx 1.12):

    /usr/bin/python3 scripts/gen-vit-fixtures.py [--out DIR]

Four small RANDOM-INITIALISED ViTs (width 64, 4 blocks, 4 heads, MLP 256) are
written with the module/attribute names of the real implementations, so the
exported ONNX graphs carry the same node names as real exports:

* clip_openclip  open_clip VisionTransformer, exported with torch.onnx.export
                 (opset 14, MultiheadAttention batch_first=False, QuickGELU)
* clip_hf        Hugging Face CLIPVisionModelWithProjection as `optimum-cli
                 export onnx` lays it out (opset 17, QuickGELU)
* dinov2_hub     DINOv2 torch.hub DinoVisionTransformer (patch 14, layer scale,
                 exact GELU, LayerNorm eps 1e-6, opset 17)
* vit_hf         Hugging Face ViTModel nested under an attribute `vit` (opset 14,
                 LayerNorm decomposed into ReduceMean/Sub/Pow/Sqrt/Div/Mul/Add)

For every model and case it stores the PyTorch reference patch tokens of blocks
1 and 3 and the image embedding (see test/fixtures/vit/README.md for the
layout). At non-native sizes the reference model has its positional embedding
resized the way MuSc / open_clip does it (bicubic, align_corners=False, CLS row
kept). bicubic.json holds independent references for that resize alone.

Everything is seeded and float32; rerunning the script rewrites the same bytes.
"""
import os
import subprocess
import sys


def _ensure_deps():
    try:
        import torch  # noqa: F401
        import onnx  # noqa: F401
    except ImportError as exc:  # pragma: no cover - environment bootstrap
        if os.environ.get("GEN_VIT_FIXTURES_REEXEC"):
            sys.exit(f"still cannot import torch/onnx after apt-get install: {exc}")
        print(f"[gen-vit-fixtures] {exc}; installing Debian's python3-torch python3-onnx "
              "python3-torchvision with apt-get (needs root) ...", file=sys.stderr, flush=True)
        cmd = ["apt-get", "install", "-y", "python3-torch", "python3-onnx", "python3-torchvision"]
        if os.geteuid() != 0:
            cmd = ["sudo"] + cmd
        subprocess.run(cmd, check=True)
        env = dict(os.environ, GEN_VIT_FIXTURES_REEXEC="1")
        os.execve("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv, env)


_ensure_deps()

import argparse  # noqa: E402
import copy  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import warnings  # noqa: E402
from collections import OrderedDict  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(ROOT, "test", "fixtures", "vit")

WIDTH, DEPTH, HEADS, MLP = 64, 4, 4, 256
NATIVE = 224
BLOCKS = [1, 3]
BATCH = 2
NON_NATIVE = 320
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_FORMULA = (
    "batch B=2; for b in 0..1 an S x S 8-bit RGB image "
    "v[b][y][x][c] = (x*7 + y*13 + c*50 + b*91 + ((x*y) % 17)*5) % 256 "
    "(integers; y row, x column, c channel 0=R); NCHW float32 "
    "t = fround(fround(fround(v/255) - fround(mean[c])) / fround(std[c])) "
    "(every step rounded to float32)"
)

warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
warnings.filterwarnings("ignore", category=UserWarning)


# ---------------------------------------------------------------------------
# shared pieces


class Act(nn.Module):
    """QuickGELU (OpenAI CLIP) or exact erf GELU; `kind` is switched for references."""

    def __init__(self, kind):
        super().__init__()
        self.kind = kind

    def forward(self, x):
        if self.kind == "quick":
            return x * torch.sigmoid(1.702 * x)
        return F.gelu(x)


def set_act(model, kind):
    for m in model.modules():
        if isinstance(m, Act):
            m.kind = kind


def resize_grid(pos, g0, g1):
    """pos [1 + g0*g0, C] -> [1 + g1*g1, C] as MuSc / open_clip resize_pos_embed."""
    cls, grid = pos[:1], pos[1:]
    c = pos.shape[-1]
    img = grid.reshape(1, g0, g0, c).permute(0, 3, 1, 2)
    img = F.interpolate(img, size=(g1, g1), mode="bicubic", align_corners=False)
    img = img.permute(0, 2, 3, 1).reshape(g1 * g1, c)
    return torch.cat([cls, img], dim=0)


# ---------------------------------------------------------------------------
# 1. open_clip VisionTransformer


class ResidualAttentionBlock(nn.Module):
    def __init__(self, d, heads, mlp, act):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d, eps=1e-5)
        self.attn = nn.MultiheadAttention(d, heads)  # batch_first=False, as open_clip
        self.ln_2 = nn.LayerNorm(d, eps=1e-5)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(d, mlp)),
            ("gelu", Act(act)),
            ("c_proj", nn.Linear(mlp, d)),
        ]))

    def attention(self, x):
        return self.attn(x, x, x, need_weights=False, attn_mask=None)[0]

    def forward(self, x):
        x = x + self.attention(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class Transformer(nn.Module):
    def __init__(self, d, layers, heads, mlp, act):
        super().__init__()
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(d, heads, mlp, act) for _ in range(layers)])
        self.taps = []

    def forward(self, x):
        self.taps = []  # block outputs (LND), read by the reference code, not part of the export
        for r in self.resblocks:
            x = r(x)
            self.taps.append(x)
        return x


class OpenClipVisionTransformer(nn.Module):
    def __init__(self, patch=16, out_dim=32):
        super().__init__()
        self.patch = patch
        g = NATIVE // patch
        self.conv1 = nn.Conv2d(3, WIDTH, kernel_size=patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(WIDTH))
        self.positional_embedding = nn.Parameter(torch.zeros(1 + g * g, WIDTH))
        self.ln_pre = nn.LayerNorm(WIDTH, eps=1e-5)
        self.transformer = Transformer(WIDTH, DEPTH, HEADS, MLP, "quick")
        self.ln_post = nn.LayerNorm(WIDTH, eps=1e-5)
        self.proj = nn.Parameter(torch.zeros(WIDTH, out_dim))

    def set_grid(self, g0, g1):
        self.positional_embedding = nn.Parameter(resize_grid(self.positional_embedding.data, g0, g1))

    def forward(self, x):
        x = self.conv1(x)
        x = x.reshape(x.shape[0], x.shape[1], -1)
        x = x.permute(0, 2, 1)
        x = torch.cat([self.class_embedding.to(x.dtype)
                       + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype, device=x.device), x], dim=1)
        x = x + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x)
        x = x.permute(1, 0, 2)  # NLD -> LND
        x = self.transformer(x)
        x = x.permute(1, 0, 2)  # LND -> NLD
        pooled = self.ln_post(x[:, 0])
        pooled = pooled @ self.proj
        return pooled

    def forward_all(self, x):
        pooled = self(x)
        return [t.permute(1, 0, 2) for t in self.transformer.taps], pooled


# ---------------------------------------------------------------------------
# 2. Hugging Face CLIPVisionModelWithProjection


class CLIPVisionEmbeddings(nn.Module):
    def __init__(self, patch):
        super().__init__()
        g = NATIVE // patch
        self.num_positions = 1 + g * g
        self.class_embedding = nn.Parameter(torch.zeros(WIDTH))
        self.patch_embedding = nn.Conv2d(3, WIDTH, kernel_size=patch, stride=patch, bias=False)
        self.position_embedding = nn.Embedding(self.num_positions, WIDTH)
        self.register_buffer("position_ids", torch.arange(self.num_positions).expand((1, -1)), persistent=False)

    def forward(self, pixel_values):
        batch_size = pixel_values.shape[0]
        patch_embeds = self.patch_embedding(pixel_values)
        patch_embeds = patch_embeds.flatten(2).transpose(1, 2)
        class_embeds = self.class_embedding.expand(batch_size, 1, -1)
        embeddings = torch.cat([class_embeds, patch_embeds], dim=1)
        embeddings = embeddings + self.position_embedding(self.position_ids)
        return embeddings


class CLIPAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed_dim = WIDTH
        self.num_heads = HEADS
        self.head_dim = WIDTH // HEADS
        self.scale = self.head_dim ** -0.5
        self.k_proj = nn.Linear(WIDTH, WIDTH)
        self.v_proj = nn.Linear(WIDTH, WIDTH)
        self.q_proj = nn.Linear(WIDTH, WIDTH)
        self.out_proj = nn.Linear(WIDTH, WIDTH)

    def _shape(self, tensor, seq_len, bsz):
        return tensor.view(bsz, seq_len, self.num_heads, self.head_dim).transpose(1, 2).contiguous()

    def forward(self, hidden_states):
        bsz, tgt_len, embed_dim = hidden_states.size()
        query_states = self.q_proj(hidden_states) * self.scale
        key_states = self._shape(self.k_proj(hidden_states), -1, bsz)
        value_states = self._shape(self.v_proj(hidden_states), -1, bsz)
        proj_shape = (bsz * self.num_heads, -1, self.head_dim)
        query_states = self._shape(query_states, tgt_len, bsz).view(*proj_shape)
        key_states = key_states.view(*proj_shape)
        value_states = value_states.view(*proj_shape)
        attn_weights = torch.bmm(query_states, key_states.transpose(1, 2))
        attn_weights = nn.functional.softmax(attn_weights, dim=-1)
        attn_output = torch.bmm(attn_weights, value_states)
        attn_output = attn_output.view(bsz, self.num_heads, tgt_len, self.head_dim)
        attn_output = attn_output.transpose(1, 2)
        attn_output = attn_output.reshape(bsz, tgt_len, embed_dim)
        return self.out_proj(attn_output)


class CLIPMLP(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.activation_fn = Act(act)
        self.fc1 = nn.Linear(WIDTH, MLP)
        self.fc2 = nn.Linear(MLP, WIDTH)

    def forward(self, x):
        return self.fc2(self.activation_fn(self.fc1(x)))


class CLIPEncoderLayer(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.self_attn = CLIPAttention()
        self.layer_norm1 = nn.LayerNorm(WIDTH, eps=1e-5)
        self.mlp = CLIPMLP(act)
        self.layer_norm2 = nn.LayerNorm(WIDTH, eps=1e-5)

    def forward(self, hidden_states):
        residual = hidden_states
        hidden_states = self.layer_norm1(hidden_states)
        hidden_states = self.self_attn(hidden_states)
        hidden_states = residual + hidden_states
        residual = hidden_states
        hidden_states = self.layer_norm2(hidden_states)
        hidden_states = self.mlp(hidden_states)
        hidden_states = residual + hidden_states
        return hidden_states


class CLIPEncoder(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.layers = nn.ModuleList([CLIPEncoderLayer(act) for _ in range(DEPTH)])
        self.taps = []

    def forward(self, inputs_embeds):
        self.taps = []  # block outputs, read by the reference code
        hidden_states = inputs_embeds
        for encoder_layer in self.layers:
            hidden_states = encoder_layer(hidden_states)
            self.taps.append(hidden_states)
        return hidden_states


class CLIPVisionTransformer(nn.Module):
    def __init__(self, patch):
        super().__init__()
        self.embeddings = CLIPVisionEmbeddings(patch)
        self.pre_layrnorm = nn.LayerNorm(WIDTH, eps=1e-5)
        self.encoder = CLIPEncoder("quick")
        self.post_layernorm = nn.LayerNorm(WIDTH, eps=1e-5)

    def forward(self, pixel_values):
        hidden_states = self.embeddings(pixel_values)
        hidden_states = self.pre_layrnorm(hidden_states)
        last_hidden_state = self.encoder(inputs_embeds=hidden_states)
        pooled_output = last_hidden_state[:, 0, :]
        pooled_output = self.post_layernorm(pooled_output)
        return last_hidden_state, pooled_output


class CLIPVisionModelWithProjection(nn.Module):
    def __init__(self, patch=16, out_dim=32):
        super().__init__()
        self.patch = patch
        self.vision_model = CLIPVisionTransformer(patch)
        self.visual_projection = nn.Linear(WIDTH, out_dim, bias=False)

    def set_grid(self, g0, g1):
        emb = self.vision_model.embeddings
        new = resize_grid(emb.position_embedding.weight.data, g0, g1)
        emb.num_positions = new.shape[0]
        emb.position_embedding = nn.Embedding(new.shape[0], WIDTH)
        emb.position_embedding.weight.data.copy_(new)
        emb.register_buffer("position_ids", torch.arange(new.shape[0]).expand((1, -1)), persistent=False)

    def forward(self, pixel_values):
        pooled_output = self.vision_model(pixel_values)[1]
        return self.visual_projection(pooled_output)

    def forward_all(self, pixel_values):
        image_embeds = self(pixel_values)
        return list(self.vision_model.encoder.taps), image_embeds


# ---------------------------------------------------------------------------
# 3. DINOv2 torch.hub DinoVisionTransformer


class PatchEmbed(nn.Module):
    def __init__(self, patch):
        super().__init__()
        self.proj = nn.Conv2d(3, WIDTH, kernel_size=patch, stride=patch)
        self.norm = nn.Identity()

    def forward(self, x):
        x = self.proj(x)
        x = x.flatten(2).transpose(1, 2)
        return self.norm(x)


class DinoAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.num_heads = HEADS
        self.scale = (WIDTH // HEADS) ** -0.5
        self.qkv = nn.Linear(WIDTH, WIDTH * 3)
        self.attn_drop = nn.Dropout(0.0)
        self.proj = nn.Linear(WIDTH, WIDTH)
        self.proj_drop = nn.Dropout(0.0)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = q @ k.transpose(-2, -1)
        attn = attn.softmax(dim=-1)
        attn = self.attn_drop(attn)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        x = self.proj(x)
        return self.proj_drop(x)


class LayerScale(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


class DinoMlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(WIDTH, MLP)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(MLP, WIDTH)
        self.drop = nn.Dropout(0.0)

    def forward(self, x):
        x = self.drop(self.act(self.fc1(x)))
        return self.drop(self.fc2(x))


class NestedTensorBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1 = nn.LayerNorm(WIDTH, eps=1e-6)
        self.attn = DinoAttention()
        self.ls1 = LayerScale(WIDTH)
        self.drop_path1 = nn.Identity()
        self.norm2 = nn.LayerNorm(WIDTH, eps=1e-6)
        self.mlp = DinoMlp()
        self.ls2 = LayerScale(WIDTH)
        self.drop_path2 = nn.Identity()

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        x = x + self.ls2(self.mlp(self.norm2(x)))
        return x


class DinoVisionTransformer(nn.Module):
    def __init__(self, patch=14):
        super().__init__()
        self.patch = patch
        g = NATIVE // patch
        self.patch_embed = PatchEmbed(patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, WIDTH))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + g * g, WIDTH))
        self.blocks = nn.ModuleList([NestedTensorBlock() for _ in range(DEPTH)])
        self.norm = nn.LayerNorm(WIDTH, eps=1e-6)
        self.head = nn.Identity()

    def set_grid(self, g0, g1):
        self.pos_embed = nn.Parameter(resize_grid(self.pos_embed.data[0], g0, g1)[None])

    def forward_all(self, x):
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        # hub interpolate_pos_encoding(): returns pos_embed as is when npatch == N and w == h,
        # so at the native size nothing is interpolated in the traced graph.
        x = x + self.pos_embed
        taps = []
        for blk in self.blocks:
            x = blk(x)
            taps.append(x)
        x_norm = self.norm(x)
        return taps, x_norm[:, 0]

    def forward(self, x):
        return self.head(self.forward_all(x)[1])


# ---------------------------------------------------------------------------
# 4. Hugging Face ViTModel under an attribute `vit`


class ViTPatchEmbeddings(nn.Module):
    def __init__(self, patch):
        super().__init__()
        self.projection = nn.Conv2d(3, WIDTH, kernel_size=patch, stride=patch)

    def forward(self, pixel_values):
        return self.projection(pixel_values).flatten(2).transpose(1, 2)


class ViTEmbeddings(nn.Module):
    def __init__(self, patch):
        super().__init__()
        g = NATIVE // patch
        self.cls_token = nn.Parameter(torch.zeros(1, 1, WIDTH))
        self.patch_embeddings = ViTPatchEmbeddings(patch)
        self.position_embeddings = nn.Parameter(torch.zeros(1, 1 + g * g, WIDTH))
        self.dropout = nn.Dropout(0.0)

    def forward(self, pixel_values):
        batch_size = pixel_values.shape[0]
        embeddings = self.patch_embeddings(pixel_values)
        cls_tokens = self.cls_token.expand(batch_size, -1, -1)
        embeddings = torch.cat((cls_tokens, embeddings), dim=1)
        embeddings = embeddings + self.position_embeddings
        return self.dropout(embeddings)


class ViTSelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.num_attention_heads = HEADS
        self.attention_head_size = WIDTH // HEADS
        self.all_head_size = WIDTH
        self.query = nn.Linear(WIDTH, WIDTH)
        self.key = nn.Linear(WIDTH, WIDTH)
        self.value = nn.Linear(WIDTH, WIDTH)
        self.dropout = nn.Dropout(0.0)

    def transpose_for_scores(self, x):
        new_x_shape = x.size()[:-1] + (self.num_attention_heads, self.attention_head_size)
        x = x.view(new_x_shape)
        return x.permute(0, 2, 1, 3)

    def forward(self, hidden_states):
        mixed_query_layer = self.query(hidden_states)
        key_layer = self.transpose_for_scores(self.key(hidden_states))
        value_layer = self.transpose_for_scores(self.value(hidden_states))
        query_layer = self.transpose_for_scores(mixed_query_layer)
        attention_scores = torch.matmul(query_layer, key_layer.transpose(-1, -2))
        attention_scores = attention_scores / math.sqrt(self.attention_head_size)
        attention_probs = nn.functional.softmax(attention_scores, dim=-1)
        attention_probs = self.dropout(attention_probs)
        context_layer = torch.matmul(attention_probs, value_layer)
        context_layer = context_layer.permute(0, 2, 1, 3).contiguous()
        new_context_layer_shape = context_layer.size()[:-2] + (self.all_head_size,)
        return context_layer.view(new_context_layer_shape)


class ViTSelfOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(WIDTH, WIDTH)
        self.dropout = nn.Dropout(0.0)

    def forward(self, hidden_states):
        return self.dropout(self.dense(hidden_states))


class ViTAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = ViTSelfAttention()
        self.output = ViTSelfOutput()

    def forward(self, hidden_states):
        return self.output(self.attention(hidden_states))


class ViTIntermediate(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(WIDTH, MLP)
        self.intermediate_act_fn = nn.GELU()

    def forward(self, hidden_states):
        return self.intermediate_act_fn(self.dense(hidden_states))


class ViTOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(MLP, WIDTH)
        self.dropout = nn.Dropout(0.0)

    def forward(self, hidden_states, input_tensor):
        hidden_states = self.dropout(self.dense(hidden_states))
        return hidden_states + input_tensor


class ViTLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = ViTAttention()
        self.intermediate = ViTIntermediate()
        self.output = ViTOutput()
        self.layernorm_before = nn.LayerNorm(WIDTH, eps=1e-12)
        self.layernorm_after = nn.LayerNorm(WIDTH, eps=1e-12)

    def forward(self, hidden_states):
        attention_output = self.attention(self.layernorm_before(hidden_states))
        hidden_states = attention_output + hidden_states
        layer_output = self.layernorm_after(hidden_states)
        layer_output = self.intermediate(layer_output)
        return self.output(layer_output, hidden_states)


class ViTEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.ModuleList([ViTLayer() for _ in range(DEPTH)])
        self.taps = []

    def forward(self, hidden_states):
        self.taps = []  # block outputs, read by the reference code
        for layer_module in self.layer:
            hidden_states = layer_module(hidden_states)
            self.taps.append(hidden_states)
        return hidden_states


class ViTModel(nn.Module):
    def __init__(self, patch):
        super().__init__()
        self.embeddings = ViTEmbeddings(patch)
        self.encoder = ViTEncoder()
        self.layernorm = nn.LayerNorm(WIDTH, eps=1e-12)

    def forward(self, pixel_values):
        embedding_output = self.embeddings(pixel_values)
        sequence_output = self.encoder(embedding_output)
        return self.layernorm(sequence_output)


class ViTWrapper(nn.Module):
    def __init__(self, patch=16):
        super().__init__()
        self.patch = patch
        self.vit = ViTModel(patch)

    def set_grid(self, g0, g1):
        emb = self.vit.embeddings
        emb.position_embeddings = nn.Parameter(resize_grid(emb.position_embeddings.data[0], g0, g1)[None])

    def forward(self, pixel_values):
        return self.vit(pixel_values)

    def forward_all(self, pixel_values):
        last_hidden_state = self(pixel_values)
        return list(self.vit.encoder.taps), last_hidden_state


# ---------------------------------------------------------------------------


MODELS = [
    dict(name="clip_openclip", family="clip", layout="open_clip torch.onnx.export", cls=OpenClipVisionTransformer,
         patch=16, opset=14, ln_eps=1e-5, mean=CLIP_MEAN, std=CLIP_STD, emb_dim=32, activation="quick_gelu",
         input="image", output="image_features", seed=1001),
    dict(name="clip_hf", family="clip", layout="HF CLIPVisionModelWithProjection (optimum)",
         cls=CLIPVisionModelWithProjection, patch=16, opset=17, ln_eps=1e-5, mean=CLIP_MEAN, std=CLIP_STD,
         emb_dim=32, activation="quick_gelu", input="pixel_values", output="image_embeds", seed=1002),
    dict(name="dinov2_hub", family="dinov2", layout="DINOv2 torch.hub", cls=DinoVisionTransformer, patch=14,
         opset=17, ln_eps=1e-6, mean=IMAGENET_MEAN, std=IMAGENET_STD, emb_dim=64, activation="gelu",
         input="input", output="x_norm_clstoken", seed=1003),
    dict(name="vit_hf", family="vit", layout="HF ViTModel (optimum)", cls=ViTWrapper, patch=16, opset=14,
         ln_eps=1e-12, mean=IMAGENET_MEAN, std=IMAGENET_STD, emb_dim=64, activation="gelu",
         input="pixel_values", output="last_hidden_state", seed=1004),
]

EMBED_NAMES = {"class_embedding", "positional_embedding", "position_embedding.weight", "cls_token", "pos_embed",
               "position_embeddings"}


def reinit(model):
    """Non-trivial random init so blocks are far from identity and the pos-embedding matters."""
    ln_weight = set()
    ln_bias = set()
    conv_weight = set()
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            ln_weight.add(id(m.weight))
            ln_bias.add(id(m.bias))
        if isinstance(m, nn.Conv2d):
            conv_weight.add(id(m.weight))
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.split(".")[-1]
            tail2 = ".".join(name.split(".")[-2:])
            if id(p) in ln_weight:
                p.normal_(0.0, 0.1).add_(1.0)
            elif id(p) in ln_bias or leaf.endswith("bias"):
                p.normal_(0.0, 0.05)
            elif leaf in EMBED_NAMES or tail2 in EMBED_NAMES:
                p.normal_(0.0, 0.5)
            elif leaf == "gamma":
                p.uniform_(0.5, 1.5)
            elif id(p) in conv_weight:
                # fan-in 3*p*p (588 or 768): std 0.03 keeps patch embeddings O(1), comparable to the
                # positional embedding (std 0.5), so resizing the latter visibly changes the output
                p.normal_(0.0, 0.03)
            else:
                p.normal_(0.0, 0.1)


def make_images(size, mean, std):
    """The fixture input, float32 NCHW; every arithmetic step rounded to float32 (IEEE)."""
    y = np.arange(size, dtype=np.int64)[:, None, None]
    x = np.arange(size, dtype=np.int64)[None, :, None]
    c = np.arange(3, dtype=np.int64)[None, None, :]
    imgs = []
    for b in range(BATCH):
        v = (x * 7 + y * 13 + c * 50 + b * 91 + ((x * y) % 17) * 5) % 256  # [y, x, c]
        imgs.append(v)
    v = np.stack(imgs).transpose(0, 3, 1, 2)  # [B, 3, S, S]
    a = (v.astype(np.float64) / 255.0).astype(np.float32)  # == correctly rounded float32 division
    m = np.asarray(mean, dtype=np.float32)[None, :, None, None]
    s = np.asarray(std, dtype=np.float32)[None, :, None, None]
    t = (a - m) / s  # float32 ops, each correctly rounded
    assert t.dtype == np.float32
    return torch.from_numpy(np.ascontiguousarray(t))


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def reference(model, spec, size, gelu):
    """Returns (list of selected-block patch tokens [B, g*g, C], embedding [B, D]) as float32 arrays."""
    patch = spec["patch"]
    g0 = NATIVE // patch
    g1 = size // patch
    m = copy.deepcopy(model)
    if g1 != g0:
        m.set_grid(g0, g1)
    set_act(m, gelu)
    m.eval()
    x = make_images(size, spec["mean"], spec["std"])
    with torch.no_grad():
        taps, out = m.forward_all(x)
        tokens = []
        for k in BLOCKS:
            t = taps[k]
            if spec["family"] != "clip":
                t = m.vit.layernorm(t) if spec["family"] == "vit" else m.norm(t)
            tokens.append(t[:, 1:, :])
        if spec["family"] == "clip":
            emb = out / out.norm(dim=-1, keepdim=True)
        elif spec["family"] == "vit":
            emb = out[:, 0, :]
        else:
            emb = out
    for t in tokens:
        assert tuple(t.shape) == (BATCH, g1 * g1, WIDTH), t.shape
    assert tuple(emb.shape) == (BATCH, spec["emb_dim"]), emb.shape
    return [t.numpy().astype("<f4") for t in tokens], emb.numpy().astype("<f4"), m, x


def export(model, spec, path):
    x = make_images(NATIVE, spec["mean"], spec["std"])
    inp, outp = spec["input"], spec["output"]
    dyn = {inp: {0: "batch", 2: "height", 3: "width"}, outp: {0: "batch"}}
    if spec["family"] == "vit":
        dyn[outp] = {0: "batch", 1: "tokens"}
    with torch.no_grad():
        torch.onnx.export(model, (x,), path, opset_version=spec["opset"], input_names=[inp], output_names=[outp],
                          dynamic_axes=dyn, do_constant_folding=True, export_params=True)
    onnx.checker.check_model(path)
    return onnx.load(path)


def block_output_names(graph, spec):
    """Output tensor of the last Add node inside each encoder block scope, in graph order."""
    scope = {
        "clip_openclip": "/transformer/resblocks.{}/",
        "clip_hf": "/vision_model/encoder/layers.{}/",
        "dinov2_hub": "/blocks.{}/",
        "vit_hf": "/vit/encoder/layer.{}/",
    }[spec["name"]]
    names = []
    for k in range(DEPTH):
        adds = [n for n in graph.node if n.op_type == "Add" and n.name.startswith(scope.format(k))]
        names.append(adds[-1].output[0])
    return names


def final_norm_nodes(graph, spec):
    prefix = {
        "clip_openclip": "/ln_post/",
        "clip_hf": "/vision_model/post_layernorm/",
        "dinov2_hub": "/norm/",
        "vit_hf": "/vit/layernorm/",
    }[spec["name"]]
    return [f"{n.name} ({n.op_type})" for n in graph.node if n.name.startswith(prefix)]


def gen_bicubic():
    torch.manual_seed(77)
    cases = []
    for c, h, w, h1, w1 in [(2, 5, 5, 8, 8), (2, 4, 4, 7, 7), (2, 14, 14, 20, 20), (1, 8, 8, 5, 5),
                            (1, 24, 24, 37, 37)]:
        # inputs are k/64 with |k| <= 200: exact in float32, float64 and in 8 significant digits
        x = torch.randint(-200, 201, (c, h, w), dtype=torch.int64).to(torch.float64) / 64.0
        y = F.interpolate(x[None], size=(h1, w1), mode="bicubic", align_corners=False)[0]
        cases.append(dict(c=c, h=h, w=w, h1=h1, w1=w1,
                          input=[float(f"{v:.8g}") for v in x.flatten().tolist()],
                          output=[float(f"{v:.8g}") for v in y.flatten().tolist()]))
    return {
        "generator": "scripts/gen-vit-fixtures.py",
        "op": "torch.nn.functional.interpolate(x[None], size=(h1, w1), mode='bicubic', align_corners=False)[0] "
              "(cubic coefficient A=-0.75, border-clamped taps, no antialias), computed in float64; "
              "input/output row-major [c, h, w] / [c, h1, w1], rounded to 8 significant digits",
        "torch": torch.__version__,
        "cases": cases,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="output folder (default test/fixtures/vit)")
    args = ap.parse_args()
    out = args.out
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)  # deterministic reduction order

    index = {
        "generator": "scripts/gen-vit-fixtures.py",
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "input": INPUT_FORMULA,
        "models": [],
    }
    written = []
    report = []
    for spec in MODELS:
        name = spec["name"]
        torch.manual_seed(spec["seed"])
        model = spec["cls"]()
        reinit(model)
        model.eval()
        onnx_path = os.path.join(out, f"{name}.onnx")
        proto = export(model, spec, onnx_path)
        written.append(onnx_path)
        g0 = NATIVE // spec["patch"]
        cases_spec = [(NATIVE, "quick" if spec["family"] == "clip" else "erf", "")]
        if spec["family"] == "clip":
            cases_spec += [(NON_NATIVE, "erf", ""), (NON_NATIVE, "quick", "-quick")]
        else:
            cases_spec += [(NON_NATIVE, "erf", "")]
        cases = []
        for size, gelu, suffix in cases_spec:
            tokens, emb, _, _ = reference(model, spec, size, gelu)
            fname = f"{name}.{size}{suffix}.bin"
            with open(os.path.join(out, fname), "wb") as f:
                for t in tokens:
                    f.write(t.tobytes())
                f.write(emb.tobytes())
            written.append(os.path.join(out, fname))
            cases.append({"size": size, "grid": size // spec["patch"], "gelu": gelu, "file": fname})
            report.append(f"  {fname}: max|tokens| " + ", ".join(f"{np.abs(t).max():.4f}" for t in tokens)
                          + f"; max|embedding| {np.abs(emb).max():.4f}")
        blocks = block_output_names(proto.graph, spec)
        print(f"{name}: opset {spec['opset']}, {len(proto.graph.node)} nodes, block outputs "
              + ", ".join(f"{k}: {blocks[k]}" for k in range(DEPTH)))
        print(f"{name}: final norm nodes: " + ", ".join(final_norm_nodes(proto.graph, spec)))
        index["models"].append({
            "name": name,
            "family": spec["family"],
            "layout": spec["layout"],
            "model": f"{name}.onnx",
            "patch": spec["patch"],
            "width": WIDTH,
            "depth": DEPTH,
            "nativeSize": NATIVE,
            "nativeGrid": g0,
            "opset": spec["opset"],
            "lnEps": spec["ln_eps"],
            "mean": list(spec["mean"]),
            "std": list(spec["std"]),
            "blocks": BLOCKS,
            "batch": BATCH,
            "embeddingDim": spec["emb_dim"],
            "activation": spec["activation"],
            "inputName": spec["input"],
            "outputName": spec["output"],
            "blockOutputTensors": [blocks[k] for k in BLOCKS],
            "cases": cases,
        })
    print("reference outputs:")
    print("\n".join(report))

    index_path = os.path.join(out, "index.json")
    with open(index_path, "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")
    written.append(index_path)
    bic_path = os.path.join(out, "bicubic.json")
    with open(bic_path, "w") as f:
        json.dump(gen_bicubic(), f, separators=(",", ":"))
        f.write("\n")
    written.append(bic_path)

    total = 0
    for p in written:
        size = os.path.getsize(p)
        total += size
        print(f"{sha256(p)}  {size:9d}  {os.path.relpath(p, ROOT) if p.startswith(ROOT) else p}")
    print(f"gen-vit-fixtures: torch {torch.__version__}, onnx {onnx.__version__}: {len(MODELS)} models, "
          f"{len(written)} files, {total / 1e6:.2f} MB in {os.path.relpath(out, ROOT) if out.startswith(ROOT) else out}")


if __name__ == "__main__":
    main()
