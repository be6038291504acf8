"""dlib's 128-d face descriptor (`dlib_face_recognition_resnet_model_v1.dat`) run on ONNX Runtime.

The dlib wheel on PyPI is built without BLAS: its descriptor costs about 75 ms per face on
one core and holds the GIL. This module reads the network's weights from dlib's own model
file (the one `face-recognition-models` ships), writes the same network as an ONNX graph in
memory and runs it on ONNX Runtime: the same vectors (largest difference about 5e-7 per
component, `tests/test_dlib_backend.py` compares them with dlib's), about 5 ms per face on
one core, and the GIL released while it runs.

The network (dlib's `dnn_face_recognition_ex.cpp`): a 7x7/2 convolution and a 3x3/2 max
pool, 14 residual blocks of two 3x3 convolutions (32, 64, 128, 256, 256 filters; a block
that halves the size averages its input 2x2 for the shortcut), a global average and a
256x128 fully connected layer. Each convolution is followed by an `affine` layer (batch
norm frozen to a scale and shift), folded here into the convolution's weights. Where dlib
adds two tensors of different shapes (a strided block's output is smaller than its
shortcut for even inputs, and has more channels), the missing elements count as zero: the
graph pads both to the larger shape before adding.

File format (dlib's `serialize`): integers are a length byte (low nibble: byte count, high
bit: sign) then little-endian bytes; strings are a length then the bytes; a tensor is
version 2, four dimensions, then little-endian float32s. The layers appear from the input
outwards, each named by a version string (`con_4`, `affine_`, ...); the parser finds each
one and checks the whole sequence against the architecture above before building anything.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

INPUT_SIZE = 150
FORMAT = "v2"  # of the generated ONNX model (v2: IR version 8): part of its cache file's name
_LAYER = re.compile(rb"\x01[\x04-\x20](con_[45]|affine_|max_pool_2|avg_pool_2|fc_2|input_rgb_image_sized)")
_BLOCKS = [(32, 1)] * 3 + [(64, 2)] + [(64, 1)] * 3 + [(128, 2)] + [(128, 1)] * 2 + [(256, 2)] + [(256, 1)] * 2 + [(256, 2)]


class _Reader:
    def __init__(self, data: bytes, pos: int):
        self.data, self.pos = data, pos

    def int(self) -> int:
        head = self.data[self.pos]
        n = head & 0x0F
        value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + n], "little")
        self.pos += 1 + n
        return -value if head & 0x80 else value

    def str(self) -> str:
        n = self.int()
        self.pos += n
        return self.data[self.pos - n : self.pos].decode("ascii")

    def float(self) -> float:
        mantissa = self.int()
        return mantissa * 2.0 ** self.int()

    def tensor(self) -> np.ndarray:
        if self.int() != 2:
            raise ValueError("unknown tensor version")
        shape = [self.int() for _ in range(4)]
        n = int(np.prod(shape))
        self.pos += 4 * n
        return np.frombuffer(self.data[self.pos - 4 * n : self.pos], dtype="<f4")


@dataclass
class DlibNetwork:
    """The descriptor's weights, in the order they are applied."""

    mean_rgb: np.ndarray
    convs: list[tuple[np.ndarray, np.ndarray, int, int]] = field(default_factory=list)  # weight OIHW, bias, stride, pad
    fc: np.ndarray | None = None  # (256, 128)


def read_network(path: Path) -> DlibNetwork:
    """Parse dlib's model file; raises ValueError where it is not the expected network."""
    data = path.read_bytes()
    layers: list[tuple[str, _Reader]] = []
    for m in _LAYER.finditer(data):
        r = _Reader(data, m.start())
        layers.append((r.str(), r))
    kinds = [name.rstrip("_0123456789") for name, _ in layers]
    residual = ["con", "affine", "con", "affine"]
    expected = ["input_rgb_image_sized", "con", "affine", "max_pool"]
    for _, stride in _BLOCKS:
        expected += residual + (["avg_pool"] if stride == 2 else [])
    expected += ["avg_pool", "fc"]
    if kinds != expected:
        raise ValueError(f"{path.name} is not dlib's face recognition ResNet v1 (layers: {' '.join(kinds[:12])} ...)")
    net = DlibNetwork(mean_rgb=np.array([layers[0][1].float() for _ in range(3)], dtype=np.float32))
    channels = 3
    pending: tuple | None = None
    for name, r in layers[1:]:
        if name.startswith("con_"):
            params = r.tensor()
            filters, rows, cols, stride, _, pad, _ = (r.int() for _ in range(7))
            size = filters * channels * rows * cols
            pending = (params[:size].reshape(filters, channels, rows, cols), params[size:], stride, pad)
            channels = filters
        elif name == "affine_":
            weight, bias, stride, pad = pending
            gamma, beta = np.split(r.tensor(), 2)
            folded = (weight * gamma[:, None, None, None]).astype(np.float32), (bias * gamma + beta).astype(np.float32)
            net.convs.append((*folded, stride, pad))
        elif name == "fc_2":
            outputs, inputs = r.int(), r.int()
            net.fc = r.tensor().reshape(inputs, outputs).astype(np.float32)
    return net


