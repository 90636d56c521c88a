"""BatchNormalization (eval: running statistics), InstanceNormalization and LRN."""
import torch
import torch.nn.functional as F

from ...errors import InvtoolError
from ..registry import converter


@converter("BatchNormalization")
def batch_norm(x, scale, bias, mean, var, *, epsilon=1e-5, momentum=0.9, spatial=1, training_mode=0,
               is_test=0, consumed_inputs=None):
    """The running statistics: invtool evaluates networks, never trains them.

    training_mode=1 (opset 14 on) normalises with the batch's own statistics and updates the running
    ones: refused by name rather than computed otherwise. spatial=0 (opsets < 9) gives statistics per
    channel and position; they broadcast against x as is.
    """
    if training_mode:
        raise InvtoolError("BatchNormalization with training_mode=1 is not supported: invtool evaluates "
                           "networks with their running statistics; export the model in eval mode")
    if not spatial:
        return (x - mean) / torch.sqrt(var + epsilon) * scale + bias
    return F.batch_norm(x, mean, var, scale, bias, False, 0.0, epsilon)


@converter("InstanceNormalization")
def instance_norm(x, scale, bias, *, epsilon=1e-5):
    return F.instance_norm(x, weight=scale, bias=bias, eps=epsilon)


@converter("LRN")
def lrn(x, *, alpha=1e-4, beta=0.75, bias=1.0, size=1):
    """x / (bias + alpha / size * sum of x² over channels [c - (size-1)//2, c + size//2]) ** beta.

    Written out because torch's local_response_norm centres even windows on the other side.
    """
    sq = (x * x).transpose(1, -1)
    sq = F.pad(sq, ((size - 1) // 2, size // 2))
    channels = x.shape[1]
    window = sum(sq[..., i:i + channels] for i in range(size)).transpose(1, -1)
    return x / (bias + alpha / size * window) ** beta
