"""PyTorch SigNet (luizgh/sigver layout), shared by the Siamese verifier and the SigNet .pth files.

State-dict keys are exactly upstream's: `conv_layers.convK.conv.weight`,
`conv_layers.convK.bn.{weight,bias,running_mean,running_var,num_batches_tracked}` (K = 1..5),
`fc_layers.fcK.fc.weight`, `fc_layers.fcK.bn.*` (K = 1, 2). Convs and dense layers have no bias;
each is followed by BatchNorm (eps 1e-5) and an activation (ReLU in sigver, Mish in the Siamese
notebook). Input (N, 1, 150, 220) -> conv stack -> 256 x 3 x 5 = 3840 -> fc1 2048 -> fc2 2048.
"""

from __future__ import annotations

import io
import warnings
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from stages.core import calibration
from stages.core import random_draws as draws

# (name, out_channels, kernel, stride, padding); None marks a 3x3 stride-2 max pool.
CONV_STACK = (
    ("conv1", 96, 11, 4, 0),
    None,
    ("conv2", 256, 5, 1, 2),
    None,
    ("conv3", 384, 3, 1, 1),
    ("conv4", 384, 3, 1, 1),
    ("conv5", 256, 3, 1, 1),
    None,
)
FLAT_FEATURES = 256 * 3 * 5
INPUT_SIZE = (150, 220)
BATCH_NORM_EPS = 1e-5
CALIBRATION_IMAGES = 16  # drawn signatures the stand-ins' batch-norm statistics come from
FEATURES = 2048
ACTIVATIONS = {"relu": nn.ReLU, "mish": nn.Mish}
# torch.onnx's TorchScript exporter, in its default EVAL mode, folds every Conv + BatchNorm pair
# into new conv weights computed by PyTorch kernels at export time, whose rounding depends on the
# CPU's kernels (the ONNX bytes then differ between machines). PRESERVE exports the module in the
# mode it is in (eval: BatchNormalization with its running statistics) and skips that fold, so
# every exported weight is a checkpoint tensor, possibly transposed (Linear -> MatMul). ONNX
# Runtime fuses Conv + BatchNormalization itself when it loads the session. Constant folding
# still runs and only touches shapes and those transposes (stages.core.weight_trace proves it).
UNFUSED_EVAL_EXPORT = torch.onnx.TrainingMode.PRESERVE


def export_unfused(
    model: nn.Module,
    examples: tuple[torch.Tensor, ...],
    input_names: list[str],
    output_names: list[str],
    opset: int,
    dynamic_axes: dict | None = None,
) -> bytes:
    """torch.onnx (TorchScript exporter) of an eval-mode module, BatchNorm kept as its own node."""
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # The exporter warns that constant folding may alter parameters of a module in training
        # mode; this module is in eval mode, and weight_trace proves no parameter was altered.
        warnings.filterwarnings("ignore", message=r".*constant folding be turned off.*")
        torch.onnx.export(
            model.eval(),
            examples,
            buffer,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
            training=UNFUSED_EVAL_EXPORT,
            dynamo=False,
        )
    return buffer.getvalue()


class ConvBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, padding: int, activation: str):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=BATCH_NORM_EPS)
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class DenseBlock(nn.Module):
    def __init__(self, in_features: int, out_features: int, activation: str):
        super().__init__()
        self.fc = nn.Linear(in_features, out_features, bias=False)
        self.bn = nn.BatchNorm1d(out_features, eps=BATCH_NORM_EPS)
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.fc(x)))


