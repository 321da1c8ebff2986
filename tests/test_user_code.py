"""The user's own model, data set and loss by import path (tests/user_models/: code speedlab has never seen), each
through train, export, bench and profile: a 1-D ConvNet on C x L waveforms, a token model on int64 ids (one label
per sequence, and one per token), and a model returning a dict, trained with its own loss. Bad data sets and losses
are one clear error before any work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from speedlab import cli
from speedlab.data.build import describe
from tests.conftest import invoke

WAVES = ["model=custom", "model.target=tests.user_models.signals.Wave1d", "data=custom",
         "data.target=tests.user_models.signals.waveforms"]  # fmt: skip
TOKENS = ["model=custom", "model.target=tests.user_models.tokens.BagOfTokens", "data=custom",
          "data.target=tests.user_models.tokens.sequences"]  # fmt: skip
TAGGER = ["model=custom", "model.target=tests.user_models.tokens.Tagger", "data=custom",
          "data.target=tests.user_models.tokens.sequences", "data.kwargs.per_token=true"]  # fmt: skip
HEADS = ["model=custom", "model.target=tests.user_models.heads.TwoHeads", "data=custom",
         "data.target=tests.user_models.heads.blobs", "loss.target=tests.user_models.heads.two_head_loss",
         "loss.kwargs.recon_weight=0.01", "loss.output=logits"]  # fmt: skip
CASES = {"waveform C x L": WAVES, "token ids": TOKENS, "per-token labels": TAGGER, "dict outputs, own loss": HEADS}
TRAIN = ["trainer.epochs=4", "trainer.batch_size=32", "optim.lr=0.01"]
FAST_BENCH = ["bench.backends=[eager,onnxruntime]", "bench.batch_sizes=[1,8]", "bench.min_iters=3",
              "bench.min_time_s=0.02", "bench.warmup_iters=1", "bench.warmup_min_s=0.0"]  # fmt: skip


def _result(run: Path) -> dict:
    return json.loads((run / "result.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_the_users_code_trains_exports_benches_and_profiles(case, tmp_path):
    overrides = CASES[case]
    spec = describe(cli.compose("train", overrides).data)
    assert invoke("train", [*overrides, *TRAIN, f"hydra.run.dir={tmp_path / 'train'}"]) == 0
    trained = _result(tmp_path / "train")
    assert trained["final_val_acc"] > 80, trained["final_val_acc"]  # learnable data: a sensible accuracy
    data = [o for o in overrides if o.startswith("data")]
    weights = f"weights={tmp_path / 'train'}"
    assert invoke("export", [*data, weights, "export.formats=[onnx]", f"hydra.run.dir={tmp_path / 'export'}"]) == 0
    (artifact,) = _result(tmp_path / "export")["artifacts"]
    assert artifact["status"] == "ok" and artifact["val_acc"] == pytest.approx(trained["final_val_acc"], abs=1.0)
    graph_input = onnx.load(artifact["path"]).graph.input[0].type.tensor_type
    assert onnx.helper.tensor_dtype_to_np_dtype(graph_input.elem_type) == np.dtype(spec.input_dtype)
    # Bench rebuilds the model from the checkpoint alone and draws inputs as the data declares them (ids in range).
    assert invoke("bench", [weights, *FAST_BENCH, f"hydra.run.dir={tmp_path / 'bench'}"]) == 0
    benched = _result(tmp_path / "bench")
    assert benched["data_spec"]["input_dtype"] == spec.input_dtype
    assert [(r["backend"], r["batch_size"], r["status"]) for r in benched["rows"]] == [
        (b, n, "ok") for b in ("eager", "onnxruntime") for n in (1, 8)]  # fmt: skip
    assert all(r["artifact_parity"] == "ok" for r in benched["rows"] if r["backend"] == "onnxruntime")
    profile = ["profile.steps=1", "profile.warmup=1", "trainer.batch_size=8"]
    assert invoke("profile", [*overrides, *profile, f"hydra.run.dir={tmp_path / 'profile'}"]) == 0
    assert _result(tmp_path / "profile")["input_shape"] == [None, *spec.input_shape]


def test_a_loss_alone_is_what_validation_reports(tmp_path):
    """With the user's loss and no `loss.output` to read accuracy from, validation reports that loss."""
    heads = [o for o in HEADS if not o.startswith("loss.output")]
    assert invoke("train", [*heads, "trainer.epochs=1", f"hydra.run.dir={tmp_path}"]) == 0
    result = _result(tmp_path)
    assert result["metric"] == "val_loss" and result["final_val_loss"] > 0 and result["final_val_acc"] is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.target=tests.user_models.signals.triples"], "item 0 is a 3-item tuple, not an (input, target) pair"),
        (
            ["data.target=tests.user_models.nope.splits"],
            "data.target='tests.user_models.nope.splits': cannot import 'tests.user_models.nope': ModuleNotFoundError",
        ),
        (["data.target=tests.user_models.signals.waveforms", "data.kwargs.colour=red"], "unexpected keyword argument"),
        (["data.target=tests.user_models.signals.Wave1d"], "returned a Wave1d, not (train, val) datasets"),
        (["data.target=tests.user_models.signals.waveforms", "data.task=regression"], "needs float targets"),
        ([], "data=custom needs data.target=PKG.MODULE.ATTR"),
        (
            ["data.target=tests.user_models.heads.blobs", "loss.target=tests.user_models.heads.NOPE"],
            "module 'tests.user_models.heads' has no 'NOPE'",
        ),
    ],
    ids=["not a pair", "no module", "kwargs rejected", "not two splits", "wrong task", "no target", "bad loss"],
)
def test_bad_user_data_or_loss_is_one_clear_error_before_any_work(run_main, overrides, message):
    out = run_main("train", "data=custom", "model=mlp", *overrides)
    assert out.returncode == 1 and message in out.stderr, out.stderr
    assert out.stderr.count("speedlab: error") == 1 and "Traceback" not in out.stderr


