"""invtool atlas: the site's files and data, dataset examples against the rebuilt graph, the cache (reruns
and interrupted runs), serial against Ray workers byte for byte, and bad input refused before any job."""
import json
import re
import socket
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import invtool.atlas.runner as runner_module
from conftest import atlas_args
from invtool import load_model
from invtool.atlas.examples import load_example
from invtool.cli import main
from invtool.geometry import conv_layers
from invtool.visualization import relu_input
from invtool.image import to_uint8

# VGG16's receptive fields by hand (3x3 convolutions padded by 1, 2x2 pools of stride 2): size, stride, start
HAND_FIELDS = {"conv1_2": (5, 1, -2), "conv2_1": (10, 2, -4)}


def units_of(site: Path) -> dict[str, dict]:
    """layer -> its JSON, from the site's files."""
    return {layer["name"]: json.loads((site / "layers" / f"{layer['slug']}.json").read_text())
            for layer in json.loads((site / "atlas.json").read_text())["layers"]}


def pngs(site: Path) -> dict[str, bytes]:
    return {str(p.relative_to(site)): p.read_bytes() for p in sorted((site / "units").rglob("*.png"))}


class Links(HTMLParser):
    """Every href and src of a page."""

    def __init__(self):
        super().__init__()
        self.targets = []

    def handle_starttag(self, tag, attrs):
        self.targets += [v for k, v in attrs if k in ("href", "src") and v]


def test_site_has_every_page_image_and_json_and_links_resolve(small_atlas):
    site, output = small_atlas
    record = json.loads((site / "atlas.json").read_text())
    assert [layer["name"] for layer in record["layers"]] == ["conv1_2", "conv2_1"]
    assert record["units"] == {"total": 8, "computed": 8, "cached": 0, "jobs": 4, "jobs_run": 4}
    assert "8 units (8 computed, 0 from the cache)" in output
    layers = units_of(site)
    for name, layer in layers.items():
        assert [u["channel"] for u in layer["units"]] == [0, 1, 2, 3]
        assert layer["channels"] == {"conv1_2": 64, "conv2_1": 128}[name]
        for unit in layer["units"]:
            for key in ("page", "positive", "negative"):
                assert (site / unit[key]).is_file()
            image = cv2.imread(str(site / unit["positive"]))
            assert image.shape == (32, 32, 3)
            assert unit["objective"]["positive"][1] > unit["objective"]["negative"][1]   # excited above suppressed
    pages = [site / "index.html", *site.glob("layers/*.html"), *site.glob("units/*/*.html")]
    assert len(pages) == 1 + 2 + 8
    for page in pages:
        parser = Links()
        parser.feed(page.read_text())
        for target in parser.targets:
            if not target.startswith("data:"):
                assert (page.parent / target).resolve().is_file(), (page, target)
                assert (page.parent / target).resolve().is_relative_to(site.resolve())
    assert f'<code>{record["model"]["sha256"]}</code>' in (site / "index.html").read_text()


def test_unreadable_files_are_skipped_and_listed(small_atlas):
    site, output = small_atlas
    examples = json.loads((site / "atlas.json").read_text())["examples"]
    assert examples["files"] == [f"img{i}.png" for i in range(5)]
    assert [s["file"] for s in examples["skipped"]] == ["broken.png", "notes.txt"]
    assert all("not an image" in s["reason"] for s in examples["skipped"])
    assert "skipped broken.png, notes.txt" in output
    index = (site / "index.html").read_text()
    assert "<code>broken.png</code>" in index and "<code>notes.txt</code>" in index


