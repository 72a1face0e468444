"""CIFAR-10 on disk and mini-batches in memory.

``load_cifar10(root)`` reads ``root/cifar-10-batches-py/`` (the python-pickle
layout) or, failing that, the official ``root/cifar-10-python.tar.gz``
(md5-checked); ``download_cifar10(root)`` fetches that archive from the CIFAR-10
page when ``root`` holds neither. The batch pickles are read by an unpickler that
builds NumPy arrays and plain containers only, so a crafted file runs no code; each
batch must hold at least one image and integer labels in 0..9. Images stay uint8
(N, 3, 32, 32) in memory (150 MB for all 60,000); ``Batches`` normalises one batch at
a time to float32, (x / 255 - mean) / std per channel, with the mean and std of a named
preprocessing (``preprocess_stats``).
"""
import hashlib
import http.client
import io
import logging
import os
import pickle
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"   # the CIFAR-10 page's link
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = "test_batch"
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)   # per channel, of pixels / 255
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

# Preprocessing by name -> per-channel (mean, std) of pixels / 255, each image fed as
# (x / 255 - mean) / std
PREPROCESS = {
    "standardize": (CIFAR10_MEAN, CIFAR10_STD),      # per channel, zero mean and unit std over CIFAR-10
    "normalize_half": ((0.5,) * 3, (0.5,) * 3),      # torchvision Normalize((0.5,)*3, (0.5,)*3): x/255*2 - 1, in [-1, 1]
    "unit_range": ((0.0,) * 3, (1.0,) * 3),          # x / 255, in [0, 1]
    "centered_unit": ((0.5,) * 3, (1.0,) * 3),       # x / 255 - 0.5, in [-0.5, 0.5]
}


class DataError(ValueError):
    """A data file is missing, truncated or not what it should be; the message names it."""


@dataclass
class Dataset:
    """Images uint8 (N, C, H, W) and labels int64 (N,) of a train and a test split."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


# The globals a CIFAR-10 batch pickle names: NumPy's array rebuilders (``_reconstruct`` up to
# protocol 4, ``_frombuffer`` for protocol 5, under NumPy 1's and 2's module names), ndarray and
# dtype, and the str -> bytes encoder that protocol 2 pickles of Python 3 bytes call. Dicts,
# lists, bytes, str and ints need none.
_BATCH_GLOBALS = {(f"numpy.{core}.{module}", function) for core in ("core", "_core")
                  for module, function in (("multiarray", "_reconstruct"), ("numeric", "_frombuffer"))}
_BATCH_GLOBALS |= {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that resolves only ``_BATCH_GLOBALS``: any other class or function a pickle
    names is refused when its name is read, before it is looked up or called, so no code runs
    from a data file."""

    def find_class(self, module, name):
        if (module, name) not in _BATCH_GLOBALS:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR-10 batch never holds")
        return super().find_class(module, name)

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("it holds a persistent id, which a CIFAR-10 batch never holds")


def _read_labels(values, count, name):
    """A batch's b'labels' -> int64 (count,) in 0..9; floats are accepted only when integral."""
    labels = np.asarray(values)
    if labels.shape != (count,) or labels.dtype.kind not in "iuf":
        raise DataError(f"{name}: b'labels' must hold {count} integer classes in 0..9, "
                        f"got {labels.dtype} {labels.shape}")
    if labels.dtype.kind == "f":
        fractional = np.flatnonzero(~np.isfinite(labels) | (labels != np.round(labels)))
        if len(fractional):
            raise DataError(f"{name}: b'labels' must be integer classes, got {labels[fractional[0]]} "
                            f"at index {fractional[0]} ({len(fractional)} such labels)")
    if count and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{name}: b'labels' must hold {count} classes in 0..9")
    return labels.astype(np.int64)


def _load_record(raw, name):
    """One pickled CIFAR-10 batch (bytes) -> its dict (keys b'data', b'labels', ...).

    The pickle is read by ``_BatchUnpickler``: a file naming any class or function beyond
    the NumPy arrays of the format is refused by that name, before anything in it runs.
    """
    try:
        record = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as err:
        raise DataError(f"{name}: not a readable CIFAR-10 pickle ({type(err).__name__}: {err})") from err
    if not isinstance(record, dict) or b"data" not in record or b"labels" not in record:
        raise DataError(f"{name}: a CIFAR-10 batch needs the keys b'data' and b'labels'")
    return record


