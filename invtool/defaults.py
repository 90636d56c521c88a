"""The defaults of invtool's commands, in one light module: it imports nothing, so that `invtool --help`
and each command's `--help` show them without loading torch, onnx or the command's own module.

The Python API's signatures take their defaults from here (`steps: int = TEXTURE["steps"]`) and the CLI's
options show the same values: one place for each. A command's dict holds the defaults of those of its
parameters that the CLI offers as options with a default (the optimiser's among them: `cli.optimizer_options`
offers exactly the optimiser parameters a dict names).
"""

DEFAULT_MODEL = "models/vgg16.onnx"   # every command's model when none is named (`make export-models` builds it)

# the optimisers (invtool.optimize checks against these)
OPTIMIZERS = ("adam", "sgd", "lbfgs", "lbfgs-torch")   # lbfgs: invtool.lbfgs (device-side); lbfgs-torch: torch.optim's
LR_SCHEDULES = ("constant", "step", "cosine")
WORK_SIZE = 512      # texture's and style's working size: larger outputs are refined from it, one doubling at a time

# today's choices on the models whose aliases invtool's exporters write (Gatys et al. on VGG16)
KNOWN_DEFAULTS = {
    "vgg16": {"texture": ("conv1_1", "pool1", "pool2", "pool3", "pool4"),
              "style": ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"),
              "content": ("conv4_2",), "invert": ("conv3_1",),
              "compare": ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"),
              "atlas": ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")},
    "resnet18": {"texture": ("conv1", "res2", "res3", "res4"),
                 "style": ("conv1", "res2", "res3", "res4", "res5"),
                 "content": ("res4",), "invert": ("res3",),
                 "compare": ("conv1", "res2", "res3", "res4", "res5"),
                 "atlas": ("conv1", "res2", "res3", "res4", "res5")},
}

# --- texture -------------------------------------------------------------------------------------
GATYS_LAYERS = KNOWN_DEFAULTS["vgg16"]["texture"]   # Gatys et al. 2015
LOSSES = ("gram", "sorted", "swd")
TEXTURE = dict(layer_weights="uniform", loss="gram", gram_norm="gatys", scales=2, work_size=WORK_SIZE, optimizer=None,
               steps=150, lr=None, lr_schedule="constant", tol=0.0, seed=0, save_every=0)

# --- visualize -----------------------------------------------------------------------------------
VISUALIZE_PARAMS = ("fourier", "pixel")
# batch "auto": tiles a batched run, from the memory planner (at most memory.CPU_BATCH on the CPU)
# dtype "auto": bfloat16 on a CPU with bfloat16 instructions, else float32 (model.resolve_dtype); pictures, not
# losses compared with references, so the 2x of bfloat16 convolutions is worth its rounding (docs/benchmarks.md)
VISUALIZE = dict(size=128, octaves=1, octave_scale=1.4, jitter=8, scale_jitter=0.1, rotate=10.0, optimizer="adam",
                 steps=64, lr=None, seed=0, batch="auto", save_every=0, dtype="auto")

# --- invert --------------------------------------------------------------------------------------
INVERT_INITS = ("noise", "gray", "blur")
INVERT_PARAMS = ("pyramid", "pixel")
# size and steps: one run, stopped early at `tol`, takes about a minute on 2 CPU cores (README)
INVERT = dict(size=128, alpha=6.0, alpha_weight=0.0, tv_beta=2.0, tv_weight=3e-4, jitter=0, init="gray",
              param="pyramid", optimizer="lbfgs", lr=None, lr_schedule="constant", steps=600, tol=1e-3, scales=1,
              seed=0, restarts=1, save_every=0)

# --- style ---------------------------------------------------------------------------------------
CONTENT_LAYERS = KNOWN_DEFAULTS["vgg16"]["content"]   # on VGG16, Gatys et al. 2016
STYLE_LAYERS = KNOWN_DEFAULTS["vgg16"]["style"]       # each 1/5
STYLE_LOSSES = ("gram", "swd")
STYLE_WEIGHTS = {"gram": 0.01, "swd": 3.0}   # per loss (swd is ~200x smaller than Gram on VGG16); see transfer_style
COLOR_MODES = ("none", "luminance", "histogram")
STYLE = dict(content_weight=1.0, tv_weight=0.0, style_loss="gram", style_scale=1.0, init="content",
             preserve_color="none", size=160, scales=1, work_size=WORK_SIZE, optimizer=None, steps=200, lr=None,
             lr_schedule="constant", tol=0.0, seed=0, save_every=0)

# --- atlas ---------------------------------------------------------------------------------------
# batch "auto": channels a job, per layer, from the memory planner (two tiles a channel; on the CPU
# memory.CPU_BATCH tiles, so 4 channels)
ATLAS = dict(top=9, steps=64, size=128, seed=0, batch="auto", example_size=224, workers=1, dtype=VISUALIZE["dtype"])