def test_a_changed_model_source_is_reported_when_its_checkpoint_loads(tmp_path, monkeypatch):
    """The checkpoint records each user module's source hash; loading it after the code changed says so."""
    package = tmp_path / "mycode"
    package.mkdir()
    (package / "__init__.py").write_text("")
    net = package / "net.py"
    net.write_text("from torch import nn\n\ndef make():\n    return nn.Sequential(nn.Flatten(), nn.Linear(4, 4))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    run = ["model=custom", "model.target=mycode.net.make", "data=matrix_exp", "data.train_size=64",
           "data.val_size=16", "trainer.epochs=1", "trainer.batch_size=16"]  # fmt: skip
    assert invoke("train", [*run, f"hydra.run.dir={tmp_path / 'train'}"]) == 0
    net.write_text(net.read_text() + "\n# tuned\n")
    bench = ["bench.backends=[eager]", "bench.batch_sizes=[1]", "bench.min_iters=2", "bench.min_time_s=0.0"]
    assert invoke("bench", [f"weights={tmp_path / 'train'}", *bench, f"hydra.run.dir={tmp_path / 'bench'}"]) == 0
    notes = _result(tmp_path / "bench")["notes"]
    assert any("model.target=mycode.net.make: its module's source changed" in n for n in notes), notes


def _onnx_file(path: Path, dynamic: bool = True) -> Path:
    """A token model exported by hand, as a user would bring it: int64 ids in, logits out."""
    import torch

    from tests.user_models.tokens import BagOfTokens

    model = BagOfTokens(vocab=50).eval()
    ids = torch.randint(0, 50, (2, 12))
    shapes = ({0: torch.export.Dim("batch", min=1, max=1024)},) if dynamic else None
    torch.onnx.export(model, (ids,), str(path), dynamo=True, dynamic_shapes=shapes, input_names=["ids"])
    return path


def test_a_model_file_benches_as_it_is_and_inspects(tmp_path, run_main):
    """`bench source=FILE`: no PyTorch model; the input's shape and int64 dtype, and the ids' range (the embedding
    table's rows), come from the file; ONNX Runtime and OpenVINO run it at batch 1 and 8, the torch backends say
    why not. `inspect` reads the same file."""
    path = _onnx_file(tmp_path / "tokens.onnx")
    bench = ["bench.backends=[eager,onnxruntime,openvino]", *FAST_BENCH[1:]]
    assert invoke("bench", [f"source={path}", *bench, f"hydra.run.dir={tmp_path / 'bench'}"]) == 0
    result = _result(tmp_path / "bench")
    assert result["data_spec"]["input_shape"] == [12] and result["data_spec"]["input_dtype"] == "int64"
    assert result["data_spec"]["input_high"] == 50 and result["model_file"]["fixed_batch"] is None
    status = {(r["backend"], r["batch_size"]): r["status"] for r in result["rows"]}
    assert status == {("eager", 1): "skipped", ("eager", 8): "skipped", ("onnxruntime", 1): "ok",
                      ("onnxruntime", 8): "ok", ("openvino", 1): "ok", ("openvino", 8): "ok"}  # fmt: skip
    out = run_main("inspect", str(path), "--summary-only")
    assert out.returncode == 0 and "ids" in out.stdout and "int64" in out.stdout, out.stdout


