"""The main job's settings: types from OmegaConf structured configs, ranges declared beside them.

``validate(cfg)`` merges the composed Hydra config onto the schema below (``Config``,
with the schema of the method that ``method.name`` picks), so OmegaConf refuses a
value of the wrong type (the YAML ``abc`` for a number, a list for a scalar, an
unknown key) with its full key; then every field declared with ``ranged(...)`` or
``choice(...)`` is checked. A new setting gets its check by its declaration here.
Defaults live in the YAML files only (every field here is MISSING until merged).
"""
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, List, Optional

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tagi.backends import CHOICES as BACKENDS, DTYPES
from tagi.bp import INIT_METHODS, OPTIMIZERS, SCHEDULES
from tagi.checks import check_choice, check_number
from tagi.data import PREPROCESS
from tagi.models import PARAMETERISED


class SettingsError(ValueError):
    """A setting has the wrong type or lies outside its range; the message names its key."""


def ranged(low=None, high=None, low_open=False, high_open=False, default=MISSING):
    """A numeric field (or list of numbers) bounded by ``low``/``high``; null is allowed where
    the type is Optional. A bound given as a string names a sibling field (its value is the bound).
    ``default`` is for a field that only some configs of its group set (left MISSING otherwise)."""
    bounds = {"low": low, "high": high, "low_open": low_open, "high_open": high_open}
    return field(default=default, metadata={"range": bounds})


def choice(*choices):
    """A string field restricted to ``choices``."""
    return field(default=MISSING, metadata={"choices": choices})


@dataclass
class Data:
    name: str = choice("cifar10")
    root: str = MISSING
    num_classes: int = ranged(low=2)
    preprocess: str = choice(*PREPROCESS)
    train_limit: Optional[int] = ranged(low=1)
    test_limit: Optional[int] = ranged(low=1)
    val_size: int = ranged(low=0)         # below the training images: _check_val_size
    split_seed: int = ranged(low=0)
    verify_md5: bool = MISSING
    download: bool = MISSING
    url: str = MISSING
    md5: str = MISSING


@dataclass
class Model:
    name: str = MISSING
    input_shape: Optional[List[int]] = ranged(low=1)
    layers: Optional[List[Any]] = None
    # the parameter of a parameterised architecture (tagi.models.PARAMETERISED); null for the others
    width: Optional[int] = ranged(low=1, default=None)


@dataclass
class Tagi:
    name: str = choice("tagi")
    sigma_v: float = ranged(low=0, low_open=True)
    sigma_v_min: float = ranged(low=0, low_open=True, high="sigma_v")
    sigma_v_decay: float = ranged(low=0, low_open=True, high=1)
    cap_factor: Optional[float] = ranged(low=0, low_open=True)
    gain_w: float = ranged(low=0, low_open=True)
    gain_b: float = ranged(low=0, low_open=True)
    epochs: int = ranged(low=1)
    batch_size: int = ranged(low=1)


@dataclass
class Optimizer:
    name: str = choice(*OPTIMIZERS)
    lr: float = ranged(low=0, low_open=True)
    momentum: float = ranged(low=0, high=1, high_open=True)
    weight_decay: float = ranged(low=0)
    betas: List[float] = ranged(low=0, high=1, high_open=True)


@dataclass
class Schedule:
    name: str = choice(*SCHEDULES)
    epochs: int = ranged(low=1)
    step_size: int = ranged(low=1)
    gamma: float = ranged(low=0, low_open=True, high=1)


@dataclass
class Bp:
    name: str = choice("bp")
    init: str = choice(*INIT_METHODS)
    optimizer: Optimizer = field(default_factory=Optimizer)
    schedule: Schedule = field(default_factory=Schedule)
    epochs: int = ranged(low=1)
    batch_size: int = ranged(low=1)


@dataclass
class Train:
    epochs: int = ranged(low=1)
    batch_size: int = ranged(low=1)


@dataclass
class Tracking:
    name: str = choice("none", "mlflow")
    uri: Optional[str] = MISSING
    experiment: Optional[str] = MISSING


