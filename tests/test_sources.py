"""The data sources as plug-ins: every registered source declares what its batches hold; the small sources live on
the device as whole tensors; MNIST's IDX files and every way they can be broken; digits; matrix exponentials."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from speedlab import cli
from speedlab.data import idx, sources
from speedlab.data.build import build_data, describe
from speedlab.data.fake import write_fake_mnist, write_fake_tinyimagenet
from speedlab.data.loaders import TensorLoader
from speedlab.data.sources import matrix_exp, mnist
from speedlab.errors import DataError, SpeedlabError
from tests.conftest import FAKE_CLASSES

TIN = "tiny-imagenet-200"


def imagefolder(root: Path) -> Path:
    """A 3-class ImageFolder made from a fake TinyImageNet's JPEGs."""
    src = root / "src"
    write_fake_tinyimagenet(src, classes=3, train_per_class=4, val_per_class=2)
    base = root / "folder"
    for split in ("train", "val"):
        for i, wnid in enumerate(sorted(p.name for p in (src / TIN / "train").iterdir())):
            (base / split / f"cls{i}").mkdir(parents=True)
            pattern = f"train/{wnid}/images/*.JPEG" if split == "train" else "val/images/*.JPEG"
            for img in sorted((src / TIN).glob(pattern))[:2]:
                shutil.copy(img, base / split / f"cls{i}" / img.name)
    return base


def source_overrides(name: str, tmp_path: Path, fake_tin: Path, fake_mnist: Path) -> list[str]:
    """Small settings for each source, with the files it reads; a source missing here is tested as it comes."""
    small = ["data.train_size=48", "data.val_size=20"]
    return {
        "tinyimagenet": [f"data.root={fake_tin}", "data.resolution=32", "data.workers=0"],
        "imagefolder": lambda: [f"data.root={imagefolder(tmp_path)}", "data.resolution=32", "data.workers=0"],
        "synthetic": [*small, "data.num_classes=4", "data.image_size=32", "data.resolution=32"],
        "mnist": [f"data.root={fake_mnist}", *small],
        "digits": small,
        "matrix_exp": small,
        # The user's own data set by import path: int64 token ids with a label per token.
        "custom": ["data.target=tests.user_models.tokens.sequences", "data.kwargs.per_token=true", *small],
    }.get(name, [])


@pytest.mark.parametrize("name", sources.names())
def test_every_source_delivers_what_it_declares(name, tmp_path, fake_tin, fake_mnist):
    overrides = source_overrides(name, tmp_path, fake_tin, fake_mnist)
    overrides = overrides() if callable(overrides) else overrides
    cfg = cli.compose("train", [f"data={name}", *overrides]).data
    spec = describe(cfg)
    data = build_data(cfg, seed=0, batch_size=4)
    assert data.spec == spec  # loading found what the cheap declaration said
    for loader in (data.train, data.val):
        x, y = next(iter(loader.epoch(0)))
        assert tuple(x.shape[1:]) == spec.input_shape and x.dtype == getattr(torch, spec.input_dtype)
        assert tuple(y.shape) == (len(x), *spec.target_shape)
        if spec.task == "classification":
            assert y.dtype == torch.int64 and int(y.max()) < spec.num_outputs
        else:
            assert y.dtype == torch.float32
        if spec.integer_inputs:
            assert int(x.min()) >= 0 and int(x.max()) < spec.input_high
    assert data.record()["spec"]["input_shape"] == list(spec.input_shape)


@pytest.mark.parametrize("name", ["mnist", "digits", "matrix_exp"])
def test_small_sources_live_on_the_device_as_whole_tensors(name, fake_mnist):
    overrides = [f"data.root={fake_mnist}"] if name == "mnist" else []
    data = build_data(cli.compose("train", [f"data={name}", *overrides]).data, seed=0, batch_size=16)
    assert isinstance(data.train, TensorLoader) and isinstance(data.val, TensorLoader)
    assert data.info["feed"] == "device"


def test_a_full_batch_is_the_tensors_themselves():
    cfg = cli.compose("train", ["data=matrix_exp", "data.train_size=64", "data.val_size=32"]).data
    data = build_data(cfg, seed=0, batch_size=64, eval_batch_size=32)
    (x, y), (x2, _) = next(iter(data.train.epoch(0))), next(iter(data.train.epoch(1)))
    assert x is data.train.inputs and y is data.train.targets and x2 is x  # no gather, no copy


