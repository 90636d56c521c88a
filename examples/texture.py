"""Texture synthesis with the Python API: a tileable 384x192 texture from a 128 px crop of a photo-texture.

    .venv/bin/python examples/texture.py            # writes out/examples/texture.png (+ .json, .html)

Takes a few minutes on two CPU cores; fewer steps (steps=100) give a rougher result sooner.
"""
from pathlib import Path

import invtool
from invtool.image import write_png

HERE = Path(__file__).parent
OUT = Path("out/examples")

model = invtool.load_model("models/vgg16.onnx")          # load once, reuse for several runs
run = invtool.synthesize_texture(HERE / "textures" / "ihc.png", model=model, size=128,
                                 out_size=(192, 384),    # any size: the statistics do not depend on it
                                 tile=True,              # wraps around seamlessly
                                 steps=200, seed=0)
print("written:", *run.save(OUT / "texture.png", report=True))
print(f"{run.record['steps']} steps, {run.record['steps_per_sec']:.2f} steps/s, "
      f"Gram loss (Gatys, conv1_1,pool1..pool4) {run.record['metrics']['gram_loss']:.3g}")

# the tile property: two copies side by side show no seam
write_png(OUT / "texture_2x2.png", run.image.repeat(1, 1, 2, 2))
