"""Style transfer with the Python API: the cat painted with an immunohistochemistry stain, with and without
the cat's own colours, side by side in one sheet.

    .venv/bin/python examples/style.py            # writes out/examples/style*.png (+ .json, .html)

Takes a few minutes on two CPU cores (L-BFGS from the content image, Gatys' layers).
"""
from pathlib import Path

import invtool
from invtool.image import contact_sheet, write_png
from invtool.param import resize_image

HERE = Path(__file__).parent
OUT = Path("out/examples")
CONTENT, STYLE = HERE / "images" / "chelsea.png", HERE / "textures" / "ihc.png"

model = invtool.load_model("models/vgg16.onnx")          # load once, reuse for several runs
run = invtool.transfer_style(CONTENT, STYLE, model=model, size=160, steps=80, seed=0)
print("written:", *run.save(OUT / "style.png", report=True))
print(f"{run.record['steps']} steps, {run.record['steps_per_sec']:.2f} steps/s, "
      f"content {run.record['metrics']['content_loss']:.3g}, style {run.record['metrics']['style_loss']:.3g}")

# the same, keeping the content's colours: the style acts on luminance only
kept = invtool.transfer_style(CONTENT, STYLE, model=model, size=160, steps=80, seed=0, preserve_color="luminance")
kept.save(OUT / "style_luminance.png")

style = resize_image(run.inputs["style"], *run.record["style_sizes"][0][::-1])   # as the network saw it
write_png(OUT / "style_sheet.png", contact_sheet(
    [run.inputs["content"], style, run.image, kept.image],
    ["content", "style", "invtool style", "--preserve-color luminance"]))