def _read_batch(raw, name):
    """One pickled CIFAR-10 batch (bytes) -> images uint8 (N, 3, 32, 32), labels int64 (N,), N >= 1."""
    record = _load_record(raw, name)
    data = np.asarray(record[b"data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{name}: b'data' must be uint8 rows of 3072 pixels, got {data.dtype} {data.shape}")
    if len(data) == 0:
        raise DataError(f"{name}: the batch holds no images")
    labels = _read_labels(record[b"labels"], len(data), name)
    return data.reshape(-1, 3, 32, 32), labels


def _md5(path):
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _members_from_folder(folder):
    def read(name):
        path = folder / name
        if not path.is_file():
            raise DataError(f"{path}: missing (expected the CIFAR-10 python layout in {folder})")
        return path.read_bytes()
    return read


def _members_from_archive(path, verify_md5, md5):
    if verify_md5:
        digest = _md5(path)
        if digest != md5:
            raise DataError(f"{path}: md5 {digest} does not match the expected {md5} "
                            "(truncated or corrupt download?)")
    try:
        with tarfile.open(path, "r:gz") as tar:
            files = {Path(m.name).name: tar.extractfile(m).read()
                     for m in tar.getmembers() if m.isfile()}
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(f"{path}: not a readable tar.gz archive ({err})") from err

    def read(name):
        if name not in files:
            raise DataError(f"{path}: the archive holds no {name}")
        return files[name]
    return read


def load_cifar10(root, verify_md5=True, md5=CIFAR10_MD5):
    """Read CIFAR-10 from ``root``: the extracted folder if present, else the archive (whose md5
    must be ``md5``, the official archive's unless told, when ``verify_md5``)."""
    root = Path(root).expanduser()
    folder, archive = root / CIFAR10_FOLDER, root / CIFAR10_ARCHIVE
    if folder.is_dir():
        read, where = _members_from_folder(folder), folder
    elif archive.is_file():
        read, where = _members_from_archive(archive, verify_md5, md5), archive
    else:
        raise DataError(f"no CIFAR-10 in {root}: expected {folder}/ or {archive} "
                        "(the main job's data.download=true fetches the archive)")
    train = [_read_batch(read(name), where / name) for name in CIFAR10_TRAIN]
    x_test, y_test = _read_batch(read(CIFAR10_TEST), where / CIFAR10_TEST)
    return Dataset(np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]),
                   x_test, y_test)



def cifar10_source(root):
    """Where ``load_cifar10(root)`` reads CIFAR-10 from -> {"source", "path", "md5"}, ``md5``
    the md5 of each file it reads (by file name).

    ``source`` is "official archive" (the archive, with the official md5), "archive" (another
    md5), "offline JPEG copy" (a folder that ``make_cifar10.py`` rebuilt from the JPEG
    re-encodings: its test batch names every image ``<class>_<n>.jpg``, where the official
    release names PNGs) or "folder" (any other extracted folder).
    """
    root = Path(root).expanduser()
    folder, archive = root / CIFAR10_FOLDER, root / CIFAR10_ARCHIVE
    if folder.is_dir():
        md5 = {name: _md5(folder / name) for name in CIFAR10_TRAIN + (CIFAR10_TEST,)}
        names = _load_record((folder / CIFAR10_TEST).read_bytes(), folder / CIFAR10_TEST).get(b"filenames")
        jpeg = bool(names) and all(isinstance(n, bytes) and n.endswith(b".jpg") for n in names)
        return {"source": "offline JPEG copy" if jpeg else "folder", "path": str(folder), "md5": md5}
    if archive.is_file():
        digest = _md5(archive)
        return {"source": "official archive" if digest == CIFAR10_MD5 else "archive",
                "path": str(archive), "md5": {CIFAR10_ARCHIVE: digest}}
    raise DataError(f"no CIFAR-10 in {root}: expected {folder}/ or {archive}")


