"""geometry.receptive_field: by hand on VGG16 and ResNet18, and against a NaN probe through the rebuilt graph
(a pixel set to NaN makes exactly the units that depend on it NaN) on models of other shapes."""
import pytest
import torch

from invtool import InvtoolError, load_model
from invtool.geometry import ReceptiveField, receptive_field, stages

# (size, stride, start) worked out from the architectures: VGG16's 3x3 convolutions padded by 1 and 2x2 pools;
# ResNet18's 7x7/2 convolution padded by 3, 3x3/2 pool padded by 1, two 3x3 convolutions per block
VGG16 = {"conv1_1": (3, 1, -1), "conv1_2": (5, 1, -2), "pool1": (6, 2, -2), "conv2_1": (10, 2, -4),
         "conv3_1": (24, 4, -10), "conv4_1": (60, 8, -26), "conv5_1": (132, 16, -58), "conv5_3": (196, 16, -90)}
RESNET18 = {"conv1": (7, 2, -3), "pool1": (11, 4, -5), "res2b": (43, 4, -21), "res3b": (99, 8, -49),
            "res4b": (211, 16, -105), "res5b": (435, 32, -217)}


@pytest.mark.parametrize("fixture, expected", [("vgg16_conv_onnx", VGG16), ("resnet18_onnx", RESNET18)])
def test_receptive_fields_by_hand(request, fixture, expected):
    model = load_model(request.getfixturevalue(fixture)[0], device="cpu")
    for name, (size, stride, start) in expected.items():
        assert receptive_field(model, name) == ReceptiveField((size, size), (stride, stride), (start, start)), name


def nan_reaches(model, name, pixel, y, x, side) -> bool:
    """Whether a NaN at input `pixel` (row, column) makes the unit at (y, x) of `name` NaN (channel 0)."""
    image = torch.full((1, 3, side, side), 0.5)
    image[0, :, pixel[0], pixel[1]] = float("nan")
    with torch.no_grad():
        return bool(model.features(image, [name])[name][0, :, y, x].isnan().any())


@pytest.mark.parametrize("fixture, name, side", [("resnet18_onnx", "res3b", 112), ("vgg16_conv_onnx", "conv3_1", 48),
                                                 ("corpus_model", None, 128)])
def test_the_box_is_exactly_what_the_unit_depends_on(request, fixture, name, side):
    """Every pixel on the box's inner border reaches the unit; none just outside it does."""
    if fixture == "corpus_model":   # Concat-heavy, BatchNorm, exported by torch.onnx's dynamo: its middle stage
        model = load_model(request.getfixturevalue("corpus_model")("inception_dense_dynamo").path, device="cpu")
        name = stages(model)[len(stages(model)) // 2].name
    else:
        model = load_model(request.getfixturevalue(fixture)[0], device="cpu")
    field = receptive_field(model, name)
    with torch.no_grad():
        h, w = model.features(torch.zeros(1, 3, side, side), [name])[name].shape[-2:]
    y, x = h // 2, w // 2
    top, left, bottom, right = field.box(y, x)
    assert 0 < top and bottom < side and 0 < left and right < side, "the probe image is too small"
    for row in (top, bottom - 1):
        for col in (left, (left + right) // 2, right - 1):
            assert nan_reaches(model, name, (row, col), y, x, side), (row, col)
    for row, col in [(top - 1, (left + right) // 2), (bottom, left), ((top + bottom) // 2, left - 1),
                     (top, right)]:
        assert not nan_reaches(model, name, (row, col), y, x, side), (row, col)


def test_a_layer_without_spatial_axes_is_refused(resnet18_onnx):
    model = load_model(resnet18_onnx[0], device="cpu")
    with pytest.raises(InvtoolError, match="has no spatial resolution"):
        receptive_field(model, "fc")


def test_a_node_with_a_subgraph_is_unknown_not_an_error():
    """The walk decodes the attributes of the ops it knows only (`graph.node_attributes` refuses a subgraph): an
    If on the spatial path is an op the walk does not know, as before it decoded attributes that way."""
    import onnx

    from invtool.geometry import _through, _Unknown

    body = onnx.helper.make_graph([], "body", [], [])
    node = onnx.helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=body, else_branch=body)
    with pytest.raises(_Unknown, match=r"op If \(node 'branch'\) moves pixels in a way"):
        _through(None, node, [{2: (1, 1, 0), 3: (1, 1, 0)}])
