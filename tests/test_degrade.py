"""The camera degradation used in training: random, seeded by torch, never a change of colour name."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from traffic_retrieval.training.degrade import Degradation, Degrade
from traffic_retrieval.training.entry import own_options
from traffic_retrieval.training.train import TrainJob, TrainSettings, upstream_args


def _red_car() -> Image.Image:
    arr = np.full((40, 90, 3), 230, np.uint8)
    arr[10:30, 10:80] = (205, 25, 30)
    return Image.fromarray(arr, "RGB")


def test_it_darkens_adds_noise_and_keeps_the_size():
    torch.manual_seed(0)
    img = _red_car()
    out = [Degrade(Degradation(probability=1.0))(img) for _ in range(20)]
    assert all(o.size == img.size and o.mode == "RGB" for o in out)
    means = [np.asarray(o, np.float32).mean() for o in out]
    assert np.mean(means) < np.asarray(img, np.float32).mean() - 20  # low light on average
    assert len({round(m, 1) for m in means}) > 15  # every draw differs


def test_a_red_car_stays_red():
    torch.manual_seed(1)
    for _ in range(30):
        arr = np.asarray(Degrade(Degradation(probability=1.0))(_red_car()), np.float32)[14:26, 20:70].mean((0, 1))
        assert arr[0] > 1.5 * arr[1] and arr[0] > 1.5 * arr[2]  # no hue shift: red is still the strongest channel


def test_probability_zero_is_the_identity_and_torch_seeds_the_draws():
    img = _red_car()
    assert Degrade(Degradation(probability=0.0))(img) is img
    torch.manual_seed(7)
    a = np.asarray(Degrade(Degradation(probability=1.0))(img))
    torch.manual_seed(7)
    b = np.asarray(Degrade(Degradation(probability=1.0))(img))
    np.testing.assert_array_equal(a, b)


def test_train_passes_degrade_to_the_entry_point_which_takes_it_out():
    args = upstream_args(TrainJob("train.csv", square_pad=False), TrainSettings(degrade=0.7, precision="fp32"), None, "cpu")
    assert args[args.index("--degrade") + 1] == "0.7"
    rest, own = own_options(args)
    assert own.degrade == 0.7 and not own.square_pad and "--degrade" not in rest and "--no-square-pad" not in rest
    assert rest[:2] == ["--dataset-type", "csv"]
