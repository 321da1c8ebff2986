"""`openvino`: the model converted by OpenVINO (`openvino.convert_model` straight from the torch module) and compiled
for the CPU, an optional extra (requirements-openvino.txt).

The inference precision is pinned to the cell's (`f32` for fp32, `bf16` for bf16) and read back from the compiled
model: OpenVINO's CPU plugin otherwise picks bf16 by itself on CPUs that have it (AMX, AVX-512 BF16), which would put
a bf16 number in an fp32 row, so a cell whose compiled precision differs from the one asked for fails instead. The
performance hint (`bench.openvino.hint`, LATENCY by default), streams and threads are recorded with each cell as
the compiled model reports them. Conversion and compilation are the cell's `setup_s`. OpenVINO's documentation
does not list AMD EPYC among its supported processors; where it cannot run here, the cell says why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from speedlab.bench.backends import BenchSetup, Prepared, register
from speedlab.config import Choice, at_least

EXTRA = "requirements-openvino.txt"
INFERENCE_PRECISION = {"fp32": "f32", "bf16": "bf16"}


class Hint(Choice):
    LATENCY = "LATENCY"
    THROUGHPUT = "THROUGHPUT"


@dataclass
class OpenvinoOptions:
    """`bench.openvino`: the CPU plugin's performance hint, streams and threads."""

    hint: Hint = Hint.LATENCY  # PERFORMANCE_HINT: LATENCY or THROUGHPUT
    threads: int | None = None  # INFERENCE_NUM_THREADS, all streams together; None: OpenVINO's choice
    # NUM_STREAMS: how many requests the CPU plugin runs at once, the threads split among them (streams=2 threads=2:
    # 2 streams of 1 thread, against 1 of 2); None: the hint's choice. One request at a time uses one stream's threads.
    streams: int | None = None

    def __post_init__(self) -> None:
        at_least("bench.openvino.threads", self.threads, 1, optional=True)
        at_least("bench.openvino.streams", self.streams, 1, optional=True)


@register("openvino", OpenvinoOptions)
class OpenVino:
    name = "openvino"
    concurrent_requests = True  # one infer request per request in flight, as benchmark_app's -nireq
    runs_files = ("onnx",)  # `bench source=FILE` of these kinds, as they are

    def unsupported(self, setup: BenchSetup, precision: str) -> str | None:
        if setup.device.type != "cpu":
            return "speedlab runs OpenVINO on the CPU (device=cpu); on a GPU use onnxruntime or tensorrt"
        if precision not in INFERENCE_PRECISION:
            return f"openvino runs fp32 and bf16 here, not {precision}"
        try:
            import openvino  # noqa: F401 - installed at all?
        except ImportError:
            return f"openvino is not installed (an optional extra: pip install -r {EXTRA})"
        return self.refuse(setup, precision)

    def refuse(self, setup: BenchSetup, precision: str) -> str | None:
        """Why this CPU cannot run `precision` in OpenVINO (a request the sweep refuses when it names openvino
        itself), or None."""
        if precision != "bf16":
            return None
        import openvino as ov

        capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if "BF16" in capabilities:
            return None
        return (f"this CPU has no bf16 in OpenVINO's CPU plugin (it reports {', '.join(capabilities)}; bf16 needs "
                "AVX512_BF16 or AMX)")  # fmt: skip

    def prepare(self, setup: BenchSetup, batch_size: int, precision: str) -> Prepared:
        import openvino as ov

        settings = setup.options_for(self.name)
        images = setup.inputs(batch_size)
        config = {"PERFORMANCE_HINT": str(settings.hint), "INFERENCE_PRECISION_HINT": INFERENCE_PRECISION[precision]}
        if settings.threads:
            config["INFERENCE_NUM_THREADS"] = settings.threads
        if settings.streams:
            config["NUM_STREAMS"] = settings.streams
        start = time.perf_counter()
        if setup.file is not None:  # `bench source=FILE`: the ONNX file itself, at this batch's shape
            converted = ov.convert_model(str(setup.file.path), input=[tuple(images.shape)])
        else:
            converted = ov.convert_model(setup.model, example_input=images, input=[tuple(images.shape)])
        compiled = ov.Core().compile_model(converted, "CPU", config)
        request = compiled.create_infer_request()
        setup_s = time.perf_counter() - start
        ran = _type_name(compiled.get_property("INFERENCE_PRECISION_HINT"))
        if ran != INFERENCE_PRECISION[precision]:
            raise RuntimeError(f"OpenVINO compiled the {precision} cell to run in {ran}, not the "
                               f"{INFERENCE_PRECISION[precision]} it was pinned to")  # fmt: skip
        array = images.cpu().numpy()
        notes = {
            "openvino": ov.__version__,
            "hint": str(settings.hint),
            "inference_precision": ran,
            "threads": compiled.get_property("INFERENCE_NUM_THREADS"),
            "streams": int(compiled.get_property("NUM_STREAMS")),
        }

        def requests(n: int) -> list:
            own = [compiled.create_infer_request() for _ in range(n)]
            return [lambda r=r: r.infer({0: array}) for r in own]

        return Prepared(run=lambda: request.infer({0: array}), setup_s=setup_s, notes=notes, requests=requests)


def _type_name(element_type) -> str:
    """OpenVINO's element type as its short name ("f32", "bf16"), the spelling of the hint that pinned it."""
    return element_type.get_type_name() if hasattr(element_type, "get_type_name") else str(element_type)
