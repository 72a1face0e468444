"""A recipe is the whole recipe: preprocessing, initialisation, optimiser, learning rate and
schedule, batch size and epochs, each checked against its definition and recorded per run."""
import inspect
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from experiments.methods import TAGI_INIT, BpMethod
from experiments.settings import SettingsError, validate
from experiments.train import run
from run_support import ROOT, config
from tagi import bp, nn
from tagi.data import PREPROCESS, Batches, preprocess_stats
from tagi.models import architecture, bp_network

RECIPES = ROOT / "experiments" / "conf" / "recipe"


# --- preprocessing ----------------------------------------------------------------------------

DEFINITIONS = {                       # pixel x in 0..255 -> the value fed, as each source writes it
    "standardize": lambda x, c: (x / 255 - (0.4914, 0.4822, 0.4465)[c]) / (0.2470, 0.2435, 0.2616)[c],
    "normalize_half": lambda x, c: (x / 255 - 0.5) / 0.5,
    "unit_range": lambda x, c: x / 255,
    "centered_unit": lambda x, c: x / 255 - 0.5,
}


@pytest.mark.parametrize("name", sorted(PREPROCESS))
def test_each_preprocessing_feeds_what_its_definition_says(name):
    assert set(PREPROCESS) == set(DEFINITIONS)
    images = np.arange(3 * 3 * 2 * 128, dtype=np.int64).reshape(3, 3, 2, 128) % 256    # every pixel value
    images = images.astype(np.uint8)
    mean, std = preprocess_stats(name)
    x, _ = next(iter(Batches(images, np.zeros(3), 3, mean=mean, std=std)))
    want = np.stack([DEFINITIONS[name](images[:, c].astype(np.float64), c) for c in range(3)], axis=1)
    np.testing.assert_allclose(x, want, rtol=1e-6, atol=1e-6)


def test_preprocessing_ranges():
    """The named ranges: [-1, 1], [0, 1] and [-0.5, 0.5] at pixels 0 and 255."""
    for name, (low, high) in {"normalize_half": (-1, 1), "unit_range": (0, 1), "centered_unit": (-0.5, 0.5)}.items():
        mean, std = preprocess_stats(name)
        x, _ = next(iter(Batches(np.array([[[[0, 255]]] * 3], np.uint8), [0], 1, mean=mean, std=std)))
        np.testing.assert_allclose(x[0, :, 0], [[low, high]] * 3, atol=1e-6)


def test_an_unknown_preprocessing_is_refused_naming_the_setting_and_the_names(tmp_path):
    with pytest.raises(ValueError, match=r"unknown preprocessing 'zca'; one of \('standardize'"):
        preprocess_stats("zca")
    cfg = config("data.preprocess=zca", f"data.root={tmp_path / 'nothing'}", "progress=false")
    with pytest.raises(SettingsError, match=r"data\.preprocess must be one of \('standardize', "
                                            r"'normalize_half', 'unit_range', 'centered_unit'\), got 'zca'"):
        run(cfg, tmp_path / "run")


# --- initialisation ---------------------------------------------------------------------------

def built(layer, in_shape, seed=0):
    bp.Sequential(layer, input_shape=in_shape, seed=seed)
    return np.asarray(layer.weight.value, dtype=np.float64), np.asarray(layer.bias.value, dtype=np.float64)


# (layer, input shape, fan_in, fan_out): a conv's fans count its k*k window, a Linear's its features
LAYERS = [(lambda init: bp.Conv2d(16, 32, 3, init_method=init), (16, 8, 8), 16 * 9, 32 * 9),
          (lambda init: bp.Linear(400, 120, init_method=init), (400,), 400, 120)]


@pytest.mark.parametrize("make, in_shape, fan_in, fan_out", LAYERS, ids=["conv", "linear"])
def test_torch_default_is_uniform_in_one_over_sqrt_fan_in(make, in_shape, fan_in, fan_out):
    """Weights and biases U(-a, a), a = 1/sqrt(fan_in): within the bound, reaching it, with the
    uniform's standard deviation a/sqrt(3) and mean 0 (fixed seed; tolerances > 5 standard errors)."""
    w, b = built(make("torch_default"), in_shape)
    a = 1 / math.sqrt(fan_in)
    for values in (w, b):
        assert np.abs(values).max() <= a
    assert np.abs(w).max() > 0.99 * a and np.abs(b).max() > 0.5 * a and np.ptp(b) > 0
    n = w.size                                  # sd of a uniform's sample sd: sd * sqrt(0.8 / (4 n))
    assert abs(w.std() - a / math.sqrt(3)) < 5 * (a / math.sqrt(3)) * math.sqrt(0.8 / (4 * n))
    assert abs(w.mean()) < 5 * (a / math.sqrt(3)) / math.sqrt(n)