@dataclass
class Config:
    experiment_name: str = MISSING
    debug_run: bool = MISSING
    seed: int = ranged(low=0)
    backend: str = choice(*BACKENDS)
    dtype: str = choice(*DTYPES)
    threads: Optional[int] = ranged(low=1)
    progress: bool = MISSING
    resume: bool = MISSING
    train: Train = field(default_factory=Train)
    data: Data = field(default_factory=Data)
    model: Model = field(default_factory=Model)
    tracking: Tracking = field(default_factory=Tracking)
    method: Any = MISSING


METHODS = {"tagi": Tagi, "bp": Bp}
CIFAR10_TRAIN_IMAGES = 50_000


def _check_fields(node, schema, prefix, interpolated):
    """Check the declared ranges and choices of the dataclass ``schema`` on ``node``, recursively:
    of the fields given as interpolations (``${...}``) if ``interpolated``, else of the others."""
    for spec in fields(schema):
        key = f"{prefix}{spec.name}"
        if is_dataclass(spec.type):
            _check_fields(node[spec.name], spec.type, f"{key}.", interpolated)
            continue
        if OmegaConf.is_interpolation(node, spec.name) != interpolated:
            continue
        value = node[spec.name]
        if "choices" in spec.metadata:
            check_choice(key, value, spec.metadata["choices"])
        elif "range" in spec.metadata and value is not None:
            bounds = dict(spec.metadata["range"])
            name = key
            if interpolated:                                     # name the setting it comes from
                name += f" = {OmegaConf.to_container(node, resolve=False)[spec.name]}"
            for side in ("low", "high"):
                if isinstance(bounds[side], str):
                    name += f" ({'at least' if side == 'low' else 'at most'} {prefix}{bounds[side]})"
                    bounds[side] = node[bounds[side]]
            try:
                for number in (value if OmegaConf.is_list(value) else [value]):
                    check_number(name, number, **bounds)
            except ValueError as err:
                if type(None) in getattr(spec.type, "__args__", ()):      # Optional[...]
                    raise ValueError(str(err).replace(" must be ", " must be null or ", 1)) from None
                raise


def _check_val_size(data):
    """data.val_size must leave training images: below train_limit, else below CIFAR-10's 50,000."""
    train = data.train_limit if data.train_limit is not None else CIFAR10_TRAIN_IMAGES
    if data.val_size >= train:
        raise ValueError(f"data.val_size must be below the {train} training images "
                         f"(data.train_limit={data.train_limit}), got {data.val_size}")


def _check_model_parameters(model):
    """``model.width`` is set exactly for the architectures built from one (tagi.models.PARAMETERISED)."""
    takes = () if model.get("layers") else PARAMETERISED.get(model.name, (None, ()))[1]
    for name in ("width",):
        if name in takes and model[name] is None:
            raise ValueError(f"model.{name} must be set for model {model.name!r} (e.g. model.{name}=90)")
        if name not in takes and model[name] is not None:
            raise ValueError(f"model.{name} is for models built from it "
                             f"({', '.join(sorted(PARAMETERISED))}); model {model.name!r} takes none")


def validate(cfg):
    """The composed config checked against the schema -> a typed copy; SettingsError names the key.

    Runs before any data is read or any network is built.
    """
    try:
        name = cfg.method.name
        method = METHODS[check_choice("method.name", name, tuple(METHODS))]
        schema = OmegaConf.structured(Config)
        schema.method = OmegaConf.structured(method)
        typed = OmegaConf.merge(schema, cfg)
        for interpolated in (False, True):    # a bad value is named where it is set, not where used
            _check_fields(typed.method, method, "method.", interpolated)
            _check_fields(typed, Config, "", interpolated)
        _check_val_size(typed.data)
        _check_model_parameters(typed.model)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        message = str(getattr(err, "msg", err)).splitlines()[0]
        raise SettingsError(f"setting {key}: {message}") from err
    except ValueError as err:
        raise SettingsError(f"bad setting: {err}") from err
    return typed