def test_a_static_file_runs_its_one_batch_size(tmp_path):
    path = _onnx_file(tmp_path / "static.onnx", dynamic=False)
    bench = ["bench.backends=[onnxruntime]", *FAST_BENCH[1:]]
    assert invoke("bench", [f"source={path}", *bench, f"hydra.run.dir={tmp_path / 'bench'}"]) == 0
    rows = _result(tmp_path / "bench")["rows"]
    assert [(r["batch_size"], r["status"]) for r in rows] == [(1, "skipped"), (8, "skipped")]
    assert "takes batch 2 only" in rows[0]["reason"]


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        (b"not a model at all", [], "does not load as an ONNX model"),
        (None, ["weights=somewhere"], "give one (a trained run, or a model file)"),
        (None, ["bench.input_shape=[3,4]"], "bench.input_shape=[3, 4]: input ids of tokens.onnx has 1 dimensions"),
    ],
    ids=["not ONNX", "weights and source", "wrong input shape"],
)
def test_a_bad_model_file_is_one_clear_error(tmp_path, run_main, content, extra, message):
    path = tmp_path / "tokens.onnx"
    if content is None:
        _onnx_file(path)
    else:
        path.write_bytes(content)
    out = run_main("bench", f"source={path}", "bench.backends=[onnxruntime]", *extra)
    assert out.returncode == 1 and message in out.stderr, out.stderr
    assert out.stderr.count("speedlab: error") == 1 and "Traceback" not in out.stderr


def test_plugins_from_another_package_join_through_entry_points(tmp_path, run_cli):
    """A package's entry points (`speedlab.models`, `speedlab.bench.backends`) add a model family, selectable as
    `model=NAME` with its own keys, and a bench backend, with no file in speedlab's tree."""
    dist = tmp_path / "user_plugins-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: user-plugins\nVersion: 0.1\n")
    points = "[speedlab.models]\nuser_mlp = tests.user_models.plugin\n\n[speedlab.bench.backends]\n"
    (dist / "entry_points.txt").write_text(points + "user_eager = tests.user_models.plugin\n")
    env = {"PYTHONPATH": f"{tmp_path}:{Path(__file__).resolve().parent.parent}"}
    args = ["model=user_mlp", "model.width=12", "data=matrix_exp", "data.train_size=64", "data.val_size=16"]
    out = run_cli("bench", *args, "bench.backends=[user_eager,eager]", "bench.batch_sizes=[4]", "bench.min_iters=2",
                  "bench.min_time_s=0.0", f"hydra.run.dir={tmp_path / 'bench'}", env=env)  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = _result(tmp_path / "bench")
    assert result["family"] == "user_mlp" and result["model_config"]["width"] == 12
    assert [(r["backend"], r["status"]) for r in result["rows"]] == [("user_eager", "ok"), ("eager", "ok")]


def test_parity_runs_the_users_loss_on_both_sides(tmp_path):
    """The dict-output model's own loss drives both sides of a parity run (fused AdamW against the for-loop one)."""
    assert invoke("parity", [*HEADS, "trainer.epochs=1", "trainer.batch_size=64", f"hydra.run.dir={tmp_path}", "--a",
                             "optim.fused=false", "--b", "optim.fused=true"]) == 0  # fmt: skip
    result = _result(tmp_path)
    assert result["verdict"] in ("identical", "equivalent"), result["verdict"]


def test_image_only_levers_refuse_other_inputs_up_front(run_main):
    out = run_main("train", *WAVES, "trainer.channels_last=true")
    assert out.returncode == 1 and "needs image inputs" in out.stderr and "(2, 64)" in out.stderr, out.stderr
