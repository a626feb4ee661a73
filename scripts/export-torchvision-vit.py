#!/usr/bin/python3
"""Export torchvision's vit_b_16 with random weights to ONNX, for benchmarks.

    /usr/bin/python3 scripts/export-torchvision-vit.py [--out /tmp/musc-vit/vit_b_16_random.onnx]

The model is vit_b_16(weights=None) after torch.manual_seed(0): full size, 86M
parameters, about 330 MB of float32. It is exported with opset 14; the input is
`image` [batch, 3, height, width] with dynamic batch/height/width, and the output
is `logits` (all zeros: torchvision zero-initialises `heads.head`). The positional embedding (`encoder.pos_embedding`, [1, 197, 768])
stays the 224-px table; the TypeScript side re-bakes it for other sizes.

The script writes `vit_b_16_random.ref.json` next to the model: PyTorch values
the TS side can spot-check. It uses the 224 px image of test/fixtures/vit
(batch 1, ImageNet mean/std, see scripts/gen-vit-fixtures.py) and stores the
first 8 values of (a) the CLS token after the final `encoder.ln` and (b) the
first patch token (sequence index 1) in the output of encoder block 11.
"""
import os
import subprocess
import sys


def _ensure_deps():
    try:
        import torch  # noqa: F401
        import onnx  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError as exc:  # pragma: no cover - environment bootstrap
        if os.environ.get("EXPORT_TV_VIT_REEXEC"):
            sys.exit(f"still cannot import torch/onnx/torchvision after apt-get install: {exc}")
        print(f"[export-torchvision-vit] {exc}; installing Debian's python3-torch python3-onnx "
              "python3-torchvision with apt-get (needs root) ...", file=sys.stderr, flush=True)
        cmd = ["apt-get", "install", "-y", "python3-torch", "python3-onnx", "python3-torchvision"]
        if os.geteuid() != 0:
            cmd = ["sudo"] + cmd
        subprocess.run(cmd, check=True)
        env = dict(os.environ, EXPORT_TV_VIT_REEXEC="1")
        os.execve("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv, env)


_ensure_deps()

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import types  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from onnx import numpy_helper  # noqa: E402
from torchvision.models import vit_b_16  # noqa: E402

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPSET = 14

warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
warnings.filterwarnings("ignore", category=UserWarning)


def make_image(size):
    """Image b=0 of test/fixtures/vit: float32 NCHW, batch 1, ImageNet mean/std, float32 at every step."""
    y = np.arange(size, dtype=np.int64)[:, None, None]
    x = np.arange(size, dtype=np.int64)[None, :, None]
    c = np.arange(3, dtype=np.int64)[None, None, :]
    b = 0
    v = ((x * 7 + y * 13 + c * 50 + b * 91 + ((x * y) % 17) * 5) % 256)[None].transpose(0, 3, 1, 2)
    a = (v.astype(np.float64) / 255.0).astype(np.float32)
    m = np.asarray(IMAGENET_MEAN, dtype=np.float32)[None, :, None, None]
    s = np.asarray(IMAGENET_STD, dtype=np.float32)[None, :, None, None]
    return torch.from_numpy(np.ascontiguousarray((a - m) / s))


def process_input_flatten(self, x):
    """Does the same as torchvision's VisionTransformer._process_input, minus the 224 assert.

    It uses x.flatten(2), so the Reshape shape is computed from the conv output
    at run time. Only used if the stock export bakes the token count into a
    constant.
    """
    x = self.conv_proj(x)
    x = x.flatten(2)
    return x.permute(0, 2, 1)


def export(model, x, path):
    # nn.MultiheadAttention (batch_first=True here) takes its fused fast path
    # (torch._native_multi_head_attention, which has no ONNX symbolic) in eval mode
    # when grad is disabled. With grad enabled and parameters that require grad,
    # the traced path is the plain one, which can be exported.
    with torch.enable_grad():
        torch.onnx.export(model, (x,), path, opset_version=OPSET, input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch"}},
                          do_constant_folding=True, export_params=True)


def producer_map(graph):
    prod = {}
    for n in graph.node:
        for o in n.output:
            prod[o] = n
    return prod


def baked_patch_reshape(graph):
    """Returns (reshape node name, baked values or None) for the Reshape that follows /conv_proj/Conv."""
    conv = next(n for n in graph.node if n.op_type == "Conv" and n.name.startswith("/conv_proj/"))
    reshape = next(n for n in graph.node if n.op_type == "Reshape" and n.input[0] == conv.output[0])
    shape_name = reshape.input[1]
    inits = {i.name: i for i in graph.initializer}
    if shape_name in inits:
        return reshape.name, numpy_helper.to_array(inits[shape_name]).tolist()
    src = producer_map(graph).get(shape_name)
    if src is not None and src.op_type == "Constant":
        return reshape.name, numpy_helper.to_array(src.attribute[0].t).tolist()
    return reshape.name, None


def last_add(graph, prefix):
    adds = [n for n in graph.node if n.op_type == "Add" and n.name.startswith(prefix)]
    return adds[-1].output[0]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/musc-vit/vit_b_16_random.onnx", help="output .onnx path")
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)

    torch.manual_seed(0)
    model = vit_b_16(weights=None).eval()
    x = make_image(224)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, onnx {onnx.__version__}; "
          f"vit_b_16 {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters")

    export(model, x, out)
    proto = onnx.load(out)
    name, baked = baked_patch_reshape(proto.graph)
    patched = False
    if baked is not None:
        # The patch Reshape holds constants ([n, 768, 196]) that only fit a 224 input. Export again,
        # with _process_input rewritten as an equivalent that uses x.flatten(2).
        print(f"{name} has a constant shape {baked}; re-exporting with _process_input using x.flatten(2)")
        model._process_input = types.MethodType(process_input_flatten, model)
        export(model, x, out)
        proto = onnx.load(out)
        name, baked = baked_patch_reshape(proto.graph)
        if baked is not None:
            sys.exit(f"{name} still has a constant shape {baked}")
        patched = True
    else:
        print(f"{name}: shape computed at run time (no 224-specific constants), _process_input left as is")
    onnx.checker.check_model(out)

    g = proto.graph
    block0 = last_add(g, "/encoder/layers/encoder_layer_0/")
    block11 = last_add(g, "/encoder/layers/encoder_layer_11/")
    ln_nodes = [n for n in g.node if n.name.startswith("/encoder/ln/")]
    ln_out = ln_nodes[-1].output[0]
    pos = [i for i in g.initializer if i.name == "encoder.pos_embedding"]
    pos_desc = (f"initializer encoder.pos_embedding {list(pos[0].dims)}" if pos else
                "encoder.pos_embedding was not kept as a named initializer")

    # PyTorch reference values, taken on the same (non-fast) attention path as the export
    taps = {}
    hooks = [model.encoder.ln.register_forward_hook(lambda m, i, o: taps.__setitem__("ln", o.detach())),
             model.encoder.layers[11].register_forward_hook(lambda m, i, o: taps.__setitem__("b11", o.detach()))]
    with torch.enable_grad():
        logits = model(x).detach()
    for h in hooks:
        h.remove()
    ref = {
        "generator": "scripts/export-torchvision-vit.py",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "onnx": onnx.__version__,
        "model": os.path.basename(out),
        "weights": "torchvision.models.vit_b_16(weights=None) after torch.manual_seed(0)",
        "opset": OPSET,
        "processInputPatched": patched,
        "input": "224x224, batch 1: image b=0 of test/fixtures/vit (v = (x*7 + y*13 + c*50 + ((x*y) % 17)*5) % 256), "
                 "ImageNet mean (0.485, 0.456, 0.406) / std (0.229, 0.224, 0.225), float32 at every step",
        "nodes": {"block0": block0, "block11": block11, "encoderLn": ln_out},
        "encoderLnCls8": [float(f"{v:.8g}") for v in taps["ln"][0, 0, :8].tolist()],
        "block11PatchToken0First8": [float(f"{v:.8g}") for v in taps["b11"][0, 1, :8].tolist()],
        "block11PatchToken0Note": "sequence index 1 (the first patch token; index 0 is CLS), raw block output",
        # torchvision zero-initialises heads.head, so with weights=None the logits are all 0:
        # useless for checks, hence not stored.
        "logitsNote": f"all logits are 0 (heads.head is zero-initialised): max |logit| = {logits.abs().max().item()}",
    }
    ref_path = os.path.join(os.path.dirname(out), "vit_b_16_random.ref.json")
    with open(ref_path, "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")

    print(f"positional embedding: {pos_desc}")
    print(f"block 0 output:  {block0}")
    print(f"block 11 output: {block11}")
    print(f"encoder.ln: {', '.join(f'{n.name} ({n.op_type})' for n in ln_nodes)} -> {ln_out}")
    for p in (out, ref_path):
        print(f"{sha256(p)}  {os.path.getsize(p):11d}  {p}")
    print(f"export-torchvision-vit: vit_b_16 random, opset {OPSET}, {len(g.node)} nodes, "
          f"{os.path.getsize(out) / 1e6:.1f} MB -> {out}" + (" (patched _process_input)" if patched else ""))


if __name__ == "__main__":
    main()