def test_dataset_examples_are_the_images_peaks_cropped_to_the_receptive_field(small_atlas, vgg16_conv_onnx,
                                                                              atlas_images):
    """Oracle: every image's features from the rebuilt torch graph (the atlas's pass ran on ONNX Runtime),
    and the receptive fields by hand."""
    site, _ = small_atlas
    assert json.loads((site / "atlas.json").read_text())["examples"]["engine"] == "ort"
    model = load_model(vgg16_conv_onnx[0], device="cpu")
    files = [atlas_images / f"img{i}.png" for i in range(5)]
    images = torch.cat([load_example(f, 32) for f in files])
    for name, layer in units_of(site).items():
        size, stride, start = HAND_FIELDS[name]
        assert layer["receptive_field"] == {"size": [size] * 2, "stride": [stride] * 2, "start": [start] * 2}
        with torch.no_grad():
            f = model.features(images, [layer["read"]])[layer["read"]]
        for unit in layer["units"]:
            maps = f[:, unit["channel"]].flatten(1)
            best = maps.max(1).values
            order = torch.argsort(-best, stable=True)[:3]
            assert [e["file"] for e in unit["examples"]] == [files[i].name for i in order]
            for ex, i in zip(unit["examples"], order):
                assert ex["value"] == pytest.approx(float(best[i]), rel=1e-4, abs=1e-5)
                w = f.shape[-1]
                assert (ex["y"], ex["x"]) == divmod(int(maps[i].argmax()), w)
                top, left = start + ex["y"] * stride, start + ex["x"] * stride
                assert ex["box"] == [top, left, top + size, left + size]
                expected = np.full((size, size, 3), 128, np.uint8)          # grey past the border
                pixels = to_uint8(images[i])
                t, l, b, r = max(top, 0), max(left, 0), min(top + size, 32), min(left + size, 32)
                expected[t - top:b - top, l - left:r - left] = pixels[t:b, l:r]
                crop = cv2.cvtColor(cv2.imread(str(site / ex["crop"])), cv2.COLOR_BGR2RGB)
                np.testing.assert_array_equal(crop, expected)


def test_rerun_computes_nothing_and_keeps_the_pngs(small_atlas, vgg16_conv_onnx, atlas_images, monkeypatch):
    site, _ = small_atlas
    before = pngs(site)

    def no_work(*args):
        raise AssertionError("a rerun ran a job")
    monkeypatch.setattr(runner_module, "run_job", no_work)
    monkeypatch.setattr("invtool.atlas.activation_maxima", no_work)
    r = CliRunner().invoke(main, atlas_args(vgg16_conv_onnx[0], site, images=atlas_images))
    assert r.exit_code == 0, r.output
    assert "8 units (0 computed, 8 from the cache)" in r.output
    assert pngs(site) == before


def test_interrupted_run_keeps_finished_units_and_goes_on(small_atlas, vgg16_conv_onnx, tmp_path, monkeypatch):
    reference, _ = small_atlas
    out = tmp_path / "site"
    real, ran = runner_module.run_job, []

    def interrupted_after_one(job, model):
        if ran:
            raise KeyboardInterrupt
        ran.append(job.channels)
        return real(job, model)
    monkeypatch.setattr(runner_module, "run_job", interrupted_after_one)
    r = CliRunner().invoke(main, atlas_args(vgg16_conv_onnx[0], out))
    assert r.exit_code == 130 and "interrupted" in r.output and not (out / "index.html").exists()
    assert len(list((out / ".cache" / "units").glob("*.json"))) == 2      # the first job's two units

    def counted(job, model):
        ran.append(job.channels)
        return real(job, model)
    monkeypatch.setattr(runner_module, "run_job", counted)
    r = CliRunner().invoke(main, atlas_args(vgg16_conv_onnx[0], out))
    assert r.exit_code == 0, r.output
    assert "8 units (6 computed, 2 from the cache)" in r.output and len(ran) == 1 + 3
    assert pngs(out).items() <= pngs(reference).items()       # the same images (this one has no examples)
    assert len(pngs(out)) == 16


