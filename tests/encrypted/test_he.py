"""Encrypted training (SEAL via tenseal.sealapi) against the plaintext reference; key separation; file checks."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from toolkit.encrypted import circuit as C
from toolkit.encrypted import he, protocol
from toolkit.encrypted.data import minibatch_indices, signed_features
from toolkit.encrypted.params import choose_params, validate_params
from toolkit.errors import InputError

COEFFS = C.SIGMOID_COEFFS["han16"]


def _toy(n=200, d=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, d))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    return signed_features(x, y)


@pytest.fixture(scope="module")
def low_depth_keys():
    return he.keygen(choose_params(3))


def _reference(z, batches, iterations, lr):
    w = np.zeros(z.shape[1])
    for k in range(iterations):
        w = C.poly_sigmoid_step(w, z[batches[k % len(batches)]], COEFFS, lr)
    return w


def _run_files(tmp_path, keys, circuit, z, batches, iterations, lr, workers=1, momentum=C.NO_MOMENTUM):
    sec, pub = tmp_path / "secret.zip", tmp_path / "public.zip"
    he.save_secret_context(keys, sec)
    he.save_public_context(keys, pub)
    owner = he.load_context(sec, "owner")
    job = {"circuit": circuit, "coeffs": list(COEFFS), "learning_rate": lr, "iterations": iterations,
           "momentum": momentum.to_dict()}
    data, w0, jobp, out = (tmp_path / n for n in ("data.zip", "w0.zip", "job.json", "w.zip"))
    protocol.owner_encrypt(owner, z, batches, job, data, w0, jobp)
    log: list = []
    state = protocol.server_train(pub, data, w0, protocol.read_job(jobp), out,
                                  protocol.local_refresher(owner, he.load_context(pub, "server"), log,
                                                           momentum.enabled),
                                  workers=workers)
    w, reached = protocol.owner_decrypt(owner, out, job)
    return w, reached, state


def test_low_depth_encrypted_matches_plaintext(tmp_path, low_depth_keys):
    z = _toy()
    batches = minibatch_indices(len(z), 100, 0)
    w, reached, state = _run_files(tmp_path, low_depth_keys, "low-depth", z, batches, 3, 2.0)
    assert reached == 3
    assert state["refreshes"] == 2  # 3 levels per refresh at N=8192 -> one iteration each
    assert [b - a for a, b in state["levels"]] == [3, 3, 3]
    ref = _reference(z, batches, 3, 2.0)
    assert np.abs(ref).max() > 0.05
    np.testing.assert_allclose(w, ref, atol=2e-3)


def test_two_worker_processes_give_the_same_result(tmp_path, low_depth_keys):
    z = _toy(n=300, d=5)
    batches = minibatch_indices(len(z), 150, 0)
    w, reached, state = _run_files(tmp_path, low_depth_keys, "low-depth", z, batches, 2, 2.0, workers=2)
    assert reached == 2 and state["refreshes"] == 1
    assert [b - a for a, b in state["levels"]] == [3, 3]
    np.testing.assert_allclose(w, _reference(z, batches, 2, 2.0), atol=2e-3)


def test_baseline_encrypted_matches_plaintext(tmp_path):
    # TEST ONLY: 230 bits at N=8192 exceed the 128-bit table; flagged test_only (SEAL security check off)
    params = validate_params(8192, [40, 30, 30, 30, 30, 30, 40], 30, allow_insecure=True)
    assert params.test_only
    keys = he.keygen(params)
    z = _toy(n=120, d=3)
    batches = minibatch_indices(len(z), None, 0)
    w, reached, state = _run_files(tmp_path, keys, "baseline", z, batches, 1, 2.0)
    assert [b - a for a, b in state["levels"]] == [5]
    np.testing.assert_allclose(w, _reference(z, batches, 1, 2.0), atol=2e-3)


def test_public_context_has_no_secret_key(tmp_path, low_depth_keys):
    pub, sec = tmp_path / "public.zip", tmp_path / "secret.zip"
    he.save_public_context(low_depth_keys, pub)
    he.save_secret_context(low_depth_keys, sec)
    with zipfile.ZipFile(pub) as zf:
        assert "secret_key" not in zf.namelist()
    server = he.load_context(pub, "server")
    assert server.secret_key is None
    with pytest.raises(PermissionError):
        he.SealBackend(server).decrypt(he.SealBackend(server).encrypt_replicated(1.0))
    with zipfile.ZipFile(sec) as zf:
        sk = zf.read("secret_key")
    blob = pub.read_bytes()
    for start in range(0, len(sk) - 64, max(1, len(sk) // 16)):
        assert sk[start:start + 64] not in blob


def test_public_context_with_secret_key_refused(tmp_path, low_depth_keys):
    pub, sec = tmp_path / "public.zip", tmp_path / "secret.zip"
    he.save_public_context(low_depth_keys, pub)
    he.save_secret_context(low_depth_keys, sec)
    with zipfile.ZipFile(pub, "a") as zf, zipfile.ZipFile(sec) as s:
        zf.writestr("secret_key", s.read("secret_key"))
    with pytest.raises(InputError, match="must not contain a secret key"):
        he.load_context(pub, "server")


def test_ciphertexts_from_another_context_refused(tmp_path, low_depth_keys):
    other = he.keygen(choose_params(3))  # same parameters, other keys
    path = tmp_path / "w.zip"
    he.save_ciphertexts(path, other, protocol.WEIGHTS_KIND, {"w0": he.SealBackend(other).encrypt_replicated(1.0)})
    with pytest.raises(InputError, match="another context"):
        he.load_ciphertexts(path, low_depth_keys, protocol.WEIGHTS_KIND, "encrypted_weights")


def test_corrupt_ciphertext_refused(tmp_path, low_depth_keys):
    good = tmp_path / "w.zip"
    be = he.SealBackend(low_depth_keys)
    he.save_ciphertexts(good, low_depth_keys, protocol.WEIGHTS_KIND, {"w0": be.encrypt_replicated(1.0)})
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        dst.writestr("manifest.json", src.read("manifest.json"))
        blob = bytearray(src.read("ct/w0"))
        dst.writestr("ct/w0", bytes(blob[: len(blob) // 2]))  # truncated ciphertext
    with pytest.raises(InputError, match="not valid for this CKKS context"):
        he.load_ciphertexts(bad, low_depth_keys, protocol.WEIGHTS_KIND, "encrypted_weights")
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="zip"):
        he.load_ciphertexts(tmp_path / "junk.zip", low_depth_keys, protocol.WEIGHTS_KIND, "encrypted_weights")


# --- Nesterov momentum: the server keeps v as ciphertexts, refreshes carry it, depth unchanged ----------

def _nesterov_reference(z, batches, iterations, lr, momentum):
    w = np.zeros(z.shape[1])
    v = w.copy()
    for k in range(iterations):
        w, v = C.nesterov_step(w, v, z[batches[k % len(batches)]], COEFFS, lr, momentum.mu_at(k))
    return v


def test_low_depth_encrypted_with_momentum_matches_plaintext(tmp_path, low_depth_keys):
    z = _toy()
    batches = minibatch_indices(len(z), 100, 0)
    momentum = C.Momentum(0.8, "nesterov")  # mu_k = 0, 0.28, 0.43: the data-only copies are re-prepared
    w, reached, state = _run_files(tmp_path, low_depth_keys, "low-depth", z, batches, 3, 2.0, momentum=momentum)
    assert reached == 3 and state["refreshes"] == 2  # each refresh re-encrypts w and v
    assert [b - a for a, b in state["levels"]] == [3, 3, 3]
    with zipfile.ZipFile(tmp_path / "w.zip") as zf:
        names = {n for n in zf.namelist() if n.startswith("ct/")}
    assert names == {f"ct/w{j}" for j in range(5)} | {f"ct/v{j}" for j in range(5)}
    ref = _nesterov_reference(z, batches, 3, 2.0, momentum)
    assert np.abs(ref - _reference(z, batches, 3, 2.0)).max() > 0.01  # momentum matters here
    np.testing.assert_allclose(w, ref, atol=2e-3)


def test_baseline_encrypted_with_momentum_matches_plaintext(tmp_path):
    # TEST ONLY parameters as in test_baseline_encrypted_matches_plaintext
    keys = he.keygen(validate_params(8192, [40, 30, 30, 30, 30, 30, 40], 30, allow_insecure=True))
    z = _toy(n=120, d=3)
    batches = minibatch_indices(len(z), 60, 0)
    momentum = C.Momentum(0.5)
    w, reached, state = _run_files(tmp_path, keys, "baseline", z, batches, 2, 2.0, momentum=momentum)
    assert [b - a for a, b in state["levels"]] == [5, 5] and state["refreshes"] == 1
    np.testing.assert_allclose(w, _nesterov_reference(z, batches, 2, 2.0, momentum), atol=2e-3)


def test_momentum_refresh_as_separate_steps_continues(tmp_path, low_depth_keys):
    """Server stops when the chain is used up; the owner's file refresh re-encrypts w and v; training goes on."""
    z = _toy(n=160, d=3)
    batches = minibatch_indices(len(z), 80, 0)
    momentum = C.Momentum(0.6)
    sec, pub = tmp_path / "secret.zip", tmp_path / "public.zip"
    he.save_secret_context(low_depth_keys, sec)
    he.save_public_context(low_depth_keys, pub)
    owner = he.load_context(sec, "owner")
    job = {"circuit": "low-depth", "coeffs": list(COEFFS), "learning_rate": 2.0, "iterations": 2,
           "momentum": momentum.to_dict()}
    data, wpath, jobp = tmp_path / "data.zip", tmp_path / "w.zip", tmp_path / "job.json"
    protocol.owner_encrypt(owner, z, batches, job, data, wpath, jobp)
    job = protocol.read_job(jobp)
    levels = []
    for _ in range(3):
        out = tmp_path / "w_next.zip"
        state = protocol.server_train(pub, data, wpath, job, out)
        out.replace(wpath)
        levels += state["levels"]
        if not state["needs_refresh"]:
            break
        refreshed = protocol.owner_refresh(owner, wpath, tmp_path / "w_fresh.zip")
        assert len(refreshed["weights"]) == 2 * z.shape[1]  # w and v'
        (tmp_path / "w_fresh.zip").replace(wpath)
    assert state["iteration"] == 2 and [b - a for a, b in levels] == [3, 3]
    w, reached = protocol.owner_decrypt(owner, wpath, job)
    assert reached == 2
    np.testing.assert_allclose(w, _nesterov_reference(z, batches, 2, 2.0, momentum), atol=2e-3)
    # a weight file without the momentum state is refused for a momentum job
    plain_job = {**job, "momentum": None}
    protocol.owner_encrypt(owner, z, batches, plain_job, tmp_path / "d2.zip", tmp_path / "w_plain.zip",
                           tmp_path / "j2.json")
    with pytest.raises(InputError, match="momentum"):
        protocol.server_train(pub, data, tmp_path / "w_plain.zip", job, tmp_path / "never.zip")


def test_two_workers_with_momentum(tmp_path, low_depth_keys):
    z = _toy(n=300, d=5)
    batches = minibatch_indices(len(z), 150, 0)
    momentum = C.Momentum(0.9, "nesterov")
    w, reached, state = _run_files(tmp_path, low_depth_keys, "low-depth", z, batches, 2, 2.0, workers=2,
                                   momentum=momentum)
    assert reached == 2 and state["refreshes"] == 1 and [b - a for a, b in state["levels"]] == [3, 3]
    np.testing.assert_allclose(w, _nesterov_reference(z, batches, 2, 2.0, momentum), atol=2e-3)