def build_onnx(net: DlibNetwork) -> bytes:
    """The network as a serialised ONNX model: input `chips` (n, 150, 150, 3) uint8 RGB
    aligned faces, scaled as dlib's input layer does ((pixel - mean) / 256, channels first);
    output (n, 128), dlib's descriptor (not normalised)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, weights = [], []

    def const(value: np.ndarray) -> str:
        name = f"w{len(weights)}"
        weights.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(kind: str, inputs: list[str], **attrs) -> str:
        out = f"{kind.lower()}{len(nodes)}"
        nodes.append(helper.make_node(kind, inputs, [out], **attrs))
        return out

    def conv(x: str, layer: tuple, size: int) -> tuple[str, int]:
        weight, bias, stride, pad = layer
        k = weight.shape[-1]
        y = op("Conv", [x, const(weight), const(bias)], kernel_shape=[k, k], strides=[stride] * 2, pads=[pad] * 4)
        return y, 1 + (size + 2 * pad - k) // stride

    def pad_to(x: str, channels: int, size: int, to_channels: int, to_size: int) -> str:
        if (channels, size) == (to_channels, to_size):
            return x
        extra = np.array([0, 0, 0, 0, 0, to_channels - channels, to_size - size, to_size - size], dtype=np.int64)
        return op("Pad", [x, const(extra)])

    pixels = op("Transpose", [op("Cast", ["chips"], to=TensorProto.FLOAT)], perm=[0, 3, 1, 2])
    x = op("Div", [op("Sub", [pixels, const(net.mean_rgb.reshape(1, 3, 1, 1))]), const(np.array(256.0, np.float32))])
    x, size = conv(x, net.convs[0], INPUT_SIZE)
    x = op("MaxPool", [op("Relu", [x])], kernel_shape=[3, 3], strides=[2, 2])
    size, channels = 1 + (size - 3) // 2, net.convs[0][0].shape[0]
    for i, (filters, stride) in enumerate(_BLOCKS):
        y, block_size = conv(x, net.convs[1 + 2 * i], size)
        y, block_size = conv(op("Relu", [y]), net.convs[2 + 2 * i], block_size)
        shortcut, shortcut_size = x, size
        if stride == 2:
            shortcut = op("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])
            shortcut_size = 1 + (size - 2) // 2
        out_size, out_channels = max(block_size, shortcut_size), max(filters, channels)
        y = pad_to(y, filters, block_size, out_channels, out_size)
        shortcut = pad_to(shortcut, channels, shortcut_size, out_channels, out_size)
        x, size, channels = op("Relu", [op("Add", [y, shortcut])]), out_size, out_channels
    x = op("MatMul", [op("Flatten", [op("GlobalAveragePool", [x])]), const(net.fc)])
    graph = helper.make_graph(
        nodes,
        "dlib_face_recognition_resnet_model_v1",
        [helper.make_tensor_value_info("chips", TensorProto.UINT8, ["n", INPUT_SIZE, INPUT_SIZE, 3])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["n", net.fc.shape[1]])],
        weights,
    )
    # opset 17 and its IR version 8, not the onnx package's newest: ONNX Runtime refuses a model
    # of a newer IR than it knows (1.31 reads up to 13, while onnx 1.23 writes 14)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return model.SerializeToString()


class DlibDescriptor:
    """dlib's face descriptor on ONNX Runtime (CPU), built from dlib's model file. With a
    `cache_dir`, the ONNX model is written there once (0.2 s to build, 0.03 s to load)."""

    def __init__(self, model_file: Path, cache_dir: Path | None = None, threads: int = 1):
        try:
            import onnxruntime
        except ImportError as exc:
            raise RuntimeError(
                "the dlib backend runs its descriptor on ONNX Runtime, which is not installed: "
                "pip install 'reid-pipeline[cpu]' (or [gpu], [insightface])"
            ) from exc

        def build() -> bytes:
            return build_onnx(read_network(model_file))

        stat = model_file.stat()
        cached = cached_file(cache_dir, f"{model_file.stem}-{stat.st_size}-{stat.st_mtime_ns}-{FORMAT}.onnx",
                             lambda path: path.write_bytes(build()))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        model = str(cached) if cached else build()
        self.session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.runtime = f"onnxruntime {onnxruntime.__version__} (CPU, {threads} thread{'s' if threads > 1 else ''})"

    def __call__(self, chips_rgb: np.ndarray) -> np.ndarray:
        """(n, 128) descriptors of (n, 150, 150, 3) uint8 RGB aligned chips."""
        return self.session.run(None, {"chips": np.ascontiguousarray(chips_rgb, dtype=np.uint8)})[0]


def cached_file(cache_dir: Path | None, name: str, write: Callable[[Path], object]) -> Path | None:
    """`cache_dir / name`, made by `write(path)` the first time (through a temporary file, so
    a process never reads a half-written one); None without a cache dir or where it cannot
    be written (the caller then builds in memory)."""
    if cache_dir is None:
        return None
    path = cache_dir / name
    if path.is_file():
        return path
    partial = path.with_name(f".{name}.{os.getpid()}.{threading.get_ident()}")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        write(partial)
        os.replace(partial, path)
    except (OSError, RuntimeError):  # RuntimeError: dlib's own writer
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        return None
    return path
