"Error paths and file formats of `consistency_models.data`, on tiny files in a temporary folder (never the network)."
import gzip, hashlib, io, os, pickle, struct, tarfile, warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from consistency_models import data as D


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    "Point the download cache at an empty folder so that nothing on this machine is found by accident."
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))


# ---------- IDX (MNIST, Fashion-MNIST) ----------

def idx_bytes(arr, magic=None):
    arr = np.asarray(arr, dtype=np.uint8)
    magic = (0x0800 | arr.ndim) if magic is None else magic
    return struct.pack(f'>I{arr.ndim}I', magic, *arr.shape) + arr.tobytes()


def write_idx_set(folder, split='train', n=5, gz=True, dotted=False, seed=0):
    "Write a tiny MNIST-like split (n images of 28×28 and n labels) in one of the usual file namings."
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    imgs, labs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)
    pre = 'train' if split == 'train' else 't10k'
    for what, arr in (('images-idx3', imgs), ('labels-idx1', labs)):
        name = f'{pre}-{what}-ubyte'
        if dotted: name = name.replace('-idx', '.idx')
        raw = idx_bytes(arr)
        if gz: (folder / (name + '.gz')).write_bytes(gzip.compress(raw))
        else: (folder / name).write_bytes(raw)
    return imgs, labs


@pytest.mark.parametrize('gz', [True, False])
@pytest.mark.parametrize('dotted', [True, False])
def test_idx_set_loads_in_every_naming(tmp_path, gz, dotted):
    imgs, labs = write_idx_set(tmp_path, gz=gz, dotted=dotted)
    d = D.load_mnist(root=tmp_path)
    assert d.x.shape == (5, 1, 28, 28) and d.x.dtype == torch.float32
    assert torch.equal(d.x, D.to_unit_range(torch.from_numpy(imgs)[:, None]))
    assert d.labels.tolist() == labs.tolist()
    assert d.sigma_data == pytest.approx(d.x.double().std().item(), rel=1e-9)


def test_idx_subfolder_test_split_and_pad(tmp_path):
    imgs, _ = write_idx_set(tmp_path / 'fashion-mnist', split='test', n=3)
    d = D.load_fmnist(root=tmp_path, split='test', size=32, fit='pad')
    assert d.x.shape == (3, 1, 32, 32)
    assert torch.equal(d.x[:, 0, 2:30, 2:30], D.to_unit_range(torch.from_numpy(imgs)))
    assert d.name == 'fmnist-test-32'


def test_idx_wrong_magic_names_file_and_expectation(tmp_path):
    write_idx_set(tmp_path)
    lab = tmp_path / 'train-labels-idx1-ubyte.gz'
    (tmp_path / 'train-images-idx3-ubyte.gz').write_bytes(lab.read_bytes())  # labels where images belong
    with pytest.raises(ValueError, match=r'train-images-idx3-ubyte\.gz: magic number 0x00000801, expected 0x00000803'):
        D.load_mnist(root=tmp_path)


def test_idx_truncated_data(tmp_path):
    raw = idx_bytes(np.zeros((4, 28, 28)))
    p = tmp_path / 'x-idx3-ubyte'
    p.write_bytes(raw[:-10])
    with pytest.raises(ValueError, match=r'x-idx3-ubyte: 3126 data bytes, expected 3136 .*truncated'):
        D.read_idx(p, 'images')


def test_idx_truncated_header_and_tiny_file(tmp_path):
    p = tmp_path / 'h'
    p.write_bytes(struct.pack('>II', 0x803, 4))  # 3 dims announced, one given
    with pytest.raises(ValueError, match='header truncated'): D.read_idx(p)
    p.write_bytes(b'\x00\x00')
    with pytest.raises(ValueError, match='too short'): D.read_idx(p)


def test_idx_not_uint8(tmp_path):
    p = tmp_path / 'f'
    p.write_bytes(struct.pack('>II', 0x0D01, 1) + b'\0\0\0\0')  # 0x0D = float32
    with pytest.raises(ValueError, match='not an unsigned-byte IDX'): D.read_idx(p)