class SigNet(nn.Module):
    """SigNet feature extractor: float (N, 1, 150, 220) -> fc2 features (N, 2048)."""

    def __init__(self, activation: str = "relu"):
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels, pools = 1, 0
        for entry in CONV_STACK:
            if entry is None:
                pools += 1
                layers[f"maxpool{pools}"] = nn.MaxPool2d(3, 2)
                continue
            name, out, kernel, stride, padding = entry
            layers[name] = ConvBlock(channels, out, kernel, stride, padding, activation)
            channels = out
        self.conv_layers = nn.Sequential(layers)
        self.fc_layers = nn.Sequential(
            OrderedDict(
                [
                    ("fc1", DenseBlock(FLAT_FEATURES, FEATURES, activation)),
                    ("fc2", DenseBlock(FEATURES, FEATURES, activation)),
                ]
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_layers(x)
        x = x.view(x.shape[0], FLAT_FEATURES)
        return self.fc_layers(x)


def synthetic_state(module: nn.Module, seed: int) -> OrderedDict[str, torch.Tensor]:
    """He-normal weights and non-trivial BatchNorm statistics from a seeded PCG64 stream.

    Same bytes on every machine: numpy sampling only, cast to float32; parameters are visited in
    state-dict order, so the stream is fixed by the architecture.
    """
    rng = draws.generator(seed)
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, tensor in module.state_dict().items():
        shape = tuple(tensor.shape)
        leaf = key.rsplit(".", 1)[-1]
        if leaf == "num_batches_tracked":
            value = np.array(int(rng.integers(1000, 50000)), dtype=np.int64)
        elif leaf == "weight" and len(shape) >= 2:
            fan_in = int(np.prod(shape[1:]))
            value = draws.he_normal(rng, shape, fan_in)
        elif leaf == "weight":  # BatchNorm gamma
            value = draws.batch_norm_gamma(rng, shape)
        elif leaf == "running_var":
            value = draws.batch_norm_variance(rng, shape)
        elif leaf == "running_mean":
            value = draws.batch_norm_mean(rng, shape)
        elif ".bn." in key:  # BatchNorm beta
            value = draws.batch_norm_beta(rng, shape)
        else:  # dense biases
            value = rng.normal(0.0, 0.1, size=shape)
        dtype = np.int64 if leaf == "num_batches_tracked" else np.float32
        # np.ascontiguousarray would turn the 0-d counter into shape (1,).
        state[key] = torch.from_numpy(np.array(value, dtype=dtype, order="C"))
    return state


def calibrate_batch_norm(state: OrderedDict[str, torch.Tensor], seed: int, activation: str, prefix: str = "") -> None:
    """Set every SigNet BatchNorm's running mean and variance from drawn signatures, in place.

    As training leaves them: the mean and (biased) variance of each batch norm's input over the
    data, here signature strokes fed as the networks take them (pixels / 255), computed by
    `stages.core.calibration` in exact arithmetic, so the stand-in's bytes are the same everywhere.
    """
    weights = lambda key: state[f"{prefix}{key}"].numpy()  # noqa: E731
    layers: list[calibration.Layer] = []
    blocks: list[str] = []
    for entry in CONV_STACK:
        if entry is None:
            layers.append(calibration.Pool(3, 2))
            continue
        name, _out, _kernel, stride, padding = entry
        block = f"conv_layers.{name}"
        layers.append(
            calibration.Conv(
                weights(f"{block}.conv.weight"),
                weights(f"{block}.bn.weight"),
                weights(f"{block}.bn.bias"),
                stride,
                padding,
            )
        )
        blocks.append(block)
    layers.append(calibration.Flatten())
    for name in ("fc1", "fc2"):
        block = f"fc_layers.{name}"
        layers.append(
            calibration.Dense(
                weights(f"{block}.fc.weight").T, weights(f"{block}.bn.weight"), weights(f"{block}.bn.bias")
            )
        )
        blocks.append(block)
    images = calibration.signature_field_images(seed, CALIBRATION_IMAGES, [INPUT_SIZE])
    # pixels / 255 on the 2^-8 grid: floor(pixel * 256 / 255), integers 0..256.
    scaled = [(image.astype(np.int64) * 256) // 255 for image in images]
    statistics = calibration.calibrate(layers, scaled, 8, BATCH_NORM_EPS, activation)
    for block, stats in zip(blocks, statistics):
        state[f"{prefix}{block}.bn.running_mean"] = torch.from_numpy(stats.mean.astype(np.float32))
        state[f"{prefix}{block}.bn.running_var"] = torch.from_numpy(stats.var.astype(np.float32))