def stratified_split(labels, size, seed):
    """Hold out ``size`` of the N images labelled ``labels`` (N,), stratified by class ->
    (kept, held_out): sorted, disjoint index arrays that together hold 0..N-1.

    Class c, with n_c of the N images, gives floor(size * n_c / N) of them, plus one for the
    classes with the largest remainders until the total is ``size``; which ones is drawn by
    ``numpy.random.default_rng(seed)``, so the same labels, size and seed give the same split.
    Raises ValueError unless ``size`` is an integer with 0 <= size < N.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 0 <= size < n:
        raise ValueError(f"the held-out size must be an integer in [0, {n}) for {n} images, got {size!r}")
    classes, counts = np.unique(labels, return_counts=True)
    quota = size * counts / n
    take = np.floor(quota).astype(np.int64)
    take[np.argsort(take - quota, kind="stable")[:size - take.sum()]] += 1
    rng = np.random.default_rng(seed)
    held_out = np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:k]
                                       for c, k in zip(classes, take)]).astype(np.int64))
    return np.setdiff1d(np.arange(n), held_out), held_out

def download_cifar10(root, url=CIFAR10_URL, md5=CIFAR10_MD5, progress=True, timeout=60):
    """Fetch the archive from ``url`` into ``root/cifar-10-python.tar.gz`` unless ``root`` holds
    CIFAR-10 already -> that path.

    The bytes go to a temporary ``.part`` file beside it, with a progress bar; its
    length (when the server gives one) and its md5 are checked before it is renamed
    into place, so a failed, partial or wrong download leaves nothing that looks
    complete. Raises DataError naming the URL and the fault.
    """
    root = Path(root).expanduser()
    archive = root / CIFAR10_ARCHIVE
    if (root / CIFAR10_FOLDER).is_dir() or archive.is_file():
        return archive
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(f".{CIFAR10_ARCHIVE}.*.part"):     # of a killed download
        stale.unlink()
    fd, part = tempfile.mkstemp(prefix=f".{CIFAR10_ARCHIVE}.", suffix=".part", dir=root)
    try:
        digest, size = hashlib.md5(), 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            expected = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=expected, unit="B", unit_scale=True, desc=CIFAR10_ARCHIVE,
                      disable=not progress, leave=False) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    digest.update(block)
                    size += len(block)
                    bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
        if expected is not None and size != expected:
            raise DataError(f"{url}: truncated download ({size} of {expected} bytes); nothing installed")
        if digest.hexdigest() != md5:
            raise DataError(f"{url}: md5 {digest.hexdigest()} does not match the expected {md5}; "
                            "the download was discarded")
        os.replace(part, archive)
    except (OSError, http.client.HTTPException) as err:       # URLError and timeouts are OSErrors
        raise DataError(f"{url}: download failed ({type(err).__name__}: {err}); nothing installed") from err
    finally:
        if os.path.exists(part):
            os.unlink(part)
    log.info("downloaded %s (%d bytes, md5 checked) to %s", url, size, archive)
    return archive


def preprocess_stats(name):
    """The per-channel (mean, std) of pixels / 255 that ``Batches`` takes for the preprocessing
    ``name`` (one of ``PREPROCESS``): images are fed as (x / 255 - mean) / std."""
    if name not in PREPROCESS:
        raise ValueError(f"unknown preprocessing {name!r}; one of {tuple(PREPROCESS)}")
    return PREPROCESS[name]


class Batches:
    """Mini-batches of normalised float images (B, C, H, W) and labels (B,).

    Args:
        images: uint8 (N, C, H, W); labels: (N,) integers.
        batch_size: B; the last incomplete batch is kept unless ``drop_last``.
        rng: a numpy Generator to shuffle with each time the batches are iterated;
            None keeps the stored order.
        mean, std: per-channel statistics of pixels / 255; each image is fed as
            (x / 255 - mean) / std (``preprocess_stats`` gives them by name).
    """

    def __init__(self, images, labels, batch_size, rng=None, drop_last=False,
                 mean=CIFAR10_MEAN, std=CIFAR10_STD, dtype=np.float32):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.images, self.labels = images, np.asarray(labels, dtype=np.int64)
        self.batch_size, self.rng, self.drop_last = int(batch_size), rng, drop_last
        shape = (1, len(mean)) + (1,) * (images.ndim - 2)
        self.scale = (1.0 / (255.0 * np.asarray(std, dtype=dtype))).reshape(shape)
        self.shift = (np.asarray(mean, dtype=dtype) / np.asarray(std, dtype=dtype)).reshape(shape)
        self.dtype = dtype

    def __len__(self):
        full, rest = divmod(len(self.labels), self.batch_size)
        return full + (rest > 0 and not self.drop_last)

    def __iter__(self):
        n = len(self.labels)
        order = self.rng.permutation(n) if self.rng is not None else np.arange(n)
        for i in range(len(self)):
            take = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.images[take].astype(self.dtype) * self.scale - self.shift
            yield x, self.labels[take]