def test_idx_corrupt_and_truncated_gzip(tmp_path):
    good = gzip.compress(idx_bytes(np.arange(100).reshape(10, 10)))
    p = tmp_path / 'c.gz'
    p.write_bytes(good[:len(good) // 2])
    with pytest.raises(ValueError, match=r'c\.gz: corrupt gzip'): D.read_idx(p)
    p.write_bytes(good[:10] + bytes(b ^ 0xFF for b in good[10:30]) + good[30:])
    with pytest.raises(ValueError, match=r'c\.gz: corrupt gzip'): D.read_idx(p)


def test_idx_image_label_count_mismatch(tmp_path):
    write_idx_set(tmp_path, n=5)
    (tmp_path / 'train-labels-idx1-ubyte.gz').write_bytes(gzip.compress(idx_bytes(np.zeros(4))))
    with pytest.raises(ValueError, match='5 images but .*train-labels-idx1-ubyte.gz holds 4 labels'):
        D.load_mnist(root=tmp_path)


def test_missing_files_say_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setitem(D.IDX_SETS['fmnist'], 'system', (str(tmp_path / 'nowhere'),))
    with pytest.raises(FileNotFoundError) as e: D.load_fmnist(root=tmp_path / 'mine')
    msg = str(e.value)
    for part in ('train-images-idx3-ubyte', str(tmp_path / 'mine'), str(tmp_path / 'nowhere'),
                 'apt-get install dataset-fashion-mnist', 'download=True'):
        assert part in msg, part
    with pytest.raises(FileNotFoundError, match='download=True'): D.load_mnist()
    with pytest.raises(ValueError, match="splits 'train' and 'test'"): D.load_mnist(root=tmp_path, split='val')


def test_download_idx_from_file_url(tmp_path, monkeypatch):
    "The download path end to end, with a file:// 'server' and the right and wrong checksums."
    server = tmp_path / 'server'
    imgs, labs = write_idx_set(server)
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in server.iterdir()}
    monkeypatch.setitem(D.IDX_SETS['mnist'], 'urls', (server.as_uri() + '/',))
    monkeypatch.setitem(D.IDX_SETS['mnist'], 'md5', md5)
    with pytest.raises(FileNotFoundError): D.load_mnist(root=tmp_path / 'dl')          # no consent, no download
    d = D.load_mnist(root=tmp_path / 'dl', download=True)
    assert d.labels.tolist() == labs.tolist()
    assert sorted(p.name for p in (tmp_path / 'dl').iterdir()) == sorted(md5)
    # no root: the download goes to the cache, and is found there next time
    D.load_mnist(download=True)
    assert (D.default_cache() / 'mnist' / 'train-images-idx3-ubyte.gz').is_file()
    assert torch.equal(D.load_mnist().x, d.x)
    # a corrupted download leaves nothing behind
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache2'))
    monkeypatch.setitem(D.IDX_SETS['mnist'], 'md5', {k: '0' * 32 for k in md5})
    with pytest.raises(FileNotFoundError, match='MD5 [0-9a-f]{32} differs from the expected 0{32}'):
        D.load_mnist(root=tmp_path / 'dl2', download=True)
    assert list((tmp_path / 'dl2').iterdir()) == []


REFUSED = 'http://127.0.0.1:9/'  # the discard port: the connection is refused at once, no network needed


def test_download_url_failure_leaves_nothing(tmp_path):
    absent = (tmp_path / 'absent').as_uri()
    with pytest.raises(D.DownloadError) as e: D.download_file([REFUSED + 'f', absent], tmp_path / 'out' / 'f')
    assert isinstance(e.value, OSError)
    assert str(e.value) == (f"download from {REFUSED}f failed (Connection refused), "
                            f"and from {absent} (No such file or directory: {tmp_path / 'absent'})")
    assert list((tmp_path / 'out').iterdir()) == []


def test_download_falls_back_to_the_next_address(tmp_path, monkeypatch):
    "Fashion-MNIST tries S3's https endpoint first and the http website only if that fails."
    https, http = D.IDX_SETS['fmnist']['urls']
    assert https.startswith('https://') and http.startswith('http://')
    server = tmp_path / 'server'
    _, labs = write_idx_set(server, split='test')
    monkeypatch.setitem(D.IDX_SETS['fmnist'], 'system', ())
    monkeypatch.setitem(D.IDX_SETS['fmnist'], 'urls', (REFUSED, server.as_uri() + '/'))
    monkeypatch.setitem(D.IDX_SETS['fmnist'], 'md5', {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in server.iterdir()})
    assert D.load_fmnist(root=tmp_path / 'dl', split='test', download=True).labels.tolist() == labs.tolist()
    assert sorted(p.name for p in (tmp_path / 'dl').iterdir()) == ['t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz']


@pytest.mark.parametrize('key', ['mnist', 'fmnist'])
def test_offline_download_is_one_line_saying_what_to_do(tmp_path, monkeypatch, key):
    monkeypatch.setitem(D.IDX_SETS[key], 'system', (str(tmp_path / 'system'),))
    monkeypatch.setitem(D.IDX_SETS[key], 'urls', (REFUSED, (tmp_path / 'nowhere').as_uri() + '/'))
    root = tmp_path / 'mine'
    with pytest.raises(FileNotFoundError) as e: D.find_idx_files(key, 'train', root, download=True)
    msg = str(e.value)
    assert len(msg.splitlines()) == 1 and e.value.__cause__ is None and e.value.__suppress_context__
    for part in (f'{key} (train) is not found locally (no train-images-idx3-ubyte[.gz] in {root}, {root / D.IDX_SETS[key]["folder"]}, '
                 f'{tmp_path / "system"}, {D.default_cache() / D.IDX_SETS[key]["folder"]})',
                 f'the download from {REFUSED}train-images-idx3-ubyte.gz failed (Connection refused), and from '
                 f'{(tmp_path / "nowhere").as_uri()}/train-images-idx3-ubyte.gz (No such file or directory',
                 f'put train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz in {root}'):
        assert part in msg, part
    assert ('apt-get install dataset-fashion-mnist' in msg) == (key == 'fmnist')
    assert 'download=True' not in msg
    assert list(root.iterdir()) == []                                      # no partial file left behind
    # without root the files are to go to the cache, and the message says so
    with pytest.raises(FileNotFoundError, match=f'in {D.default_cache() / D.IDX_SETS[key]["folder"]}'):
        D.find_idx_files(key, 'test', download=True)


# ---------- CIFAR-10 ----------

def fake_cifar(folder, n=3, protocol=2, names=None):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    out = {}
    for nm in names or [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, n).tolist()
        (folder / nm).write_bytes(pickle.dumps({'batch_label': 'fake', 'data': x, 'labels': y, 'filenames': ['a'] * n}, protocol=protocol))
        out[nm] = (x, y)
    return out


@pytest.mark.parametrize('protocol', [2, 4])
def test_cifar_loads_and_keeps_channel_layout(tmp_path, protocol):
    ref = fake_cifar(tmp_path / 'cifar-10-batches-py', protocol=protocol)
    d = D.load_cifar10(root=tmp_path)
    assert d.x.shape == (15, 3, 32, 32) and d.labels.dtype == torch.int64
    x1, y1 = ref['data_batch_2']
    assert torch.equal(d.x[3:6], D.to_unit_range(torch.from_numpy(x1.reshape(3, 3, 32, 32))))
    assert d.labels[3:6].tolist() == y1
    # pixel (row 1, col 2) of the green plane is byte 1024 + 32 + 2 of a row
    assert d.x[3, 1, 1, 2].item() == pytest.approx(x1[0, 1024 + 34] / 127.5 - 1)
    t = D.load_cifar10(root=tmp_path / 'cifar-10-batches-py', split='test', size=16)
    assert t.x.shape == (3, 3, 16, 16)


def test_cifar_numpy1_global_names_accepted(tmp_path):
    "Real CIFAR batches (written by Python 2 / numpy 1) name numpy.core.multiarray._reconstruct."
    raw = pickle.dumps({'data': np.zeros((1, 3072), np.uint8), 'labels': [4]}, protocol=2)
    raw = raw.replace(b'numpy._core.multiarray', b'numpy.core.multiarray')
    folder = tmp_path / 'cifar-10-batches-py'; folder.mkdir()
    (folder / 'test_batch').write_bytes(raw)
    assert D.load_cifar10(root=tmp_path, split='test').labels.tolist() == [4]


class Evil:
    def __init__(self, target): self.target = target
    def __reduce__(self): return (os.system, (f'touch {self.target}',))


class EvilEval:
    def __reduce__(self): return (eval, ("__import__('os').system('true')",))


@pytest.mark.parametrize('payload', ['system', 'eval', 'ndarray-subclass'])
def test_malicious_pickle_is_refused_before_running(tmp_path, payload):
    folder = tmp_path / 'cifar-10-batches-py'; folder.mkdir()
    marker = tmp_path / 'pwned'
    obj = {'system': {'data': Evil(marker), 'labels': []}, 'eval': {'data': EvilEval(), 'labels': []},
           'ndarray-subclass': {'data': np.ma.masked_array([1, 2]), 'labels': []}}[payload]
    (folder / 'test_batch').write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(D.UnsafePickleError) as e: D.load_cifar10(root=tmp_path, split='test')
    assert isinstance(e.value, ValueError) and len(str(e.value).splitlines()) == 1
    assert str(e.value).startswith(f"{folder / 'test_batch'}: refused as unsafe: it asks to load ")
    assert str(e.value).endswith('; a CIFAR-10 batch holds only numpy arrays, dicts, lists and bytes')
    assert {'system': '.system;', 'eval': 'builtin__.eval;', 'ndarray-subclass': 'numpy.ma.core.'}[payload] in str(e.value)
    assert not marker.exists()


def test_safe_unpickler_allows_plain_containers(tmp_path):
    obj = {'a': [1, 2.5, 'x', b'\x00\xff', (3, None), True], 'n': np.arange(4, dtype=np.int64)}
    p = tmp_path / 'ok'
    for proto in (2, 3, 4):
        p.write_bytes(pickle.dumps(obj, protocol=proto))
        back = D.safe_unpickle(p)
        assert back['a'] == obj['a'] and np.array_equal(back['n'], obj['n'])


def test_cifar_truncated_and_wrong_content(tmp_path):
    folder = tmp_path / 'cifar-10-batches-py'
    fake_cifar(folder, names=['test_batch'])
    p = folder / 'test_batch'
    p.write_bytes(p.read_bytes()[:500])
    with pytest.raises(ValueError) as e: D.load_cifar10(root=tmp_path, split='test')
    assert type(e.value) is ValueError and len(str(e.value).splitlines()) == 1
    assert str(e.value).startswith(f'{p}: truncated or corrupt pickle (UnpicklingError: pickle data was truncated)')
    p.write_bytes(b'\x80\x02}q\x00X\x04\x00\x00\x00dataq\x01\xff.')     # an opcode that does not exist
    with pytest.raises(ValueError, match=f'{p.name}: truncated or corrupt pickle'): D.load_cifar10(root=tmp_path, split='test')
    p.write_bytes(b'')
    with pytest.raises(ValueError, match=f'{p.name}: truncated or corrupt pickle \\(EOFError'): D.load_cifar10(root=tmp_path, split='test')
    p.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(ValueError, match="test_batch: expected a CIFAR-10 batch, a dict with 'data' and 'labels', got list"):
        D.load_cifar10(root=tmp_path, split='test')
    p.write_bytes(pickle.dumps({'data': np.zeros((2, 3072), np.float32), 'labels': [0, 1]}, protocol=2))
    with pytest.raises(ValueError, match=r"'data' should be uint8 of shape \(2, 3072\), got float32 \(2, 3072\)"):
        D.load_cifar10(root=tmp_path, split='test')
    p.write_bytes(pickle.dumps({'data': np.zeros((2, 3072), np.uint8), 'labels': [0]}, protocol=2))
    with pytest.raises(ValueError, match=r"shape \(1, 3072\), got uint8 \(2, 3072\)"):
        D.load_cifar10(root=tmp_path, split='test')
    for labels in (['cat', 'dog'], [[0, 1]], [None, 1]):
        p.write_bytes(pickle.dumps({'data': np.zeros((2, 3072), np.uint8), 'labels': labels}, protocol=2))
        with pytest.raises(ValueError, match="test_batch: 'labels' should be a flat list of ints"):
            D.load_cifar10(root=tmp_path, split='test')


def test_cifar_missing_batch_and_missing_folder(tmp_path):
    fake_cifar(tmp_path / 'cifar-10-batches-py', names=['data_batch_1', 'data_batch_2', 'test_batch'])
    with pytest.raises(FileNotFoundError, match='data_batch_3 is missing'): D.load_cifar10(root=tmp_path)
    with pytest.raises(FileNotFoundError, match=r'no data_batch_1 or test_batch in .*download=True'):
        D.load_cifar10(root=tmp_path / 'empty')


def make_tgz(path, members):
    with tarfile.open(path, 'w:gz') as t:
        for name, payload in members:
            info = tarfile.TarInfo(name); info.size = len(payload)
            t.addfile(info, io.BytesIO(payload))


@pytest.mark.parametrize('filters', [True, False])
def test_cifar_download_and_unpack_from_file_url(tmp_path, monkeypatch, filters):
    if not filters: monkeypatch.delattr(tarfile, 'data_filter', raising=False)
    src = tmp_path / 'src'
    ref = fake_cifar(src / 'cifar-10-batches-py', n=2)
    tgz = tmp_path / 'cifar-10-python.tar.gz'
    make_tgz(tgz, [(f'cifar-10-batches-py/{p.name}', p.read_bytes()) for p in sorted((src / 'cifar-10-batches-py').iterdir())])
    monkeypatch.setitem(D.CIFAR10, 'url', tgz.as_uri())
    monkeypatch.setitem(D.CIFAR10, 'md5', hashlib.md5(tgz.read_bytes()).hexdigest())
    d = D.load_cifar10(root=tmp_path / 'root', download=True, split='test')
    assert d.labels.tolist() == ref['test_batch'][1]
    assert (tmp_path / 'root' / 'cifar-10-python.tar.gz').is_file()


@pytest.mark.parametrize('filters', [True, False])
def test_cifar_archive_escaping_its_folder_is_refused(tmp_path, monkeypatch, filters):
    if not filters: monkeypatch.delattr(tarfile, 'data_filter', raising=False)  # the check for Pythons without filters
    tgz = tmp_path / 'evil.tar.gz'
    make_tgz(tgz, [('../escaped', b'x')])
    monkeypatch.setitem(D.CIFAR10, 'url', tgz.as_uri())
    monkeypatch.setitem(D.CIFAR10, 'md5', hashlib.md5(tgz.read_bytes()).hexdigest())
    with pytest.raises(ValueError, match=r"cifar-10-python\.tar\.gz: .*'\.\./escaped'"): D.load_cifar10(root=tmp_path / 'root', download=True)
    assert not (tmp_path / 'escaped').exists()


def test_cifar_offline_download_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(D.CIFAR10, 'url', REFUSED + 'cifar-10-python.tar.gz')
    with pytest.raises(FileNotFoundError) as e: D.load_cifar10(root=tmp_path / 'root', download=True)
    assert str(e.value) == (
        f"CIFAR-10 is not found locally (no data_batch_1 or test_batch in {tmp_path / 'root' / 'cifar-10-batches-py'}, "
        f"{tmp_path / 'root'}, {D.default_cache() / 'cifar-10-batches-py'}), and the download from {REFUSED}cifar-10-python.tar.gz "
        f"failed (Connection refused); unpack cifar-10-python.tar.gz in {tmp_path / 'root'} yourself, so that "
        f"{tmp_path / 'root' / 'cifar-10-batches-py'} holds data_batch_1 … test_batch")
    assert list((tmp_path / 'root').iterdir()) == []


# ---------- image folders ----------

@pytest.fixture
def pics(tmp_path):
    from PIL import Image
    f = tmp_path / 'pics'; (f / 'sub').mkdir(parents=True)
    Image.fromarray(np.full((10, 20, 3), (0, 255, 0), np.uint8)).save(f / 'a.png')         # wide, green
    Image.fromarray(np.full((12, 12), 128, np.uint8)).save(f / 'b.PNG')                   # gray, upper-case suffix
    rgba = np.zeros((30, 14, 4), np.uint8); rgba[..., 2] = 255; rgba[..., 3] = 255
    Image.fromarray(rgba).save(f / 'sub' / 'c.png')                                      # tall, RGBA, in a sub-folder
    (f / 'notes.txt').write_text('not an image')
    return f


def test_folder_crop_resize_modes(pics):
    d = D.load_folder(pics, size=6)
    assert d.x.shape == (3, 3, 6, 6) and d.labels is None
    assert d.x[0, :, 3, 3].tolist() == [-1., 1., -1.]              # a.png is green
    assert d.x[2, :, 3, 3].tolist() == [-1., -1., 1.]              # sub/c.png is blue, alpha dropped
    assert d.x.min() >= -1 and d.x.max() <= 1
    g = D.load_folder(pics, size=6, mode='L')
    assert g.x.shape == (3, 1, 6, 6)
    assert g.x[1].unique().tolist() == [pytest.approx(128 / 127.5 - 1, abs=1e-6)]


def test_folder_centre_crop(tmp_path):
    from PIL import Image
    a = np.zeros((4, 8), np.uint8); a[:, 2:6] = 255                # white centre square, black sides
    (tmp_path / 'f').mkdir(); Image.fromarray(a).save(tmp_path / 'f' / 'x.png')
    d = D.load_folder(tmp_path / 'f', mode='L')
    assert d.x.shape == (1, 1, 4, 4) and d.x.unique().tolist() == [1.]


def test_folder_errors(pics, tmp_path):
    with pytest.raises(ValueError, match='different sizes'): D.load_folder(pics)
    (pics / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'garbage')
    with pytest.raises(ValueError, match=r'broken\.png: not a readable image'): D.load_folder(pics, size=4)
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FileNotFoundError, match='no images'): D.load_folder(tmp_path / 'empty')
    with pytest.raises(FileNotFoundError, match='does not exist'): D.load_folder(tmp_path / 'nope')
    with pytest.raises(ValueError, match="'RGB' or 'L'"): D.load_folder(pics, mode='CMYK')


