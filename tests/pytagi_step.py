"""One TAGI training step in pytagi, run as a script: ``python tests/pytagi_step.py IN.npz OUT.npz``.

Used by test_pytagi_oracle.py in a subprocess, because pytagi's extension (cutagi) links
``libnccl.so.2``, which the loader finds only through an ``LD_LIBRARY_PATH`` set before the
process starts. Needs numpy and pytagi only (not tagi).

IN.npz: ``spec`` (an architecture of tagi.models as JSON), ``x`` (B, C, H, W) float32 (pytagi
reads each sample flat in C, H, W order), ``labels`` (B,), ``sigma_v``, and the parameters to
start from, ``"{index}.mu_w"`` etc., each flat. pytagi's flat order is PyTorch's, so our
(out, in, k, k) and (out, in) weights go over as ``reshape(-1)``: Linear ``out*N_in + in``,
Conv2d ``((co*C_in + ci)*K + ky)*K + kx`` (found with one-hot weights; any other order fails
every comparison of test_pytagi_oracle.py); biases by output (channel).
OUT.npz: ``mu``, ``var`` (B, N_out): the prior output moments; the same parameter keys after
``step()``, and ``"{index}.delta_mu_w"`` etc.: the parameter deltas of the step before the cap
(summed over the batch); ``obs``, ``obs_index`` (B, L): pytagi's hierarchical-softmax encoding
of the labels (targets +-1 and 1-based output indices).

The step is pytagi's own training loop: its OutputUpdater on the observed outputs only, with
observation variance sigma_v**2, ``backward()``, then ``step()`` with pytagi's cap factor for
batch size B. pytagi allocates Conv2d parameters at the first forward, so a first forward
initialises them, the parameters are then overwritten, and the measured step follows.
"""
import json
import sys

import numpy as np

PADDING_TYPES = {"symmetric": 1, "bottom_right": 2}   # pytagi's padding_type codes
PARAMS = ("mu_w", "var_w", "mu_b", "var_b")
DELTAS = ("delta_mu_w", "delta_var_w", "delta_mu_b", "delta_var_b")   # before the cap


def pytagi_layers(spec, num_outputs):
    """tagi.models layer entries -> pytagi layers (the first Conv2d is told its input size)."""
    from pytagi import nn
    channels, height, width = spec["input_shape"]
    layers = []
    for entry in spec["layers"]:
        kind = entry["type"]
        if kind == "Conv2d":
            first = {"in_width": width, "in_height": height} if not layers else {}
            layers.append(nn.Conv2d(entry["in_channels"], entry["out_channels"], entry["kernel_size"],
                                    stride=entry.get("stride", 1), padding=entry.get("padding", 0),
                                    padding_type=PADDING_TYPES[entry.get("padding_type", "symmetric")],
                                    **first))
        elif kind in ("AvgPool2d", "MaxPool2d"):
            kernel = entry["kernel_size"]
            layers.append(getattr(nn, kind)(kernel, entry.get("stride") or kernel, padding=entry.get("padding", 0),
                                            padding_type=PADDING_TYPES[entry.get("padding_type", "symmetric")]))
        elif kind == "Linear":
            out_features = entry["out_features"]
            layers.append(nn.Linear(entry["in_features"],
                                    num_outputs if out_features == "outputs" else out_features))
        elif kind == "ReLU":
            layers.append(nn.ReLU())
        else:
            raise ValueError(f"no pytagi translation for layer type {kind!r}")
    return layers


def main(in_path, out_path):
    import pytagi
    from pytagi.nn import OutputUpdater, Sequential

    data = np.load(in_path)
    spec, x, labels = json.loads(str(data["spec"])), data["x"], data["labels"]
    num_outputs, sigma_v = int(data["num_outputs"]), float(data["sigma_v"])
    pytagi.manual_seed(0)
    net = Sequential(*pytagi_layers(spec, num_outputs))
    net.set_threads(1)
    net.train()
    flat_x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    net(flat_x)                                            # allocates the Conv2d parameters
    indices = sorted({key.split(".")[0] for key in data.files if key.endswith(".mu_w")}, key=int)
    for i in indices:
        for name in PARAMS:
            setattr(net.layers[int(i)], name, data[f"{i}.{name}"].astype(np.float32))
    mu, var = net(flat_x)
    obs, obs_index, per_label = pytagi.Utils().label_to_obs(labels.astype(np.int32), int(data["num_classes"]))
    OutputUpdater(net.device).update_using_indices(
        net.output_z_buffer, obs.astype(np.float32), np.full(obs.shape, sigma_v ** 2, np.float32),
        obs_index.astype(np.int32), net.input_delta_z_buffer)
    net.backward()
    net.step()
    batch = len(labels)
    out = {"mu": np.reshape(mu, (batch, -1)), "var": np.reshape(var, (batch, -1)),
           "obs": obs.reshape(batch, per_label), "obs_index": obs_index.reshape(batch, per_label)}
    for i in indices:
        for name in PARAMS + DELTAS:
            out[f"{i}.{name}"] = np.asarray(getattr(net.layers[int(i)], name), dtype=np.float32)
    np.savez(out_path, **out)


if __name__ == "__main__":
    main(*sys.argv[1:])