@pytest.mark.parametrize("make, in_shape, fan_in, fan_out", LAYERS, ids=["conv", "linear"])
def test_glorot_uniform_uses_fan_in_and_fan_out_and_zero_biases(make, in_shape, fan_in, fan_out):
    w, b = built(make("glorot_uniform"), in_shape)
    a = math.sqrt(6 / (fan_in + fan_out))
    assert np.abs(w).max() <= a and np.abs(w).max() > 0.99 * a
    n = w.size
    assert abs(w.std() - a / math.sqrt(3)) < 5 * (a / math.sqrt(3)) * math.sqrt(0.8 / (4 * n))
    assert abs(w.mean()) < 5 * (a / math.sqrt(3)) / math.sqrt(n)
    np.testing.assert_array_equal(b, 0)


def test_the_network_setting_reaches_every_layer_with_parameters():
    """bp_network(init_method=...) initialises every Conv2d and Linear that names no rule itself;
    the same seed draws the same weights, and a rule outside INIT_METHODS is refused by name."""
    spec = architecture("keras_tutorial")
    spec["layers"][-1]["init_method"] = "He"                    # the last layer keeps its own rule
    net = bp_network(spec, 10, init_method="glorot_uniform", seed=3)
    rules = [layer.init_method for layer in net.layers if layer.has_params]
    assert rules == ["glorot_uniform"] * 4 + ["He"]
    state = net.state_dict()
    assert all(not state[f"{i}.bias"].any() for i, layer in enumerate(net.layers[:-1]) if layer.has_params)
    assert state[f"{len(net.layers) - 1}.bias"].any()
    again = bp_network(spec, 10, init_method="glorot_uniform", seed=3).state_dict()
    assert all(np.array_equal(again[k], v) for k, v in state.items())
    assert bp.INIT_METHODS == ("He", "Xavier", "torch_default", "glorot_uniform")
    with pytest.raises(ValueError, match=r"init_method must be one of \('He', 'Xavier', 'torch_default', "
                                         r"'glorot_uniform'\), got 'lecun'"):
        bp_network(spec, 10, init_method="lecun")


def test_tagi_init_is_what_tagi_layers_draw_by():
    for layer in (nn.Linear, nn.Conv2d):
        assert inspect.signature(layer.__init__).parameters["init_method"].default == TAGI_INIT


def test_an_unknown_init_setting_is_refused_by_its_key(tmp_path):
    cfg = config("method=bp", "method.init=lecun", f"data.root={tmp_path / 'nothing'}", "progress=false")
    with pytest.raises(SettingsError, match=r"method\.init must be one of .*got 'lecun'"):
        run(cfg, tmp_path / "run")


# --- the exponential schedule -----------------------------------------------------------------

def test_exponential_schedule_multiplies_by_gamma_each_epoch():
    """lr * gamma ** (epoch - 1) for 1-based epochs: Keras' lr * gamma ** epoch over its 0-based
    epoch index, the first epoch at lr itself."""
    schedule = bp.make_schedule("exponential", 5e-3, gamma=0.9)
    keras = [5e-3 * 0.9 ** index for index in range(10)]
    np.testing.assert_allclose([schedule(epoch) for epoch in range(1, 11)], keras, rtol=1e-15)
    assert schedule(1) == 5e-3
    with pytest.raises(ValueError, match=r"gamma .*got 1.5"):
        bp.make_schedule("exponential", 0.1, gamma=1.5)


def test_the_4conv_recipe_trains_at_the_sources_rates(tmp_path):
    cfg = validate(config("model=cnn4_leaky_dropout", "method=bp", "train.epochs=3"))
    method = BpMethod(cfg, architecture("cnn4_leaky_dropout"), 10)
    assert isinstance(method.optimizer, bp.Adamax)
    np.testing.assert_allclose([method.schedule(e) for e in (1, 2, 3)], [5e-3, 4.5e-3, 4.05e-3])


# --- the recipes ------------------------------------------------------------------------------