def test_tensor_batches_follow_the_shared_batch_order():
    cfg = cli.compose("train", ["data=matrix_exp", "data.train_size=64", "data.val_size=16"]).data
    a = [x for x, _ in build_data(cfg, seed=1, batch_size=16).train.epoch(0)]
    b = [x for x, _ in build_data(cfg, seed=1, batch_size=16).train.epoch(0)]
    c = [x for x, _ in build_data(cfg, seed=2, batch_size=16).train.epoch(0)]
    assert len(a) == 4 and all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert not all(torch.equal(p, q) for p, q in zip(a, c, strict=True))


# --- matrix exponentials ----------------------------------------------------------------------------------------


def test_matrix_exp_targets_are_the_exponentials_and_reproducible():
    x, y = matrix_exp.generate(100, 2, data_seed=0, split="train")
    assert x.shape == y.shape == (100, 4)
    torch.testing.assert_close(y, torch.linalg.matrix_exp(x.double().view(100, 2, 2)).view(100, 4).float())
    x2, _ = matrix_exp.generate(100, 2, data_seed=0, split="train")
    xv, _ = matrix_exp.generate(100, 2, data_seed=0, split="val")
    assert torch.equal(x, x2) and not torch.equal(x, xv)
    spec = describe(cli.compose("train", ["data=matrix_exp", "data.matrix_size=3"]).data)
    assert (spec.task, spec.input_shape, spec.num_outputs) == ("regression", (9,), 9)


# --- digits -----------------------------------------------------------------------------------------------------


def test_digits_split_is_fixed_and_disjoint_with_the_sources_own_statistics():
    cfg = cli.compose("train", ["data=digits"]).data
    spec = describe(cfg)
    assert spec.input_shape == (1, 28, 28) and spec.num_outputs == 10 and 0.1 < spec.mean[0] < 0.5
    data = build_data(cfg, seed=0, batch_size=32)
    assert data.train.plan.num_samples + data.val.plan.num_samples == 1797
    assert data.val.plan.num_samples == round(0.2 * 1797)
    x = data.train.inputs
    assert abs(float(x.mean())) < 0.1 and 0.8 < float(x.std()) < 1.2  # normalised once, on load


def test_digits_augmentation_crops_gently_and_never_flips():
    cfg = cli.compose("train", ["data=digits", "data.augment=true"]).data
    assert cfg.crop_scale == [0.85, 1.0] and cfg.flip is False
    data = build_data(cfg, seed=0, batch_size=32)
    transform = data.train.transform
    assert transform is not None and transform.recipe.crop_scale == (0.85, 1.0) and transform.recipe.flip is False
    assert data.val.transform is None  # evaluation sees the images as they are


@pytest.mark.parametrize("scale", ["[0.0,1.0]", "[0.9,0.5]", "[0.5]", "[0.5,1.5]"])
def test_a_bad_crop_scale_is_refused(scale):
    with pytest.raises(SpeedlabError, match=r"data.crop_scale=.*0 < low <= high <= 1"):
        describe(cli.compose("train", ["data=synthetic", f"data.crop_scale={scale}"]).data)


# --- MNIST's IDX files ------------------------------------------------------------------------------------------


def test_mnist_reads_plain_and_gzipped_files_in_a_folder_or_torchvisions_layout(fake_mnist, tmp_path):
    cfg = cli.compose("train", ["data=mnist", f"data.root={fake_mnist}"]).data
    data = build_data(cfg, seed=0, batch_size=10)
    assert (data.train.plan.num_samples, data.val.plan.num_samples) == (200, 50)
    assert data.spec.input_shape == (1, 28, 28) and data.classes == [str(i) for i in range(10)]
    raw = tmp_path / "tv" / "MNIST" / "raw"  # torchvision's download layout, unpacked
    raw.mkdir(parents=True)
    for gz in fake_mnist.glob("*.gz"):
        (raw / gz.stem).write_bytes(gzip.decompress(gz.read_bytes()))
    again = build_data(cli.compose("train", ["data=mnist", f"data.root={tmp_path / 'tv'}"]).data, seed=0,
                       batch_size=10)  # fmt: skip
    torch.testing.assert_close(again.train.inputs, data.train.inputs, rtol=0, atol=0)


