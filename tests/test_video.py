"""Video style transfer (invtool.video) at tiny sizes: frames in and out (mp4 and a folder), the flow and its
consistency mask on a known translation, the temporal term by hand, chunks joined by a cross-fade, the cache
(a rerun computes nothing, Ctrl-C keeps finished frames) and bad input refused in one line with nothing written.
Flicker itself is measured by tests/bench/bench_video.py."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import invtool.style
import invtool.video as video
from conftest import ROOT, VGG16_ONNX
from invtool.cli import main
from invtool.errors import InvtoolError

STYLE = ROOT / "examples" / "textures" / "ihc.png"
TINY = ["--size", "40", "--steps", "3", "--frame-steps", "2", "--device", "cpu", "--quiet",
        "--model", str(VGG16_ONNX)]


def scene(h=48, w=64, seed=0) -> np.ndarray:
    """A smooth random colour image with texture, larger than the frames cut from it."""
    g = np.random.default_rng(seed)
    base = cv2.resize(g.random((h // 8, w // 8, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    detail = cv2.GaussianBlur(g.random((h, w, 3)).astype(np.float32), (0, 0), 1.2)
    return np.clip(255 * (0.6 * base + 0.6 * detail - 0.1), 0, 255).astype(np.uint8)


def panned(n=3, h=32, w=40, step=(2, 1)) -> list[np.ndarray]:
    """n frames of a scene seen through a window moving left/up, so the content moves right/down by `step`."""
    big = scene(h + 16, w + 16)
    return [np.ascontiguousarray(big[8 - t * step[1]:8 - t * step[1] + h, 8 - t * step[0]:8 - t * step[0] + w])
            for t in range(n)]


def write_folder(frames, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return folder


def run_cli(*args):
    return CliRunner().invoke(main, ["style", *map(str, args)])


@pytest.fixture(scope="module")
def model_file():
    if not VGG16_ONNX.is_file():
        pytest.skip("models/vgg16.onnx is missing: run `make export-models`")
    return VGG16_ONNX


def test_frames_round_trip_through_mp4_and_a_folder(tmp_path):
    frames = panned(4)
    mp4 = video.write_clip(tmp_path / "clip.mp4", frames, fps=12)
    clip = video.read_clip(mp4)
    assert len(clip.frames) == 4 and clip.fps == pytest.approx(12) and clip.frames[0].shape == (32, 40, 3)
    assert np.abs(clip.frames[2].astype(float) - frames[2]).mean() < 12      # lossy, but the same picture
    folder = video.write_clip(tmp_path / "frames", frames, fps=12)
    assert sorted(p.name for p in folder.iterdir()) == ["00000.png", "00001.png", "00002.png", "00003.png"]
    back = video.read_clip(folder, size=20)
    assert len(back.frames) == 4 and back.frames[0].shape == (16, 20, 3)
    assert np.array_equal(video.read_clip(folder).frames[3], frames[3])      # PNG: exact
    assert not list(tmp_path.glob(".*"))                                     # no temporary file left


def test_flow_of_a_translation_and_the_consistency_mask():
    frames = panned(2, h=48, w=64, step=(3, 1))   # frame 1 = frame 0 moved right 3, down 1
    forward = video.flow(frames[0], frames[1])
    backward = video.flow(frames[1], frames[0])
    inside = (slice(8, -8), slice(8, -8))
    assert np.abs(forward[inside] - [3, 1]).mean() < 0.25 and np.abs(backward[inside] + [3, 1]).mean() < 0.25
    c = video.consistency(forward, backward)
    assert c[:, :3].max() == 0 and c[:1, :].max() == 0     # the columns and row that came into view: occluded
    assert c[inside].mean() > 0.9
    # the warped previous frame matches the frame where c is on
    warped = video.warp(video._tensor(frames[0]), backward)
    err = (warped - video._tensor(frames[1])).abs()[0].mean(0).numpy()
    assert (err * c).sum() / c.sum() < 0.03
    flows = video.frame_flows(frames)
    assert flows[0] is None and video.warping_error(frames, flows)[1] < 2e-3


def test_consistency_marks_disagreeing_flows_and_motion_boundaries():
    zero = np.zeros((10, 12, 2), np.float32)
    assert video.consistency(zero, zero).all()
    forward = zero.copy()
    forward[4:6, 4:6] = [2, 0]   # the backward flow does not undo it: disoccluded
    assert video.consistency(forward, zero)[4:6, 4:6].max() == 0
    backward = zero.copy()
    backward[:, 6:] = [-1, 0]   # a jump in the backward flow: a motion boundary at column 5-6
    c = video.consistency(-backward, backward)
    assert c[:, 5:7].max() == 0 and c[:, 8:].min() == 1


def test_temporal_term_by_hand():
    x = torch.tensor([[[[0.5, 1.0], [0.0, 0.2]]]]).expand(1, 3, 2, 2).clone()
    target = torch.full((1, 3, 2, 2), 0.25)
    mask = np.array([[1, 0], [1, 1]], np.float32)
    term = video.temporal_objective(target, mask, weight=2.0)
    # c (x - t)^2 per pixel: 0.0625, 0, 0.0625, 0.0025; the mean over 12 elements is 3 * 0.1275 / 12
    assert term.names == ["temporal"]
    assert float(term(None, x)) == pytest.approx(2.0 * 3 * 0.1275 / 12)
    big = torch.nn.functional.interpolate(x, size=(4, 4), mode="nearest")   # a coarse-to-fine scale: resized
    assert float(term(None, big)) > 0


def test_chunks_overlap_and_join_by_a_cross_fade():
    assert video.chunk_bounds(10, 5, 2) == [(0, 5), (3, 8), (6, 10)]
    assert video.chunk_bounds(4, 5, 2) == [(0, 4)] and video.chunk_bounds(10, 0, 2) == [(0, 10)]
    bounds = video.chunk_bounds(10, 5, 2)
    outputs = [[np.full((2, 2, 3), v, np.uint8)] * (e - s) for v, (s, e) in zip((0, 90, 180), bounds)]
    joined = [int(f[0, 0, 0]) for f in video.join_chunks(10, bounds, outputs)]
    assert joined == [0, 0, 0, 30, 60, 90, 120, 150, 180, 180]
    assert video.join_frames(bounds) == [3, 4, 5, 6, 7, 8]


def test_style_a_clip_then_a_rerun_computes_nothing(model_file, tmp_path):
    clip = video.write_clip(tmp_path / "in.mp4", panned(4), fps=10)
    out = tmp_path / "out" / "styled.mp4"
    r = run_cli(clip, STYLE, "-o", out, "--chunk", "3", "--overlap", "1", "--report", *TINY)
    assert r.exit_code == 0, r.output
    assert "4 frames (5 computed, 0 from the cache)" in r.output
    styled = video.read_clip(out)
    assert len(styled.frames) == 4 and styled.frames[0].shape == (32, 40, 3) and styled.fps == pytest.approx(10)
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["chunks"] == [[0, 3], [2, 4]] and record["joins"] == [2, 3]
    runs = [run for row in record["frames"] for run in row["runs"]]
    assert len(runs) == 5 and [run["first"] for run in runs] == [True, False, False, True, False]
    assert all(run["temporal_loss"] is not None for run in runs if not run["first"])
    assert all(row["warping_error"] is not None for row in record["frames"][1:])
    assert record["metrics"]["input_warping_error"] > 0
    page = out.with_suffix(".html").read_text()
    assert "Flicker" in page and page.count("data:image/png;base64") == 2
    r = run_cli(clip, STYLE, "-o", out, "--chunk", "3", "--overlap", "1", *TINY)
    assert r.exit_code == 0, r.output
    assert "(0 computed, 5 from the cache)" in r.output
    assert video.read_clip(out).frames[3].tobytes() == styled.frames[3].tobytes()


def test_interrupted_clip_keeps_finished_frames_and_goes_on(model_file, tmp_path, monkeypatch):
    clip = write_folder(panned(3), tmp_path / "in")
    out = tmp_path / "styled"   # a folder of frames
    real, calls = invtool.style.transfer_style, []

    def interrupted_at_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(invtool.style, "transfer_style", interrupted_at_the_second)
    r = run_cli(clip, STYLE, "-o", out, *TINY)
    assert r.exit_code == 130 and "interrupted" in r.output and not out.exists()
    assert len(list((tmp_path / "styled.cache").glob("*.json"))) == 1
    monkeypatch.setattr(invtool.style, "transfer_style", real)
    r = run_cli(clip, STYLE, "-o", out, *TINY)
    assert r.exit_code == 0, r.output
    assert "3 frames (2 computed, 1 from the cache)" in r.output
    assert sorted(p.name for p in out.iterdir()) == ["00000.png", "00001.png", "00002.png"]
    assert (tmp_path / "styled.json").is_file()


@pytest.mark.parametrize("case", ["unreadable", "no-frames", "bad-output", "empty-mp4"])
def test_bad_input_is_one_line_and_writes_nothing(model_file, tmp_path, case):
    folder = tmp_path / "work"
    folder.mkdir()
    clip, out = folder / "in.mp4", folder / "out.mp4"
    if case == "unreadable":
        clip.write_text("not a video")
    elif case == "no-frames":
        clip = folder / "frames"
        clip.mkdir()
    elif case == "empty-mp4":
        writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (32, 32))
        writer.release()
    else:
        clip = video.write_clip(folder / "in.mp4", panned(2), fps=10)
        out = folder / "out.gif"
    before = sorted(p.name for p in folder.rglob("*"))
    r = run_cli(clip, STYLE, "-o", out, *TINY)
    assert r.exit_code == 1, r.output
    assert r.output.count("\n") == 1 and r.output.startswith("error: ")
    assert sorted(p.name for p in folder.rglob("*")) == before


def test_video_options_need_a_clip_and_the_help_states_the_defaults(tmp_path):
    r = run_cli(STYLE, STYLE, "-o", tmp_path / "x.png", "--chunk", "4")
    assert r.exit_code == 1 and "--chunk applies to a clip" in r.output
    help_text = " ".join(run_cli("--help").output.split())
    assert f"temporal term [default: {video.TEMPORAL_WEIGHT:g}]" in help_text
    assert f"[default: {video.FRAME_STEPS}]" in help_text and f"(0: one job) [default: {video.CHUNK}]" in help_text
    assert f"cross-faded [default: {video.OVERLAP}]" in help_text
    with pytest.raises(InvtoolError, match="at most half a chunk"):
        video.stylize_video(tmp_path, STYLE, output=tmp_path / "o.mp4", chunk=4, overlap=3)