# ---------- σ_data ----------

def test_sigma_data_leaves_out_non_finite_samples():
    x = torch.randn(50, 1, 3, 3, generator=torch.Generator().manual_seed(2))
    bad = x.clone(); bad[7, 0, 1, 2] = float('nan'); bad[8, 0, 0, 0] = float('inf'); bad[40] = -float('inf')
    with pytest.warns(RuntimeWarning, match=r'^3 of 50 samples hold NaN or inf values and were left out of σ_data') as ws:
        d = D.ImageData(bad)
    assert len(ws) == 1
    keep = [i for i in range(50) if i not in (7, 8, 40)]
    assert d.sigma_data == pytest.approx(D.data_std(x[keep]), rel=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter('error')                                   # finite data: no warning at all
        assert D.ImageData(x).sigma_data == pytest.approx(x.double().std().item(), rel=1e-12)
    with pytest.warns(RuntimeWarning, match='^1 of 3 samples holds'): D.data_std(torch.tensor([1., 2., float('nan')]))
    with pytest.raises(ValueError, match='all 2 samples hold NaN or inf values'): D.ImageData(torch.full((2, 4), float('nan')))


# ---------- dispatch, toys, batches ----------

def test_load_dataset_dispatch(pics, tmp_path):
    assert D.load_dataset(f'folder:{pics}', size=5, mode='L').x.shape == (3, 1, 5, 5)
    t = D.load_dataset('toy2d:checkerboard', n=50, seed=3)
    assert t.x.shape == (50, 2) and torch.equal(t.x, D.load_toy2d('checkerboard', 50, seed=3).x)
    write_idx_set(tmp_path / 'fm', n=2)
    assert len(D.load_dataset('Fashion-MNIST', root=tmp_path / 'fm')) == 2
    with pytest.raises(ValueError, match='unknown 2-D toy'): D.load_dataset('toy2d:spiral')
    with pytest.raises(ValueError, match='unknown data set'): D.load_dataset('svhn')
    assert len(D.load_dataset('digits', split='test')) == 300
    with pytest.raises(ValueError, match='splits'): D.load_dataset('digits', split='valid')


def test_batches_shard_epochs_and_device():
    x = torch.arange(20.)[:, None]
    ws, bs = 4, 2
    its = [D.batches(D.ImageData(x), bs, torch.Generator().manual_seed(9), rank=r, world_size=ws) for r in range(ws)]
    steps = [[next(it).flatten().tolist() for it in its] for _ in range(4)]  # 2 epochs of 2 steps (20 // 8 = 2)
    for step in steps:
        flat = sum(step, [])
        assert len(flat) == len(set(flat)) == bs * ws                     # ranks are disjoint within a step
    for epoch in (steps[:2], steps[2:]):
        assert len({v for step in epoch for b in step for v in b}) == 16   # no repeats within an epoch
    assert steps[:2] != steps[2:]                                          # each epoch reshuffles
    # the same seed gives the same stream; device=None leaves data where they are
    a = D.batches(x, 5, torch.Generator().manual_seed(1)); b = D.batches(x, 5, torch.Generator().manual_seed(1))
    for _ in range(7): assert torch.equal(next(a), next(b))
    assert next(D.batches(x, 5, torch.Generator(), device='cpu')).device.type == 'cpu'


def test_batches_rejects_bad_sizes():
    x = torch.zeros(10, 2)
    with pytest.raises(ValueError, match='global batch'): D.batches(x, 11, torch.Generator())
    with pytest.raises(ValueError, match='global batch'): D.batches(x, 0, torch.Generator())
    with pytest.raises(ValueError, match='rank'): D.batches(x, 1, torch.Generator(), rank=-1)


def test_real_fashion_mnist_if_installed():
    p = Path('/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz')
    if not p.is_file(): pytest.skip('dataset-fashion-mnist is not installed')
    d = D.load_fmnist(split='test')
    assert d.x.shape == (10_000, 1, 28, 28) and d.labels.bincount().tolist() == [1000] * 10