def test_ray_workers_give_byte_identical_pngs(small_atlas, vgg16_conv_onnx, atlas_images, tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'invtool[ray]')")
    reference, _ = small_atlas
    out = tmp_path / "site"
    r = CliRunner().invoke(main, atlas_args(vgg16_conv_onnx[0], out, images=atlas_images, workers=2))
    assert r.exit_code == 0, r.output
    record = json.loads((out / "atlas.json").read_text())
    assert record["runner"]["ray"] and record["runner"]["workers"] == 2
    assert pngs(out) == pngs(reference)
    assert units_of(out) == units_of(reference)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("options, message", [
    (dict(layers="conv1_2,conv9_9"), r"unknown layer 'conv9_9'"),
    (dict(channels="60-64"), r"channel 64 is out of range: conv1_2 has 64 channels, 0-63"),
    (dict(images="EMPTY"), r"holds no image OpenCV can read \(1 other files\)"),
    (dict(address="ADDRESS"), r"no Ray cluster answers at 127\.0\.0\.1:\d+ \(Connection refused\)"),
    (dict(workers=2, ray_missing=True), r"runs on Ray, which is not installed; pip install 'invtool\[ray\]'"),
    (dict(batch="0"), r"--batch 0 is not a batch size; give auto \(sized by the memory planner\) or a whole number"),
    (dict(batch="x"), r"--batch x is not a batch size; give auto"),
    (dict(batch="-3"), r"--batch -3 is not a batch size; give auto"),
    (dict(memory="lots"), r"bad memory budget 'lots'; give a size like 2G"),
])
def test_bad_input_is_one_line_before_anything_is_written(vgg16_conv_onnx, tmp_path, monkeypatch, options, message):
    if "address" in options:
        pytest.importorskip("ray", reason="Ray is not installed (pip install 'invtool[ray]')")
    if options.pop("ray_missing", False):
        monkeypatch.setitem(sys.modules, "ray", None)
    if options.get("images") == "EMPTY":
        options["images"] = tmp_path / "empty"
        options["images"].mkdir()
        (options["images"] / "a.txt").write_text("text")
    if options.get("address") == "ADDRESS":
        options["address"] = f"127.0.0.1:{free_port()}"
    out = tmp_path / "site"
    t0 = time.perf_counter()
    r = CliRunner().invoke(main, atlas_args(vgg16_conv_onnx[0], out, **options))
    assert time.perf_counter() - t0 < 30
    assert r.exit_code == 1 and r.output.count("\n") == 1 and r.output.startswith("error: "), r.output
    assert re.search(message, r.output), r.output
    assert not out.exists()


@pytest.mark.parametrize("reply, problem", [(None, "no answer within 1 s"),
                                             (b"HTTP/1.1 400 Bad Request\r\n\r\n", "not as a Ray cluster does")])
def test_an_address_that_is_not_ray_fails_in_seconds(vgg16_conv_onnx, tmp_path, monkeypatch, reply, problem):
    """A local port that accepts and stays silent (ray.init alone retries it for minutes), or answers as
    something else, is a one-line error within the connect timeout."""
    import threading
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'invtool[ray]')")
    monkeypatch.setattr(runner_module, "CONNECT_TIMEOUT", 1.0)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)

        def answer():
            conn, _ = server.accept()
            with conn:
                conn.recv(64)
                if reply:
                    conn.sendall(reply)
                time.sleep(2)
        threading.Thread(target=answer, daemon=True).start()
        out = tmp_path / "site"
        t0 = time.perf_counter()
        r = CliRunner().invoke(main, atlas_args(vgg16_conv_onnx[0], out,
                                                address=f"127.0.0.1:{server.getsockname()[1]}"))
    assert time.perf_counter() - t0 < 10
    assert r.exit_code == 1 and r.output.count("\n") == 1 and problem in r.output, r.output
    assert not out.exists()


def test_a_folder_that_is_not_an_atlas_is_never_written_into(vgg16_conv_onnx, tmp_path):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"precious")
    r = CliRunner().invoke(main, atlas_args(vgg16_conv_onnx[0], out))
    assert r.exit_code == 1 and "holds files that are not an invtool atlas" in r.output
    assert [p.name for p in out.iterdir()] == ["holiday.jpg"] and (out / "holiday.jpg").read_bytes() == b"precious"


def test_a_ray_worker_keeps_one_model_per_preprocessing(vgg16_conv_onnx, monkeypatch):
    """A worker process caches the models it loaded; two atlases of the same file with other preprocessing (or
    compute dtype) must not share one, or the second would compute with the first's input convention."""
    from invtool.preprocess import PRESETS
    monkeypatch.setattr(runner_module, "_MODELS", {})
    data = vgg16_conv_onnx[0].read_bytes()
    spec = {"path": "m.onnx", "sha256": "same", "pool": "max", "device": "cpu", "dtype": torch.float32}
    caffe = runner_module.worker_model(data, {**spec, "preprocess": PRESETS["caffe"]})
    imagenet = runner_module.worker_model(data, {**spec, "preprocess": PRESETS["imagenet"]})
    assert caffe.preprocess == PRESETS["caffe"] and imagenet.preprocess == PRESETS["imagenet"]
    assert runner_module.worker_model(data, {**spec, "preprocess": PRESETS["caffe"]}) is caffe
    half = runner_module.worker_model(data, {**spec, "preprocess": PRESETS["caffe"], "dtype": torch.float16})
    assert half is not caffe and half.dtype == torch.float16


# --- batches, every conv layer -------------------------------------------------------------------------