def test_idx_round_trip_and_header_checks(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        idx.write(tmp_path / name, array)
        np.testing.assert_array_equal(idx.read(tmp_path / name, ndim=3), array)
    with pytest.raises(DataError, match="holds a 3-dimensional array, expected 1 dimensions for labels"):
        idx.read(tmp_path / "a-idx3-ubyte", ndim=1)


def broken_copy(fake_mnist: Path, tmp_path: Path, stem: str, damage) -> tuple[Path, Path]:
    """A copy of the fake MNIST with one file (plain, unpacked) replaced by `damage(its bytes)`."""
    root = tmp_path / "broken"
    root.mkdir()
    for gz in fake_mnist.glob("*.gz"):
        if gz.stem != stem:
            shutil.copy(gz, root / gz.name)
    victim = root / stem
    victim.write_bytes(damage(gzip.decompress((fake_mnist / f"{stem}.gz").read_bytes())))
    return root, victim


@pytest.mark.parametrize(
    ("stem", "damage", "message"),
    [
        ("train-images-idx3-ubyte", lambda b: b[: len(b) // 2], "truncated; download it again"),
        ("train-images-idx3-ubyte", lambda b: b"\x1f\x8b\x08\x00" + b[4:], "not an IDX file of unsigned bytes"),
        ("t10k-labels-idx1-ubyte", lambda b: b[:2], "too short for an IDX header"),
        # the header says 49 labels, with 49 of them: a consistent file that disagrees with its image file
        ("t10k-labels-idx1-ubyte", lambda b: b[:4] + (49).to_bytes(4, "big") + b[8:-1], "holds 50 images but"),
        ("train-labels-idx1-ubyte", lambda b: b[:-1] + b"\x0b", "label 11 is outside MNIST's classes 0-9"),
    ],
)
def test_a_broken_mnist_file_is_named_with_what_is_wrong(fake_mnist, tmp_path, stem, damage, message):
    root, victim = broken_copy(fake_mnist, tmp_path, stem, damage)
    cfg = cli.compose("train", ["data=mnist", f"data.root={root}"]).data
    with pytest.raises(DataError) as err:
        build_data(cfg, seed=0, batch_size=10)
    assert message in str(err.value) and victim.name in str(err.value), str(err.value)


def test_a_corrupt_gzip_and_a_missing_mnist_say_what_to_do(fake_mnist, tmp_path):
    root = tmp_path / "gz"
    shutil.copytree(fake_mnist, root)
    (root / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08\x00 not gzip at all")
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: cannot read it"):
        build_data(cli.compose("train", ["data=mnist", f"data.root={root}"]).data, seed=0, batch_size=10)
    with pytest.raises(DataError) as err:
        build_data(cli.compose("train", ["data=mnist", f"data.root={tmp_path / 'none'}"]).data, seed=0,
                   batch_size=10)  # fmt: skip
    assert "MNIST not found" in str(err.value) and "data synth --kind mnist" in str(err.value)
    assert str(tmp_path / "none" / "MNIST" / "raw") in str(err.value)


def test_data_synth_writes_mnist_files_the_source_reads(run_main, tmp_path):
    out = run_main("data", "synth", "--kind", "mnist", "--out", str(tmp_path / "m"), "--train", "30", "--val", "10",
                  "--plain")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == sorted(sum(mnist.FILES.values(), ()))
    write_fake_mnist(tmp_path / "n", train=30, val=10)
    with pytest.raises(SpeedlabError, match="already exists"):
        write_fake_mnist(tmp_path / "n", train=30, val=10)


# --- TinyImageNet's root ----------------------------------------------------------------------------------------


def test_tinyimagenet_root_may_be_the_dataset_folder_itself(fake_tin):
    for root in (fake_tin, fake_tin / TIN):
        spec = describe(cli.compose("train", [f"data.root={root}", "data.resolution=32"]).data)
        assert spec.num_outputs == FAKE_CLASSES and spec.input_shape == (3, 32, 32)


def test_tinyimagenet_without_files_declares_the_official_shape_for_bench(tmp_path):
    spec = describe(cli.compose("bench", [f"data.root={tmp_path}"]).data)
    assert spec.num_outputs == 200 and spec.input_shape == (3, 224, 224)