# model -> (preprocess, init, optimizer, lr, momentum, schedule, batch size, epochs), from the sources
SOURCES = {
    "fc_3072_128": ("normalize_half", "torch_default", "sgd", 0.01, 0.0, "constant", 100, 5),
    "cnn_32_64": ("normalize_half", "torch_default", "sgd", 0.01, 0.0, "constant", 100, 10),
    "pytorch_tutorial": ("normalize_half", "torch_default", "sgd", 0.001, 0.9, "constant", 4, 2),
    "keras_tutorial": ("unit_range", "glorot_uniform", "adam", 0.001, None, "constant", 32, 10),
    "cnn4_leaky_dropout": ("centered_unit", "glorot_uniform", "adamax", 0.005, None, "exponential", 32, 10),
    "pytorch_tutorial_width": ("normalize_half", "torch_default", "sgd", 0.0015, 0.9, "constant", 4, 3),
    "pytorch_tutorial_3conv": ("normalize_half", "torch_default", "sgd", 0.002, 0.9, "constant", 4, 4),
    "pytorch_tutorial_4conv": ("normalize_half", "torch_default", "sgd", 0.005, 0.9, "constant", 4, 4),
}


def test_every_bp_recipe_is_listed_and_cites_its_source():
    """Each recipe/<model>_bp.yaml sets the whole recipe itself (not the method's defaults) and
    names its source document and lines; each has a TAGI recipe of the same epochs."""
    assert sorted(p.name[:-len("_bp.yaml")] for p in RECIPES.glob("*_bp.yaml")) == sorted(SOURCES)
    for model in SOURCES:
        text = (RECIPES / f"{model}_bp.yaml").read_text()
        for key in ("preprocess:", "init:", "optimizer:", "schedule:", "epochs:", "batch_size:"):
            assert key in text, (model, key)
        assert re.search(r"source document\s+#?\s*00\d_[0-9a-f]{16}\.txt", text), model
        assert re.search(r"lines? \d+", text), model
        assert (RECIPES / f"{model}_tagi.yaml").exists(), model


@pytest.mark.parametrize("model", sorted(SOURCES))
def test_each_recipe_composes_to_its_sources_settings(model):
    width = ["model.width=90"] if model == "pytorch_tutorial_width" else []
    cfg = validate(config(f"model={model}", "method=bp", *width, "train.epochs=${method.epochs}"))
    opt, sched = cfg.method.optimizer, cfg.method.schedule
    got = (cfg.data.preprocess, cfg.method.init, opt.name, opt.lr,
           opt.momentum if opt.name == "sgd" else None, sched.name, cfg.train.batch_size, cfg.train.epochs)
    assert got == SOURCES[model]
    assert opt.weight_decay == 0
    if sched.name == "exponential":
        assert sched.gamma == 0.9
    tagi = validate(config(f"model={model}", "method=tagi", *width, "train.epochs=${method.epochs}"))
    assert tagi.data.preprocess == "standardize" and tagi.train.epochs == SOURCES[model][-1]
    assert tagi.train.batch_size == 16


def test_the_width_network_needs_its_width(tmp_path):
    cfg = config("model=pytorch_tutorial_width", f"data.root={tmp_path / 'nothing'}", "progress=false")
    with pytest.raises(SettingsError, match=r"model\.width must be set for model 'pytorch_tutorial_width'"):
        run(cfg, tmp_path / "run")
    cfg = config("model=pytorch_tutorial", "+model.width=30", f"data.root={tmp_path / 'nothing'}")
    with pytest.raises(SettingsError, match=r"model\.width is for models built from it "
                                            r"\(pytorch_tutorial_width\); model 'pytorch_tutorial' takes none"):
        run(cfg, tmp_path / "run")
    cfg = config("model=pytorch_tutorial_width", "model.width=0", f"data.root={tmp_path / 'nothing'}")
    with pytest.raises(SettingsError, match=r"model\.width must be null or a finite number >= 1, got 0"):
        run(cfg, tmp_path / "run")


# --- recorded in every run --------------------------------------------------------------------

@pytest.mark.parametrize("overrides, recorded", [
    (["method=tagi"], ("standardize", "He", None)),
    (["method=bp", "model=fc_3072_128"], ("normalize_half", "torch_default", None)),
    (["method=bp", "model=pytorch_tutorial_width", "model.width=30"], ("normalize_half", "torch_default", 30)),
])
def test_each_run_records_its_preprocessing_initialisation_and_width(cifar_root, tmp_path, overrides, recorded):
    run(config(f"data.root={cifar_root}", *overrides, "data.train_limit=8", "data.test_limit=8",
               "train.batch_size=8", "backend=numpy", "progress=false"), tmp_path / "run")
    summary = json.loads(Path(tmp_path / "run" / "summary.json").read_text())
    assert (summary["preprocess"], summary["init"], summary["width"]) == recorded