def test_auto_batch_is_a_number_per_layer_and_a_rerun_finds_the_cache(small_atlas, vgg16_conv_onnx, tmp_path,
                                                                       monkeypatch):
    """--batch auto (the default) becomes channels a job per layer before any job: on the CPU memory.CPU_BATCH
    tiles, two a channel. With CPU_BATCH 4 that is the reference's --batch 2, so its jobs, keys and PNGs; a
    rerun computes nothing."""
    import invtool.memory as memory
    monkeypatch.setattr(memory, "CPU_BATCH", 4)
    reference, _ = small_atlas
    out = tmp_path / "site"
    r = CliRunner().invoke(main, atlas_args(vgg16_conv_onnx[0], out, batch=None))
    assert r.exit_code == 0, r.output
    record = json.loads((out / "atlas.json").read_text())
    assert record["options"]["batch"] == "auto" and record["units"]["jobs"] == 4
    assert {name: b["channels"] for name, b in record["batch"]["layers"].items()} == {"conv1_2": 2, "conv2_1": 2}
    assert [layer["batch"] for layer in record["layers"]] == [2, 2]
    assert pngs(out).items() <= pngs(reference).items() and len(pngs(out)) == 16

    def no_work(*args):
        raise AssertionError("a rerun ran a job")
    monkeypatch.setattr(runner_module, "run_job", no_work)
    r = CliRunner().invoke(main, atlas_args(vgg16_conv_onnx[0], out, batch=None))
    assert r.exit_code == 0, r.output
    assert "8 units (0 computed, 8 from the cache)" in r.output


def test_a_batch_that_does_not_fit_the_budget_is_lowered_with_a_note(vgg16_conv_onnx, tmp_path):
    from invtool.atlas import build_atlas
    from test_visualize import least_budget
    model = load_model(vgg16_conv_onnx[0], device="cpu")
    record = build_atlas(model, tmp_path / "site", layers="conv1_2", channels="0-1", size=32, steps=1, batch=2,
                         memory=least_budget(model, "conv1_2", 2, 32), progress=False)
    assert record["layers"][0]["batch"] == 1 and record["units"]["jobs"] == 2
    assert any(n.startswith("conv1_2, tiles a job: batch 4 lowered to 2 to fit the memory budget of")
               for n in record["notes"]), record["notes"]


def test_layers_all_is_every_conv_layer(vgg16_conv_onnx, resnet18_onnx):
    """Every Conv node of the graph, as the Relu right after it (read at its input: the Conv's output) by its
    name, or the Conv's own output where no Relu alone follows it (a ResNet block's second conv)."""
    model = load_model(vgg16_conv_onnx[0], device="cpu")
    nodes = model.proto.graph.node
    convs = [n.output[0] for n in nodes if n.op_type == "Conv"]
    after = {n.input[0]: n.output[0] for n in nodes if n.op_type == "Relu"}
    layers = conv_layers(model)
    assert layers == [after[c] for c in convs] == [f"conv{b}_{i}" for b, k in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
                                                   for i in range(1, k + 1)]
    assert [relu_input(model, layer) for layer in layers] == convs
    assert sum(model.channels(layer) for layer in layers) == 4224
    resnet = load_model(resnet18_onnx[0], device="cpu")
    convs = [n.output[0] for n in resnet.proto.graph.node if n.op_type == "Conv"]
    layers = conv_layers(resnet)
    assert len(layers) == len(convs) and [relu_input(resnet, layer) for layer in layers] == convs


def test_cli_layers_all_writes_a_page_per_conv_layer(vgg16_conv_onnx, tmp_path):
    out = tmp_path / "site"
    r = CliRunner().invoke(main, atlas_args(vgg16_conv_onnx[0], out, layers="all", channels="0", steps="1"))
    assert r.exit_code == 0, r.output
    assert "13 layers, 13 units (13 computed, 0 from the cache)" in r.output
    record = json.loads((out / "atlas.json").read_text())
    names = [layer["name"] for layer in record["layers"]]
    assert names == conv_layers(load_model(vgg16_conv_onnx[0], device="cpu"))
    assert any(n.startswith("--layers all: the model's 13 conv layers, conv1_1 … conv5_3") for n in record["notes"])
    index = (out / "index.html").read_text()
    for layer in record["layers"]:
        assert (out / "layers" / f"{layer['slug']}.html").is_file() and f'href="layers/{layer["slug"]}.html"' in index
    assert len(list((out / "units").glob("*/*.html"))) == 13
